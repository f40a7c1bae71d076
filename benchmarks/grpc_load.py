"""Load on one BookingService method from a separate process (a grpc.aio client).

Closed loop: ``concurrency`` calls in flight for ``duration_s`` seconds (or until the
inputs run out). Paced (``rate`` set): calls start on a fixed schedule whatever the
replies do (open loop), and latency counts from the planned start, so a stall is not
hidden by the client waiting.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

MERCHANTS = 16
SLOT_STEP_NS = 60 * 10**9
WARMUP_CALLS = 100


@dataclass
class LoadSpec:
    target: str
    method: str  # CreateLease, CreateBooking or UpdateBooking
    run_id: str
    base_ns: int = 0  # first slot start (CreateLease): each run uses its own range
    concurrency: int = 16
    duration_s: float = 3.0
    rate: float | None = None
    inputs: list[str] = field(default_factory=list)  # lease ids / booking ids
    warmup: int = WARMUP_CALLS
    # Connections the calls are spread over, round robin: serve --processes N spreads
    # load by connection, so one connection would reach one process.
    connections: int = 1


@dataclass
class LoadResult:
    calls: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    errors: dict[str, int]
    ids: list[str]  # every id returned, warm-up included (the next load's inputs)
    all_calls: int  # every call made, warm-up and failures included
    client_cpu_s: float = 0.0  # the client process's CPU over the counted calls


def _request(spec: LoadSpec, i: int):
    from google.protobuf.field_mask_pb2 import FieldMask

    from leasebroker.api.v0 import booking_service_pb2 as pb

    if spec.method == "CreateLease":
        lease = pb.Lease(
            merchant_id=f"m{i % MERCHANTS}",
            service_id="svc",
            client_reference=f"{spec.run_id}-{i}",
        )
        lease.start_time.FromNanoseconds(spec.base_ns + i * SLOT_STEP_NS)
        lease.duration.FromSeconds(1800)
        return pb.CreateLeaseRequest(lease=lease)
    if spec.method == "CreateBooking":
        client = pb.ClientInformation(given_name="Ada", telephone="+44 20 7946 0000")
        request = pb.CreateBookingRequest(client_information=client)
        request.lease_ref.lease_id = spec.inputs[i]
        return request
    if spec.method == "UpdateBooking":
        request = pb.UpdateBookingRequest(update_mask=FieldMask(paths=["status"]))
        request.booking.booking_id = spec.inputs[i]
        request.booking.status = pb.CANCELED
        return request
    raise ValueError(spec.method)


def _reply_id(method: str, reply) -> str:
    return reply.lease.lease_id if method == "CreateLease" else reply.booking.booking_id


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _run(spec: LoadSpec) -> LoadResult:
    import grpc

    from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc

    limit = len(spec.inputs) if spec.method != "CreateLease" else None
    # A channel of its own subchannel pool is a connection of its own.
    own = [("grpc.use_local_subchannel_pool", 1)]
    channels = [
        grpc.aio.insecure_channel(spec.target, options=own) for _ in range(spec.connections)
    ]
    try:
        methods = [getattr(pb_grpc.BookingServiceStub(ch), spec.method) for ch in channels]
        return await _load(spec, methods, limit)
    finally:
        for channel in channels:
            await channel.close()


async def _load(spec: LoadSpec, methods: list, limit: int | None) -> LoadResult:
    import grpc

    counter = itertools.count()
    latencies: list[float] = []
    ids: list[str] = []
    errors: Counter[str] = Counter()
    made = Counter()

    async def one(i: int, started: float) -> None:
        made["calls"] += 1
        try:
            reply = await methods[i % len(methods)](_request(spec, i), timeout=30)
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] += 1
            return
        latencies.append(time.perf_counter() - started)
        ids.append(_reply_id(spec.method, reply))

    async def worker(until: float, calls: int | None) -> None:
        while time.perf_counter() < until and (calls is None or len(latencies) < calls):
            i = next(counter)
            if limit is not None and i >= limit:
                return
            await one(i, time.perf_counter())

    # Warm up (connection, server threads, scripts loaded), then start counting.
    warm = min(spec.warmup, limit // 4 if limit is not None else spec.warmup)
    await asyncio.gather(*(worker(time.perf_counter() + 10, warm) for _ in range(8)))
    latencies.clear()
    errors.clear()
    started = time.perf_counter()
    cpu = time.process_time()
    if spec.rate is None:
        until = started + spec.duration_s
        await asyncio.gather(*(worker(until, None) for _ in range(spec.concurrency)))
    else:
        tasks = set()
        for k in range(int(spec.rate * spec.duration_s)):
            planned = started + k / spec.rate
            i = next(counter)
            if limit is not None and i >= limit:
                break
            delay = planned - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.ensure_future(one(i, planned))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return LoadResult(
        calls=len(latencies),
        seconds=seconds,
        rps=len(latencies) / seconds,
        p50_ms=_quantile(latencies, 0.50) * 1e3,
        p99_ms=_quantile(latencies, 0.99) * 1e3,
        errors=dict(errors),
        ids=ids,
        all_calls=made["calls"],
        client_cpu_s=cpu,
    )


def run_load(spec: LoadSpec) -> LoadResult:
    """Run one load in this process (the pool below runs it in another)."""
    return asyncio.run(_run(spec))


class LoadClient:
    """One spawned client process, reused for every load of a run (spawned, not forked:
    gRPC does not survive a fork)."""

    def __init__(self) -> None:
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        self._pool.submit(_warm_imports).result(timeout=120)

    def run(self, spec: LoadSpec) -> LoadResult:
        return self._pool.submit(run_load, spec).result(timeout=spec.duration_s + 120)

    def close(self) -> None:
        self._pool.shutdown()


def _warm_imports() -> None:
    import grpc  # noqa: F401

    from leasebroker.api.v0 import booking_service_pb2_grpc  # noqa: F401
