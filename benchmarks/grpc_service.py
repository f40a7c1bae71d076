"""The gRPC measurements: the no-op handler vs CreateLease, CreateBooking and
UpdateBooking (cancel) through a real `leasebroker serve`, closed loop at each
concurrency, with the no-op that awaits one Redis PING before it answers between them
(what a call that waits for Redis costs the stack, without the broker's work); then
p99 latency, paced at half of the maximum CreateLease rate, against the no-op's p99 at
the same rate; then CreateLease through `serve --processes 2` against the one-process
serve, both over the same CONNECTIONS connections (the kernel spreads connections, not
calls, over the processes), alternated, best of ROUNDS each. The client is one spawned
process; each server is its own process (or processes), and its CPU per call comes
from /proc."""

from __future__ import annotations

import itertools
import time
from typing import Any

from benchmarks.grpc_load import LoadClient, LoadResult, LoadSpec
from benchmarks.procs import (
    Proc,
    cpu_seconds,
    delete_prefix,
    start_noop,
    start_serve,
    unique_prefix,
)
from benchmarks.table import Row

RUN_SPACING_NS = 100 * 24 * 3600 * 10**9  # each run's slots start 100 days after the last
TARGETS = {"CreateLease": 0.7, "CreateBooking": 0.6, "UpdateBooking": 0.6}
# serve --processes 2 against one process: connections of the load (the kernel hashes
# each to a process: with 32 a split far from even is unlikely), the target, the rounds.
CONNECTIONS = 32
PROCESSES_TARGET = 1.5
ROUNDS = 2
# Paced rounds behind the p99 row (odd: the median is one of them).
P99_ROUNDS = 3
LABELS = {
    "CreateLease": "CreateLease",
    "CreateBooking": "CreateBooking",
    "UpdateBooking": "UpdateBooking (cancel)",
}


def _detail(result: LoadResult, cpu_us: float) -> str:
    errors = sum(result.errors.values())
    text = f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
    text += f", CPU per call: server {cpu_us:,.0f} us"
    text += f", client {result.client_cpu_s * 1e6 / max(1, result.calls):,.0f} us"
    text += f"; {result.calls:,} calls"
    if errors:
        text += f", {errors} errors {result.errors}"
    return text


