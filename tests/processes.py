"""Racing real OS processes against one Redis (threads share a GIL; processes do not)."""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Callable, Sequence
from typing import Any

import pytest


def race_in_processes(
    target: Callable[..., None], arg_lists: Sequence[tuple[Any, ...]], timeout_s: float = 120
) -> list[Any]:
    """Run ``target(*args, barrier, results)`` in one spawned process per ``args``.

    The processes share a barrier (so they start their race together) and a results
    queue, on which each puts one report. Returns the reports, in arrival order,
    after checking that every process exited cleanly.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(arg_lists))
    results = context.Queue()
    workers = [context.Process(target=target, args=(*args, barrier, results)) for args in arg_lists]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=timeout_s) for _ in workers]
    except queue.Empty:
        pytest.fail("a racing process did not report")
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)
    return reports
