"""leasebroker's benchmarks in one run: every number is a ratio to a baseline measured
in the same run on the same machine (issue 8's targets). Not a test.

    python3 benchmarks/run.py                  # full run, a private redis-server (about 7 min)
    python3 benchmarks/run.py --quick          # smaller and shorter (about 2 min)
    python3 benchmarks/run.py --redis-url redis://127.0.0.1:6379/15 --json out.json

Without --redis-url it starts its own redis-server on a free loopback port, so no other
client disturbs INFO commandstats or used_memory; with --redis-url it works under unique
key prefixes (deleted afterwards) and never flushes anything.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

if __package__ in (None, ""):  # run as a script: make `benchmarks` and the repo importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import idle, memory, redis_cost
from benchmarks.grpc_service import grpc_section
from benchmarks.procs import delete_prefix, start_private_redis, unique_prefix
from benchmarks.redis_cost import Throughput
from benchmarks.table import Row, render
from leasebroker.core.settings import EVENTS_OFF
from leasebroker.wire.event_loop import EVENT_LOOPS, resolved

WORKERS = 32  # serve's default --workers; the no-op server gets the same
# The library's rate, as a share of redis-benchmark's of the minimal script (issue 8).
LIBRARY_TARGET = 0.3
# Coroutines calling the library's asyncio path together (as many calls in flight as the
# grpc benchmarks' 128).
COROUTINES = 128
# The minimal and the create_lease script (streams on, then off) under redis-benchmark:
# alternated rounds. Redis's CPU per call moves by 10-15 % between runs on a shared box,
# as much as the streams' share, so each keeps the least of three.
SCRIPT_ROUNDS = 3
# The library rows: alternated rounds, each row keeping its fastest. The library's client
# is bound by its own core, and a shared machine's other work only ever slows it: in one
# run the asyncio row read 0.36x and its events-off twin, which does less, 0.20x
# (2026-11-28).
LIBRARY_ROUNDS = 3
# A deployment that follows no event stream (serve --events-retention off): what that
# saves is measured beside the default.
EVENTS_OFF_SETTINGS = {"events_retention_ms": EVENTS_OFF}
EVENTS_OFF_DETAIL = "--events-retention off: no XADD, no stream entry"


@dataclass(frozen=True)
class Profile:
    load_s: float  # each closed-loop gRPC load
    concurrency: tuple[int, ...]
    latency_s: float  # each paced load at half the maximum
    rb_requests: int  # redis-benchmark -n
    library_s: float
    leases: int  # for bytes per lease
    idle_merchants: int
    idle_s: float
    settle_s: float  # an idle serve's start-up left out of the window


PROFILES = {
    "full": Profile(5.0, (16, 128), 8.0, 300_000, 5.0, 100_000, 10_000, 10.0, 3.0),
    "quick": Profile(1.5, (16, 128), 3.0, 50_000, 2.0, 10_000, 10_000, 3.0, 2.0),
    # The smoke test's: every measurement runs, none means anything.
    "smoke": Profile(0.3, (16,), 0.5, 2_000, 0.3, 300, 50, 0.5, 0.3),
}
SECTIONS = ("grpc", "redis", "memory", "idle")


def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu": model,
        "python": platform.python_version(),
    }


def _library_row(
    label: str,
    result: redis_cost.Throughput,
    rb: redis_cost.Throughput,
    *,
    targeted: bool = True,
    detail: str = "",
) -> Row:
    """A library row: its rate as a ratio to redis-benchmark's, against the target."""
    ratio = result.rps / rb.rps
    return Row(
        label,
        f"{result.rps:,.0f} req/s",
        ratio,
        "x redis-benchmark",
        f">= {LIBRARY_TARGET}x" if targeted else "",
        ratio >= LIBRARY_TARGET if targeted else None,
        detail,
    )


class LibraryRound(NamedTuple):
    """One round of the library rows (the JSON's library_rounds_rps keeps this order)."""

    threads: Throughput
    unpipelined: Throughput
    minimal_from_threads: Throughput
    asyncio: Throughput
    asyncio_events_off: Throughput


