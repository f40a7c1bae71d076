"""The no-op baseline: the v0 BookingService on the same server stack as `serve` (a
``grpc.aio`` server on an event loop thread of its own, of the kind `serve` picks by
default (wire/event_loop.py: uvloop where installed), with the same number of handler
threads for plain methods; CreateLease a coroutine, CreateBooking and UpdateBooking plain
methods, as in wire/booking_service.py), answering every call with a canned reply
without touching Redis.

With ``--await-redis URL`` its CreateLease first awaits one ``PING`` on the pipelined
connection serve's calls use (core/async_pipe.py): the floor of any handler that waits
for Redis once on this stack, the no-op's cost plus one round trip and nothing of the
broker's.

    python benchmarks/noop_server.py --port 0 --workers 32 [--event-loop auto|uvloop|asyncio]
        [--await-redis redis://127.0.0.1:6379/0]

Prints ``listening on HOST:PORT`` on stderr, as `serve` does, and runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import gc
import signal
import sys
import threading
from concurrent import futures

import grpc
import redis.asyncio

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.async_pipe import AsyncPipe
from leasebroker.wire.event_loop import EVENT_LOOPS
from leasebroker.wire.server import AioServer


def _canned_lease() -> pb.Lease:
    lease = pb.Lease(
        lease_id="l.bm9vcA.AAAAAAAAAAAAAAAAAAAAAA",
        merchant_id="m0",
        service_id="svc",
        client_reference="noop",
    )
    lease.start_time.FromSeconds(1_800_000_000)
    lease.duration.FromSeconds(1800)
    lease.lease_expiration_time.FromSeconds(1_800_000_000)
    return lease


def _canned_booking(status: int) -> pb.Booking:
    booking = pb.Booking(
        booking_id="b.bm9vcA.AAAAAAAAAAAAAAAAAAAAAA",
        merchant_id="m0",
        service_id="svc",
        status=status,
        client_information=pb.ClientInformation(given_name="Ada", telephone="+44 20 7946 0000"),
    )
    booking.start_time.FromSeconds(1_800_000_000)
    booking.duration.FromSeconds(1800)
    return booking


LEASE_REPLY = pb.CreateLeaseResponse(lease=_canned_lease())
BOOKING_REPLY = pb.CreateBookingResponse(booking=_canned_booking(pb.CONFIRMED))
UPDATE_REPLY = pb.UpdateBookingResponse(booking=_canned_booking(pb.CANCELED))


class NoopBookingService(pb_grpc.BookingServiceServicer):
    """Canned replies: what the server stack costs with no broker behind it."""

    async def CreateLease(self, request, context):
        return LEASE_REPLY

    def CreateBooking(self, request, context):
        return BOOKING_REPLY

    def UpdateBooking(self, request, context):
        return UPDATE_REPLY


class PingFirstBookingService(NoopBookingService):
    """The no-op whose CreateLease awaits one PING on Redis first (made on the server's
    loop at the first call, as serve makes its asyncio broker)."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.pipe: AsyncPipe | None = None

    async def CreateLease(self, request, context):
        if self.pipe is None:
            self.pipe = AsyncPipe(redis.asyncio.Redis.from_url(self.redis_url))
        await self.pipe.call("PING")
        return LEASE_REPLY


def start(
    host: str, port: int, workers: int, event_loop: str = "auto", await_redis: str | None = None
) -> tuple[AioServer, int]:
    """Start the no-op server the way wire/server.py starts the real one (its CreateLease
    awaiting a PING on ``await_redis`` first, when given)."""
    service = PingFirstBookingService(await_redis) if await_redis else NoopBookingService()
    executor = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc")
    aio = AioServer("booking-service", executor, event_loop)

    async def build() -> int:
        aio.server = grpc.aio.server(
            migration_thread_pool=executor, options=[("grpc.so_reuseport", 0)]
        )
        pb_grpc.add_BookingServiceServicer_to_server(service, aio.server)
        bound = aio.server.add_insecure_port(f"{host}:{port}")
        await aio.server.start()
        return bound

    return aio, aio.run(build())


def main() -> None:
    parser = argparse.ArgumentParser(description="no-op BookingService for benchmarks")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workers", type=int, default=32)
    parser.add_argument("--event-loop", choices=EVENT_LOOPS, default="auto")
    parser.add_argument("--await-redis", metavar="URL", help="CreateLease awaits a PING there")
    args = parser.parse_args()
    server, port = start(args.host, args.port, args.workers, args.event_loop, args.await_redis)
    gc.collect()  # and freeze what start-up made, as serve does once it is ready
    gc.freeze()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    kind = "no-op awaiting Redis" if args.await_redis else "no-op"
    print(f"listening on {args.host}:{port} ({kind})", file=sys.stderr, flush=True)
    stop.wait()
    server.stop(None).wait()


if __name__ == "__main__":
    main()