def grpc_section(
    p: Any,
    url: str,
    client: Any,
    rows: list[Row],
    data: dict,
    workers: int,
    serve_args: list,
    event_loop: str = "auto",
) -> None:
    prefix = unique_prefix("grpc")
    base = time.time_ns() + 24 * 3600 * 10**9
    runs = itertools.count()
    procs: list[Proc] = []
    load = None
    try:
        procs.append(noop := start_noop(workers, event_loop))
        procs.append(floor := start_noop(workers, event_loop, await_redis=url))
        procs.append(serve := start_serve(url, prefix, workers, serve_args))
        load = LoadClient()
        targets = {proc: f"127.0.0.1:{proc.port}" for proc in (noop, floor, serve)}

        def measure(proc: Proc, method: str, **options: Any) -> tuple[LoadResult, float]:
            n = next(runs)
            spec = LoadSpec(targets[proc], method, f"{prefix}-{n}", base + n * RUN_SPACING_NS)
            for name, value in options.items():
                setattr(spec, name, value)
            cpu = proc.cpu_seconds()
            result = load.run(spec)
            cpu_us = (proc.cpu_seconds() - cpu) * 1e6 / max(1, result.all_calls)
            return result, cpu_us

        out: dict = {}
        best = 0.0
        for conc in p.concurrency:
            common = {"concurrency": conc, "duration_s": p.load_s}
            noop_r, noop_cpu = measure(noop, "CreateLease", **common)
            rows.append(
                Row(
                    f"no-op handler, {conc} in flight",
                    f"{noop_r.rps:,.0f} req/s",
                    1.0,
                    "x no-op",
                    detail=_detail(noop_r, noop_cpu),
                )
            )
            out[f"noop@{conc}"] = _summary(noop_r, noop_cpu)
            floor_r, floor_cpu = measure(floor, "CreateLease", **common)
            rows.append(
                Row(
                    f"no-op awaiting one Redis PING, {conc} in flight",
                    f"{floor_r.rps:,.0f} req/s",
                    floor_r.rps / noop_r.rps,
                    "x no-op",
                    detail=_detail(floor_r, floor_cpu),
                )
            )
            out[f"noop_ping@{conc}"] = _summary(floor_r, floor_cpu)
            inputs: list[str] = []
            for method in ("CreateLease", "CreateBooking", "UpdateBooking"):
                result, cpu_us = measure(serve, method, inputs=inputs, **common)
                inputs = result.ids
                ratio = result.rps / noop_r.rps
                if method == "CreateLease":
                    best = max(best, result.rps)
                rows.append(
                    Row(
                        f"serve {LABELS[method]}, {conc} in flight",
                        f"{result.rps:,.0f} req/s",
                        ratio,
                        "x no-op",
                        f">= {TARGETS[method]}x",
                        ratio >= TARGETS[method],
                        _detail(result, cpu_us),
                    )
                )
                out[f"{method}@{conc}"] = _summary(result, cpu_us)
        rate = best / 2
        paced = {"rate": rate, "duration_s": p.latency_s}
        # Alternated rounds, the median pair shown: one paced run's p99 rests on its
        # slowest 1 % of calls, which a shared machine's other work moves by 2x.
        pairs = []
        for _ in range(P99_ROUNDS):
            noop_run = measure(noop, "CreateLease", **paced)
            lease_run = measure(serve, "CreateLease", **paced)
            pairs.append((lease_run[0].p99_ms / noop_run[0].p99_ms, noop_run, lease_run))
        pairs.sort(key=lambda pair: pair[0])
        ratio, (noop_r, noop_cpu), (lease_r, lease_cpu) = pairs[len(pairs) // 2]
        ratios = ", ".join(f"{pair[0]:.2f}x" for pair in pairs)
        rows.append(
            Row(
                f"p99 at half max load ({rate:,.0f} CreateLease/s, paced)",
                f"{lease_r.p99_ms:.1f} ms",
                ratio,
                f"x no-op ({noop_r.p99_ms:.1f} ms)",
                "<= 2x",
                ratio <= 2,
                f"median of {P99_ROUNDS} alternated rounds ({ratios});"
                f" serve {_detail(lease_r, lease_cpu)}; no-op {_detail(noop_r, noop_cpu)}",
            )
        )
        out["paced_rate"] = rate
        out["paced_ratios"] = [round(pair[0], 3) for pair in pairs]
        out["paced_noop"] = _summary(noop_r, noop_cpu)
        out["paced_CreateLease"] = _summary(lease_r, lease_cpu)
        # serve --processes 2 against the one-process serve, at the highest concurrency.
        procs.append(two := start_serve(url, prefix, workers, serve_args, processes=2))
        targets[two] = f"127.0.0.1:{two.port}"
        spread = {"concurrency": max(p.concurrency), "duration_s": p.load_s}
        spread["connections"] = CONNECTIONS
        # Alternated, best of ROUNDS each: a machine shared with other work moves both alike.
        tried: dict[Proc, list[tuple[LoadResult, float, str]]] = {serve: [], two: []}
        for _ in range(ROUNDS):
            for proc in (serve, two):
                children = proc.extra.get("children", [])
                before = [cpu_seconds(pid) for pid in children]
                result, cpu_us = measure(proc, "CreateLease", **spread)
                used = [cpu_seconds(pid) - was for pid, was in zip(children, before, strict=True)]
                split = "/".join(f"{100 * u / max(sum(used), 1e-9):.0f}" for u in used)
                tried[proc].append((result, cpu_us, split))
        (one_r, one_cpu, _), (two_r, two_cpu, split) = (
            max(tried[proc], key=lambda run: run[0].rps) for proc in (serve, two)
        )
        ratio = two_r.rps / one_r.rps
        rows.append(
            Row(
                f"serve CreateLease, 2 processes, {spread['concurrency']} in flight",
                f"{two_r.rps:,.0f} req/s",
                ratio,
                f"x one process ({one_r.rps:,.0f} req/s)",
                f">= {PROCESSES_TARGET}x one process",
                ratio >= PROCESSES_TARGET,
                f"{CONNECTIONS} connections, best of {ROUNDS};"
                f" 2 processes (CPU split {split} %): {_detail(two_r, two_cpu)};"
                f" one process: {_detail(one_r, one_cpu)}",
            )
        )
        out["CreateLease_1_process"] = _summary(one_r, one_cpu)
        out["CreateLease_2_processes"] = _summary(two_r, two_cpu)
        data["grpc"] = out
    finally:
        if load is not None:
            load.close()
        for proc in procs:
            proc.stop()
        delete_prefix(client, prefix)


def _summary(result: LoadResult, cpu_us: float) -> dict:
    return {
        "rps": round(result.rps, 1),
        "calls": result.calls,
        "p50_ms": round(result.p50_ms, 2),
        "p99_ms": round(result.p99_ms, 2),
        "errors": result.errors,
        "server_cpu_us_per_call": round(cpu_us, 1),
    }