def _library_round(p: Profile, url: str, client) -> LibraryRound:
    """One round of the library rows, each under prefixes of its own (the same slots and
    client references again would replay), deleted at the round's end."""
    lib_prefix, quiet_prefix = unique_prefix("lib"), unique_prefix("libq")
    try:
        threaded = redis_cost.library(url, lib_prefix, WORKERS, p.library_s)
        awaited = redis_cost.library_async(url, lib_prefix, COROUTINES, p.library_s)
        quiet = redis_cost.library_async(
            url, quiet_prefix, COROUTINES, p.library_s, **EVENTS_OFF_SETTINGS
        )
        return LibraryRound(*threaded, awaited, quiet)
    finally:
        for prefix in (lib_prefix, quiet_prefix):
            delete_prefix(client, prefix)


def _rates(runs: list[Throughput]) -> str:
    return ", ".join(f"{run.rps:,.0f}" for run in runs)


def redis_section(p: Profile, url: str, client, rows: list[Row], data: dict) -> None:
    rb_prefix = unique_prefix("rb")
    try:
        # The scripts under the same driver, alternated; each keeps its round that cost
        # Redis least per call (a shared machine's other work only ever adds to it).
        tried: list[tuple[Throughput, ...]] = [
            (
                redis_cost.redis_benchmark(client, url, rb_prefix, p.rb_requests),
                redis_cost.create_lease_benchmark(client, url, rb_prefix, p.rb_requests),
                redis_cost.create_lease_benchmark(
                    client, url, rb_prefix, p.rb_requests, **EVENTS_OFF_SETTINGS
                ),
                redis_cost.create_lease_benchmark(
                    client, url, rb_prefix, p.rb_requests, redis_cost.CREATE_LEASE_COMMANDS
                ),
            )
            for _ in range(SCRIPT_ROUNDS)
        ]
        rb, script, quiet, bare = (
            min(runs, key=lambda t: t.usec_per_call) for runs in zip(*tried, strict=True)
        )
    finally:
        delete_prefix(client, rb_prefix)
    library_runs = [_library_round(p, url, client) for _ in range(LIBRARY_ROUNDS)]
    lib, unpipelined, minimal, awaited, awaited_quiet = LibraryRound(
        *(max(runs, key=lambda t: t.rps) for runs in zip(*library_runs, strict=True))
    )
    data["redis"] = {
        "minimal_redis_benchmark": asdict(rb),
        "create_lease_redis_benchmark": asdict(script),
        "create_lease_redis_benchmark_events_off": asdict(quiet),
        "create_lease_commands_redis_benchmark": asdict(bare),
        "library_create_lease": asdict(lib),
        "library_create_lease_unpipelined": asdict(unpipelined),
        "library_create_lease_asyncio": asdict(awaited),
        "library_create_lease_asyncio_events_off": asdict(awaited_quiet),
        "minimal_from_threads": asdict(minimal),
        # Every round's rate, in the order of the rows above (the rows keep the fastest).
        "library_rounds_rps": [[round(t.rps) for t in run] for run in library_runs],
    }
    rows.append(
        Row(
            "minimal hold script, redis-benchmark -P 16",
            f"{rb.rps:,.0f} req/s",
            detail=f"Redis CPU {rb.usec_per_call:.1f} us/call (INFO commandstats)",
        )
    )
    rows.append(
        _library_row(
            f"library create_lease, {WORKERS} threads",
            lib,
            rb,
            detail=f"fastest of {LIBRARY_ROUNDS} alternated rounds, as every library row:"
            f" {_rates([run.threads for run in library_runs])} req/s",
        )
    )
    rows.append(
        _library_row(
            f"library create_lease, {WORKERS} threads, no auto-pipelining",
            unpipelined,
            rb,
            targeted=False,
            detail="LeaseBroker(..., auto_pipeline=False): one round trip per call",
        )
    )
    rows.append(
        _library_row(
            f"library AsyncBroker.create_lease, {COROUTINES} coroutines",
            awaited,
            rb,
            detail="one event loop, one pipelined connection (what serve's BookingService"
            f" awaits); rounds: {_rates([run.asyncio for run in library_runs])} req/s",
        )
    )
    rows.append(
        _library_row(
            f"library AsyncBroker.create_lease, {COROUTINES} coroutines, events off",
            awaited_quiet,
            rb,
            targeted=False,
            detail=EVENTS_OFF_DETAIL,
        )
    )
    ratio = script.usec_per_call / rb.usec_per_call
    rows.append(
        Row(
            "create_lease script, Redis CPU per call",
            f"{script.usec_per_call:.1f} us",
            ratio,
            f"x minimal ({rb.usec_per_call:.1f} us)",
            "<= 2x",
            ratio <= 2,
            f"both under redis-benchmark -P 16, best of {SCRIPT_ROUNDS} alternated:"
            f" {script.rps:,.0f} create_lease/s against {rb.rps:,.0f} minimal/s;"
            f" driven from {WORKERS} Python threads (the library) instead:"
            f" {lib.usec_per_call:.1f} us against {minimal.usec_per_call:.1f} us",
        )
    )
    rows.append(
        Row(
            "create_lease script, events off, Redis CPU per call",
            f"{quiet.usec_per_call:.1f} us",
            quiet.usec_per_call / rb.usec_per_call,
            f"x minimal ({rb.usec_per_call:.1f} us)",
            detail=f"{EVENTS_OFF_DETAIL}; {quiet.rps:,.0f} create_lease/s under redis-benchmark",
        )
    )
    rows.append(
        Row(
            "create_lease's commands alone, Redis CPU per call",
            f"{bare.usec_per_call:.1f} us",
            bare.usec_per_call / rb.usec_per_call,
            f"x minimal ({rb.usec_per_call:.1f} us)",
            detail="its 13 commands with the same keys and arguments, none of its checks or"
            " branches (CREATE_LEASE_COMMANDS in benchmarks/redis_cost.py): the floor of a"
            " script that writes every structure create_lease writes",
        )
    )


