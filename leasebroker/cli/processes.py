"""``serve --processes N``: N processes serving one BookingService port, and the parent
that starts, watches and stops them (docs/operations.md, "One `serve` on every core").

- **The port.** The parent reserves it first (:func:`leasebroker.wire.ports.reserve_port`:
  bound without SO_REUSEPORT, so a port in use is exit 2 "cannot listen", then held
  with SO_REUSEPORT, never listening) and holds it until the end; each process binds it
  with SO_REUSEPORT and the kernel spreads new connections over them. Load is spread
  by connection: a client with one channel stays on one process.
- **The processes** are spawned, never forked (gRPC does not survive a fork), before the
  parent creates any gRPC object. Each is a whole ``serve`` (cli/serve.py) with its own
  Redis connection pool, health service, settings reload and sweeper (every one sweeps:
  each expiry is still marked once). Process 0 alone runs the admin service and loads
  ``--inventory``; the others report ready only once it has loaded.
- **The parent** runs no gRPC server and holds no Redis connection. It serves
  ``--metrics-port`` for all of them (prometheus-client's multiprocess mode, in
  ``PROMETHEUS_MULTIPROC_DIR`` or a directory of its own), logs once every process is
  listening, and on SIGTERM or SIGINT stops them all with the usual grace. A process
  that ends on its own makes the parent stop the others and exit non-zero (that
  process's exit code, or 1). A process whose parent is gone stops by itself.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from leasebroker.cli.common import EXIT_OK, EXIT_USAGE, CliError
from leasebroker.cli.telemetry import configure_logging, start_metrics_endpoint
from leasebroker.wire import metrics
from leasebroker.wire.ports import reserve_port
from leasebroker.wire.server import SHUTDOWN_GRACE_S, StopSignals

log = logging.getLogger("leasebroker")

# serve's exit code when a process ended by a signal, or exited 0 before it was asked to
# (one that exited with an error code passes that code on).
EXIT_PROCESS_ENDED = 1
# On top of the grace period, how long a stopping process gets before it is killed.
STOP_MARGIN_S = 5.0
# What a process and its parent tell each other over their pipe.
READY, LOADED = "ready", "loaded"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity), capped by a cgroup CPU quota
    (a container's CPU limit); at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        count = os.cpu_count() or 1
    quota = _cgroup_cpu_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def _cgroup_cpu_quota() -> float | None:
    """CPUs' worth of the cgroup's quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_*``), or
    None when there is none or it cannot be read."""
    root = Path("/sys/fs/cgroup")
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        own = next((line[3:] for line in lines if line.startswith("0::")), "/")
        for folder in (root / own.lstrip("/"), root):
            if (folder / "cpu.max").is_file():
                quota, period = (folder / "cpu.max").read_text().split()[:2]
                return None if quota == "max" else int(quota) / int(period)
        v1 = root / "cpu"
        quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
        period_us = int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def process_count(args: argparse.Namespace) -> int:
    """``--processes``, or its default: the usable CPUs with ``--redis-url``, 1 with the
    embedded store. More than 1 with the embedded store is a usage error: it lives
    inside one process and cannot be shared."""
    count = getattr(args, "processes", None)
    if not args.redis_url:
        if count is not None and count > 1:
            raise CliError(
                f"--processes {count} needs --redis-url (or LEASEBROKER_REDIS_URL): the "
                "embedded store lives inside one process and cannot be shared",
                EXIT_USAGE,
            )
        return 1
    return count if count is not None else usable_cpus()


@dataclass
class WorkerJob:
    """What a spawned process is told: which one it is, of how many, and its end of the
    pipe to the parent."""

    index: int
    count: int
    link: Connection
    wait_for_inventory: bool = False


class ParentLink:
    """A process's side of its pipe: tells the parent it is ready (or has loaded the
    inventory), hears that process 0 has loaded it, and calls ``parent_gone`` when the
    parent ends (the pipe's end of file), killed or not."""

    def __init__(self, job: WorkerJob, parent_gone: Callable[[], None]) -> None:
        self.job = job
        self.loaded = threading.Event()
        self._parent_gone = parent_gone
        threading.Thread(target=self._listen, name="parent-link", daemon=True).start()

    def _listen(self) -> None:
        try:
            while True:
                if self.job.link.recv() == LOADED:
                    self.loaded.set()
        except (EOFError, OSError):
            self._parent_gone()

    def tell(self, message: str) -> None:
        # What this process logged first is written first: its "listening on" lines come
        # before the parent's "all N serve processes are listening" on the shared stderr.
        for handler in logging.getLogger().handlers:
            handler.flush()
        with contextlib.suppress(OSError):  # the parent is gone: _listen has seen it too
            self.job.link.send(message)

    def wait_for_inventory(self, stopped: Callable[[], bool]) -> None:
        """Until process 0 has loaded ``--inventory`` (not at all in process 0)."""
        while self.job.wait_for_inventory and not stopped():
            if self.loaded.wait(StopSignals.POLL_S):
                return


@dataclass(eq=False)
class Worker:
    """One spawned process, seen from the parent."""

    index: int
    process: BaseProcess
    link: Connection
    link_open: bool = True
    ready: bool = False
    stopped: bool = False  # ended, reaped and its pipe closed

    @property
    def pid(self) -> int:
        return self.process.pid or 0


@dataclass
class Supervisor:
    """The parent: the processes, and whether it has said they all listen."""

    workers: list[Worker] = field(default_factory=list)
    announced: bool = False


Target = Callable[[argparse.Namespace, WorkerJob], Any]


def serve_in_processes(args: argparse.Namespace, count: int, target: Target) -> int:
    """Serve ``args`` from ``count`` spawned processes running ``target`` (each a whole
    serve on the reserved port) until SIGTERM or SIGINT, or until one ends."""
    signals = StopSignals()
    configure_logging(args.log_level, args.log_format, pid=True)
    try:
        reservation = reserve_port(args.host, args.port)
    except OSError as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}", EXIT_USAGE) from exc
    own_metrics_dir = _multiprocess_metrics(args)
    supervisor = Supervisor()
    metrics_server = None
    try:
        metrics_server = start_metrics_endpoint(args)
        context = multiprocessing.get_context("spawn")
        for index in range(count):
            if signals.received is not None:
                break
            parent_end, child_end = context.Pipe()
            job = WorkerJob(index, count, child_end, bool(args.inventory) and index > 0)
            child_args = _worker_args(args, index, reservation.port)
            process = context.Process(
                target=target, args=(child_args, job), name=f"leasebroker-serve-{index}"
            )
            process.start()
            child_end.close()
            supervisor.workers.append(Worker(index, process, parent_end))
        log.info(
            "started %d serve processes sharing %s:%d (SO_REUSEPORT): pids %s",
            len(supervisor.workers),
            args.host,
            reservation.port,
            ", ".join(str(w.pid) for w in supervisor.workers),
        )
        return _supervise(supervisor, signals, f"{args.host}:{reservation.port}")
    finally:
        _stop_all(supervisor.workers)
        if metrics_server is not None:
            metrics_server.stop()
        reservation.close()
        if own_metrics_dir is not None:
            del os.environ[MULTIPROC_ENV]
            shutil.rmtree(own_metrics_dir, ignore_errors=True)


