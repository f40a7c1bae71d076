"""What a hold costs Redis, and how close the library gets to Redis's own throughput.

- the minimal hold script (TIME, ZREMRANGEBYSCORE, ZCARD, ZADD, HSET, two PEXPIREATs)
  under ``redis-benchmark -P 16`` (EVALSHA after SCRIPT LOAD): requests/s and Redis CPU
  per call; and the create_lease script driven the same way, which is what its cost
  against the minimal one is read from;
- ``LeaseBroker.create_lease`` from many threads (the library path): requests/s and the
  create_lease script's Redis CPU per call; and requests/s without auto-pipelining.

Redis CPU per call is ``usec`` / ``calls`` of ``cmdstat_evalsha`` (INFO commandstats),
as deltas around each run: on a shared Redis, other clients' EVALSHAs would count too.
"""

from __future__ import annotations

import csv
import io
import itertools
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

MINIMAL_HOLD = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local expires = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], expires, ARGV[3])
redis.call('HSET', KEYS[2], 'slot', KEYS[1], 'expires', expires)
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('PEXPIREAT', KEYS[2], expires)
return 1
"""
# create_lease's commands for a grant on a merchant without inventory, in its order, with
# its keys and arguments (lua/create_lease-7.lua: TIME, GET, HGET, EXISTS, ZCOUNT, HINCRBY,
# ZADD, PEXPIREAT, HSET, PEXPIREAT, SET, ZADD and, with the streams on, XADD), and none of
# its checks or branches: what its commands alone cost Redis. Keep it in step with the
# script's commands.
CREATE_LEASE_COMMANDS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_text = string.format('%d', now)
local expires = string.format('%d', now + tonumber(ARGV[7]))
redis.call('GET', KEYS[3])
redis.call('HGET', KEYS[2], ARGV[3])
redis.call('EXISTS', KEYS[2])
redis.call('ZCOUNT', KEYS[1], '(' .. now_text, '+inf')
local fence = string.format('%d', redis.call('HINCRBY', KEYS[5], ARGV[3], '1'))
redis.call('ZADD', KEYS[1], expires, ARGV[1])
redis.call('PEXPIREAT', KEYS[1], expires)
redis.call('HSET', KEYS[4], 'state', 'held', 'slot_field', ARGV[3], 'ref', ARGV[9],
  'fence', fence, 'start_ms', ARGV[5], 'created_ms', now_text, 'expires_ms', expires)
redis.call('PEXPIREAT', KEYS[4], string.format('%d', expires + tonumber(ARGV[10])))
redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[2] .. ' ' .. expires .. ' ' .. fence,
  'PXAT', expires)
redis.call('ZADD', KEYS[6], expires, ARGV[1])
if ARGV[11] ~= '0' then
  redis.call('XADD', KEYS[7], 'MINID', '~', string.format('%d', now - tonumber(ARGV[11])),
    '*', 'type', 'lease.created', 'lease_id', ARGV[1], 'slot', ARGV[3], 'fence', fence,
    'expires_ms', expires, 'at_ms', now_text)
end
return 1
"""

SLOT_STEP_NS = 60 * 10**9


@dataclass
class Throughput:
    calls: int
    seconds: float
    rps: float
    usec_per_call: float  # Redis CPU per EVALSHA, from INFO commandstats


def evalsha_stats(client: Any) -> tuple[int, float]:
    """(calls, usec) of EVALSHA and EVAL together, from INFO commandstats."""
    stats = client.info("commandstats")
    calls = usec = 0
    for name in ("cmdstat_evalsha", "cmdstat_eval"):
        calls += stats.get(name, {}).get("calls", 0)
        usec += stats.get(name, {}).get("usec", 0)
    return calls, usec


def _per_call(before: tuple[int, float], after: tuple[int, float]) -> float:
    calls = after[0] - before[0]
    return (after[1] - before[1]) / calls if calls else float("nan")


# redis-benchmark puts a new random number (of -r's range) in place of each of these.
RANDOM = "__rand_int__"


def redis_benchmark(client: Any, url: str, prefix: str, requests: int) -> Throughput:
    """The minimal hold script under redis-benchmark -P 16 (16 connections)."""
    sha = client.script_load(MINIMAL_HOLD)
    keys = [f"{prefix}:slot:{RANDOM}", f"{prefix}:hold:{RANDOM}"]
    return _evalsha_benchmark(client, url, sha, keys, ["1000000", "120000", RANDOM], requests)