def _measure_memory(
    url: str, client, fresh: bool, measure: Callable[[str, str], memory.MemoryResult]
) -> memory.MemoryResult:
    """``measure(url, prefix)`` on a redis-server of its own (``fresh``), or on ``url``
    under a prefix of its own, deleted afterwards."""
    prefix = unique_prefix("mem")
    own, where = start_private_redis() if fresh else (None, url)
    try:
        return measure(where, prefix)
    finally:
        if own is not None:
            own.stop()
        else:
            delete_prefix(client, prefix)


def _by_kind(result: memory.MemoryResult) -> str:
    kinds = ", ".join(f"{k} {v:.0f}" for k, v in result.by_kind.items())
    return f"by key kind (B/lease): {kinds}"


def memory_section(p: Profile, url: str, client, rows: list[Row], data: dict, fresh: bool) -> None:
    """``fresh``: on a redis-server of its own. Redis frees an earlier section's keys,
    and shrinks its tables after them, in the background: on the same server that
    would fall under the measurement's feet."""
    for name, settings in (("memory", {}), ("memory_events_off", EVENTS_OFF_SETTINGS)):
        measure = functools.partial(memory.bytes_per_lease, leases=p.leases, **settings)
        result = _measure_memory(url, client, fresh, measure)
        data[name] = asdict(result)
        label = f"Redis memory per live lease ({result.leases:,} leases)"
        rows.append(
            Row(
                label if not settings else f"{label}, events off",
                f"{result.bytes_per_lease:,.0f} B",
                target="" if settings else "<= 600 B",
                met=None if settings else result.bytes_per_lease <= 600,
                detail=_by_kind(result) + (f"; {EVENTS_OFF_DETAIL}" if settings else ""),
            )
        )