def _multiprocess_metrics(args: argparse.Namespace) -> str | None:
    """With ``--metrics-port``, one scrape of the parent must show every process: the
    processes write their metrics to ``PROMETHEUS_MULTIPROC_DIR``, set to a fresh
    directory when the environment names none (returned, to remove at the end)."""
    if args.metrics_port is None or os.environ.get(MULTIPROC_ENV):
        return None
    folder = tempfile.mkdtemp(prefix="leasebroker-metrics-")
    os.environ[MULTIPROC_ENV] = folder  # the spawned processes inherit it
    return folder


def _worker_args(args: argparse.Namespace, index: int, port: int) -> argparse.Namespace:
    """A process's options: the reserved port, no metrics endpoint (the parent's), and
    the admin service and ``--inventory`` in process 0 only."""
    child = argparse.Namespace(**vars(args))
    child.port, child.metrics_port, child.processes = port, None, 1
    if index > 0:
        child.admin_port, child.inventory = -1, None
    return child


def _supervise(supervisor: Supervisor, signals: StopSignals, where: str) -> int:
    """Relay and announce until a signal (exit code 0 when every process stopped
    cleanly, else 1) or until a process ends (its exit code, or 1)."""
    workers = supervisor.workers
    by_sentinel = {w.process.sentinel: w for w in workers}
    while signals.received is None:
        links = [w.link for w in workers if w.link_open]
        ready = wait([*by_sentinel, *links], timeout=StopSignals.POLL_S)
        ended = [by_sentinel[each] for each in ready if each in by_sentinel]
        if ended:
            return _one_ended(supervisor, ended[0])
        for each in ready:
            _relay(supervisor, next(w for w in workers if w.link is each), where)
    log.info(
        "received %s, stopping the %d serve processes",
        signal.Signals(signals.received).name,
        len(workers),
    )
    clean = _stop_all(workers)
    log.info("stopped all %d serve processes", len(workers))
    return EXIT_OK if clean else EXIT_PROCESS_ENDED


def _relay(supervisor: Supervisor, worker: Worker, where: str) -> None:
    try:
        message = worker.link.recv()
    except (EOFError, OSError):
        worker.link_open = False  # it is ending: its sentinel says so next
        return
    if message == LOADED:
        for other in supervisor.workers:
            if other is not worker and other.link_open:
                try:
                    other.link.send(LOADED)
                except OSError:
                    other.link_open = False  # it is ending: its sentinel says so next
    elif message == READY:
        worker.ready = True
        if not supervisor.announced and all(w.ready for w in supervisor.workers):
            supervisor.announced = True
            log.info("all %d serve processes are listening on %s", len(supervisor.workers), where)


def _one_ended(supervisor: Supervisor, worker: Worker) -> int:
    """A process ended by itself: say how, stop the others, exit non-zero."""
    worker.process.join(timeout=5)
    code = worker.process.exitcode
    if code is not None and code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with code {code}"
    others = len(supervisor.workers) - 1
    log.error(
        "serve process %d (pid %d) %s: stopping the other %d", worker.index, worker.pid, how, others
    )
    _stop_all(supervisor.workers)
    return code if code is not None and code > 0 else EXIT_PROCESS_ENDED


def _stop_all(workers: list[Worker]) -> bool:
    """SIGTERM to every process still running, the grace period and a margin for them to
    finish, SIGKILL for any left; True when each one exited with code 0."""
    for worker in workers:
        if worker.process.exitcode is None:
            worker.process.terminate()
    deadline = time.monotonic() + SHUTDOWN_GRACE_S + STOP_MARGIN_S
    clean = True
    for worker in workers:
        if worker.stopped:
            continue
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.exitcode is None:
            log.error(
                "serve process %d (pid %d) did not stop: killing it", worker.index, worker.pid
            )
            worker.process.kill()
            worker.process.join()
        clean = clean and worker.process.exitcode == 0
        metrics.process_ended(worker.pid)
        worker.link.close()
        worker.link_open, worker.stopped = False, True
    return clean