# create_lease's KEYS and ARGV that name what is new on each call (KEYS header of
# lua/create_lease-7.lua): the slot's occupancy set, the client reference, the lease
# record; the lease id and the slot's name.
CREATE_LEASE_FRESH_KEYS = (0, 2, 3)
CREATE_LEASE_FRESH_ARGS = (0, 2)


def create_lease_benchmark(
    client: Any, url: str, prefix: str, requests: int, text: str | None = None, **settings: Any
) -> Throughput:
    """The create_lease script under redis-benchmark -P 16, driven exactly as the minimal
    one: a real call's keys and arguments (LeaseBroker.create_lease_call), with a fresh
    slot, client reference, record and lease id on each call. All calls of a run are
    one merchant's: its lease index, fences and event stream grow over the run, as a
    busy merchant's do. (Calls of merchants new to Redis each cost more: each creates
    those three keys too.) Each run has a merchant of its own, so every run starts
    alike: one that inherited an earlier run's grown index and fences would pay for
    their size. ``text``: another script to drive with the same keys and arguments
    (CREATE_LEASE_COMMANDS). ``settings``: BrokerConfig fields, e.g. the event streams
    off."""
    from leasebroker.core.broker import LeaseBroker
    from leasebroker.core.keys import SlotId
    from leasebroker.core.model import LeaseRequest
    from leasebroker.core.settings import BrokerConfig

    broker = LeaseBroker(client, BrokerConfig(key_prefix=prefix, **settings))
    # Its own merchant also keeps a run from drawing an earlier run's keys: redis-benchmark
    # seeds random() with time(NULL) ^ getpid(), so two runs a second apart whose pids
    # are one apart draw the same numbers, and the second would replay the first's leases.
    merchant = f"rb-{secrets.token_hex(4)}"
    start = time.time_ns() + 24 * 3600 * 10**9
    keys, args = broker.create_lease_call(
        LeaseRequest(SlotId(merchant, "svc", start, 1800 * 10**9), "r")
    )
    sha = client.script_load(text or broker.scripts["create_lease"].text)
    index = broker.keys.lease_index(merchant)
    keys = [k + RANDOM if i in CREATE_LEASE_FRESH_KEYS else k for i, k in enumerate(keys)]
    texts = [a.decode() if isinstance(a, bytes) else str(a) for a in args]
    texts = [a + RANDOM if i in CREATE_LEASE_FRESH_ARGS else a for i, a in enumerate(texts)]
    result = _evalsha_benchmark(client, url, sha, keys, texts, requests)
    # Each call must have granted a lease (a refusal is far cheaper): the merchant's
    # lease index holds all of them, but for the few random numbers drawn twice.
    granted = client.zcard(index)
    if granted < 0.9 * requests:
        raise RuntimeError(f"create_lease under redis-benchmark granted {granted} of {requests}")
    return result


