"""CreateLease throughput and latency, through the library or a real gRPC server.

Not a test: numbers depend on the machine. Run it against the local Redis:

    python benchmarks/create_lease.py --redis-url redis://127.0.0.1:6379/0 --calls 5000
    python benchmarks/create_lease.py --grpc --threads 16          # embedded store

Each call takes a fresh slot, so every call is a grant (the work the hot path
does: one EVALSHA that checks, writes and appends an event). Keys go under a
throwaway prefix that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import connect, embedded_store
from leasebroker.wire.server import start_server

HOUR_NS = 3600 * 10**9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", help="default: the embedded store")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--grpc", action="store_true", help="call through a gRPC server")
    args = parser.parse_args()

    prefix = f"lbbench-{uuid.uuid4().hex[:8]}"
    store = (
        connect(args.redis_url, pool_size=args.threads + 4) if args.redis_url else embedded_store()
    )
    broker = LeaseBroker(store.client, BrokerConfig(key_prefix=prefix))
    base = time.time_ns() + HOUR_NS
    call = _grpc_call(broker, args.threads) if args.grpc else _library_call(broker)

    def timed(i: int) -> float:
        started = time.perf_counter()
        call(i, base)
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(args.threads) as pool:
        latencies = sorted(pool.map(timed, range(args.calls)))
    elapsed = time.perf_counter() - started
    quantiles = statistics.quantiles(latencies, n=100)
    print(
        f"{args.calls} CreateLease calls, {args.threads} threads, "
        f"{'gRPC' if args.grpc else 'library'}, {store.description}:\n"
        f"  {args.calls / elapsed:,.0f} calls/s; latency p50 {quantiles[49] * 1e3:.2f} ms, "
        f"p99 {quantiles[98] * 1e3:.2f} ms"
    )
    keys = list(store.client.scan_iter(match=f"{prefix}:*", count=1000))
    for i in range(0, len(keys), 1000):
        store.client.delete(*keys[i : i + 1000])


def _library_call(broker: LeaseBroker) -> Callable[[int, int], None]:
    def call(i: int, base: int) -> None:
        slot = SlotId("bench", "svc", base + i * 10**9, 1800 * 10**9)
        broker.create_lease(LeaseRequest(slot, f"ref-{i}"))

    return call


def _grpc_call(broker: LeaseBroker, threads: int) -> Callable[[int, int], None]:
    running = start_server(broker, "127.0.0.1", 0, workers=threads)
    stub = pb_grpc.BookingServiceStub(grpc.insecure_channel(f"127.0.0.1:{running.port}"))

    def call(i: int, base: int, _server: object = running) -> None:
        # _server keeps the server referenced: a collected grpc.Server stops serving.
        lease = pb.Lease(merchant_id="bench", service_id="svc", client_reference=f"ref-{i}")
        lease.start_time.FromNanoseconds(base + i * 10**9)
        lease.duration.FromSeconds(1800)
        stub.CreateLease(pb.CreateLeaseRequest(lease=lease))

    return call


if __name__ == "__main__":
    main()