def floor_section(p: Profile, url: str, client, rows: list[Row], data: dict, fresh: bool) -> None:
    """The memory floor of today's structures (memory.structure_floor): the same keys
    and entries with one-byte values, beside the bytes per lease above."""
    measure = functools.partial(memory.structure_floor, leases=p.leases)
    result = _measure_memory(url, client, fresh, measure)
    data["memory_floor"] = asdict(result)
    rows.append(
        Row(
            f"Redis memory floor: the same keys and entries, one-byte values ({result.leases:,})",
            f"{result.bytes_per_lease:,.0f} B",
            detail=f"{_by_kind(result)}; the floor of any layout that keeps"
            " the slot set, record, client reference, index entry, fence and event of a"
            " lease as a key or an entry each",
        )
    )


def idle_section(p: Profile, url: str, client, rows: list[Row], data: dict) -> None:
    prefix = unique_prefix("idle")
    try:
        result = idle.idle_serve(url, prefix, p.idle_merchants, p.idle_s, p.settle_s, WORKERS)
    finally:
        delete_prefix(client, prefix)
    data["idle"] = asdict(result)
    where = f"idle serve, {result.merchants:,} merchants"
    rows.append(
        Row(
            f"{where}: serve CPU",
            f"{result.serve_cores:.3f} core",
            target="< 0.02 core",
            met=result.serve_cores < 0.02,
            detail=f"Redis's own CPU {result.redis_cores:.3f} core",
        )
    )
    rows.append(
        Row(
            f"{where}: Redis commands",
            f"{result.redis_calls_per_s:,.0f} /s",
            target="< 50 /s",
            met=result.redis_calls_per_s < 50,
        )
    )


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller, about 2 min")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--redis-url", help="default: a private redis-server on loopback")
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON ('-': stdout)"
    )
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only these")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="extra `serve` option (repeatable)"
    )
    parser.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default="auto",
        help="the event loop of serve's BookingService and of the no-op (default: auto)",
    )
    args = parser.parse_args(argv)
    # A benchmark stopped by SIGTERM (a timeout, a CI cancel) unwinds like Ctrl-C, so the
    # finally blocks stop the redis-server and serve processes it started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    profile_name = "smoke" if args.smoke else "quick" if args.quick else "full"
    p = PROFILES[profile_name]
    sections = args.only or list(SECTIONS)

    import redis  # a benchmark may talk to Redis directly (cleanup, INFO)

    private = None
    url = args.redis_url
    if url is None:
        private, url = start_private_redis()
    client = redis.Redis.from_url(url, protocol=2)
    info = {**machine(), "redis": client.info("server")["redis_version"], "profile": profile_name}
    info["event_loop"] = resolved(args.event_loop)
    data: dict = {"machine": info, "redis_url": "private" if private else url}
    rows: list[Row] = []
    started = time.monotonic()
    try:
        if "grpc" in sections:
            serve_args = [*args.serve_arg, "--event-loop", args.event_loop]
            grpc_section(p, url, client, rows, data, WORKERS, serve_args, args.event_loop)
        if "redis" in sections:
            redis_section(p, url, client, rows, data)
        if "memory" in sections:
            memory_section(p, url, client, rows, data, fresh=private is not None)
            floor_section(p, url, client, rows, data, fresh=private is not None)
        if "idle" in sections:
            idle_section(p, url, client, rows, data)
    finally:
        client.close()
        if private is not None:
            private.stop()
    data["seconds"] = round(time.monotonic() - started, 1)
    data["rows"] = [asdict(row) for row in rows]
    print(
        f"leasebroker benchmarks, {info['date']}, {info['nproc']} x {info['cpu']}, "
        f"Redis {info['redis']}, Python {info['python']}, {info['event_loop']} loop, "
        f"{profile_name} run "
        f"({data['seconds']:.0f} s); ratios are what to read, absolute numbers are noisy"
    )
    print(render(rows))
    if args.json:
        text = json.dumps(data, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return data


if __name__ == "__main__":
    main()