def _evalsha_benchmark(
    client: Any, url: str, sha: str, keys: list[str], args: list[str], requests: int
) -> Throughput:
    """``EVALSHA sha`` with ``keys`` and ``args`` under redis-benchmark -P 16 (16
    connections): requests/s, and Redis CPU per call from INFO commandstats."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        raise RuntimeError("redis-benchmark not found (Debian: apt-get install redis-tools)")
    parts = urlsplit(url)
    db = (parts.path or "/0").strip("/") or "0"
    cmd = [binary, "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
    if parts.password:
        cmd += ["-a", parts.password]
        if parts.username:
            cmd += ["--user", parts.username]
    cmd += ["--dbnum", db, "-c", "16", "-P", "16", "-n", str(requests), "-r", "100000000"]
    cmd += ["--csv", "EVALSHA", sha, str(len(keys)), *keys, *args]
    before = evalsha_stats(client)
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    seconds = time.perf_counter() - started
    after = evalsha_stats(client)
    rows = [row for row in csv.reader(io.StringIO(out)) if row and row[0] != "test"]
    rps = float(rows[-1][1])
    return Throughput(after[0] - before[0], seconds, rps, _per_call(before, after))


def _threaded(call: Callable[[int], None], client: Any, threads: int, seconds: float) -> Throughput:
    """``call(i)`` from ``threads`` threads for ``seconds`` (after a short warm-up)."""
    counter = itertools.count()

    def work(until: float, done: list[int]) -> None:
        while time.perf_counter() < until:
            call(next(counter))
            done.append(1)

    def run(seconds: float) -> tuple[int, float]:
        done: list[int] = []
        until = time.perf_counter() + seconds
        workers = [threading.Thread(target=work, args=(until, done)) for _ in range(threads)]
        started = time.perf_counter()
        for each in workers:
            each.start()
        for each in workers:
            each.join()
        return len(done), time.perf_counter() - started

    run(min(0.5, seconds))  # warm up: connections, scripts loaded
    before = evalsha_stats(client)
    calls, elapsed = run(seconds)
    after = evalsha_stats(client)
    return Throughput(calls, elapsed, calls / elapsed, _per_call(before, after))


def library(
    url: str, prefix: str, threads: int, duration_s: float
) -> tuple[Throughput, Throughput, Throughput]:
    """``LeaseBroker.create_lease`` from ``threads`` threads, each call a fresh slot: with
    auto-pipelining (the default), then without it; then the minimal script from as many
    threads through redis-py (the same client-side load on the machine, so the two
    scripts' Redis CPU per call compare like for like)."""
    from leasebroker.core.broker import LeaseBroker
    from leasebroker.core.keys import SlotId
    from leasebroker.core.model import LeaseRequest
    from leasebroker.core.settings import BrokerConfig
    from leasebroker.core.store import connect

    store = connect(url, pool_size=threads + 4)
    try:
        base = time.time_ns() + 24 * 3600 * 10**9

        def creates(auto_pipeline: bool, merchant: str) -> Throughput:
            config = BrokerConfig(key_prefix=prefix)
            broker = LeaseBroker(store.client, config, auto_pipeline=auto_pipeline)

            def create(i: int) -> None:
                slot = SlotId(f"{merchant}{i % 16}", "svc", base + i * SLOT_STEP_NS, 1800 * 10**9)
                broker.create_lease(LeaseRequest(slot, f"ref-{i}"))

            return _threaded(create, store.client, threads, duration_s)

        pipelined = creates(True, "m")
        alone = creates(False, "u")  # other merchants: no call replays one made above
        minimal = store.client.register_script(MINIMAL_HOLD)

        def hold(i: int) -> None:
            keys = [f"{prefix}:slot:{i}", f"{prefix}:hold:{i}"]
            minimal(keys=keys, args=[1_000_000, 120_000, i])

        held = _threaded(hold, store.client, threads, duration_s)
        return pipelined, alone, held
    finally:
        store.close()


def library_async(
    url: str, prefix: str, concurrency: int, duration_s: float, **settings: Any
) -> Throughput:
    """``AsyncBroker.create_lease`` (core/async_broker.py, what ``serve``'s BookingService
    awaits) from ``concurrency`` coroutines on one event loop, each call a fresh slot:
    the library's asyncio path, all calls on one pipelined connection. ``settings``:
    BrokerConfig fields."""
    import asyncio

    from leasebroker.core.async_broker import AsyncBroker, async_twin
    from leasebroker.core.broker import LeaseBroker
    from leasebroker.core.keys import SlotId
    from leasebroker.core.model import LeaseRequest
    from leasebroker.core.settings import BrokerConfig
    from leasebroker.core.store import connect

    store = connect(url, pool_size=4)
    base = time.time_ns() + 48 * 3600 * 10**9
    counter = itertools.count()

    async def main() -> Throughput:
        broker = LeaseBroker(store.client, BrokerConfig(key_prefix=prefix, **settings))
        awaited = AsyncBroker(broker, async_twin(store.client))

        async def worker(until: float, done: list[int]) -> None:
            while time.perf_counter() < until:
                i = next(counter)
                slot = SlotId(f"a{i % 16}", "svc", base + i * SLOT_STEP_NS, 1800 * 10**9)
                await awaited.create_lease(LeaseRequest(slot, f"ref-{i}"))
                done.append(1)

        async def run(seconds: float) -> tuple[int, float]:
            done: list[int] = []
            started = time.perf_counter()
            until = started + seconds
            await asyncio.gather(*(worker(until, done) for _ in range(concurrency)))
            return len(done), time.perf_counter() - started

        try:
            await run(min(0.5, duration_s))  # warm up: the connection, the script loaded
            before = evalsha_stats(store.client)
            calls, elapsed = await run(duration_s)
            after = evalsha_stats(store.client)
        finally:
            await awaited.close()
        return Throughput(calls, elapsed, calls / elapsed, _per_call(before, after))

    try:
        return asyncio.run(main())
    finally:
        store.close()
