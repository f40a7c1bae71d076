"""The v0 BookingService over gRPC: message shape checks and the error mapping, nothing else.

It runs on a ``grpc.aio`` server (wire/server.py), and every method is a coroutine.
CreateLease, on an asyncio twin of the store's client (core/async_leases.py), waits for
Redis holding no thread; without a twin (Redis Cluster, Sentinel) it runs the threaded
core call in the server's handler threads, as CreateBooking and UpdateBooking do (they
read a record first, then run their script: still threaded calls for now). The call's
deadline and trace context go with each call into its thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.async_leases import AsyncLeases, async_twin
from leasebroker.core.broker import LeaseBroker
from leasebroker.wire.booking_convert import (
    BOOKING_FIELDS,
    LEASE_FIELDS,
    booking_request_from_proto,
    booking_to_proto,
    booking_update_from_proto,
    lease_request_from_proto,
    lease_to_proto,
)
from leasebroker.wire.errors import rpc_async

Result = TypeVar("Result")


async def in_threads(executor: Executor | None, call: Callable[[], Result]) -> Result:
    """``call()`` in one of ``executor``'s threads, with this task's context (the call's
    deadline goes with it)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(context.run, call)
    )


class BookingService(pb_grpc.BookingServiceServicer):
    """``ext.maps.booking.partner.v0.BookingService`` backed by a :class:`LeaseBroker`.

    Its CreateLease, and ``close``, run on one event loop (the grpc.aio server's). The
    asyncio client is made there on the first CreateLease after the broker is ready
    (``serve`` starts with a stand-in until Redis answers); threaded calls run in
    ``executor``.
    """

    def __init__(self, broker: LeaseBroker, executor: Executor | None = None) -> None:
        self.broker = broker
        self.executor = executor
        self._leases: AsyncLeases | None = None
        self._threaded = False  # the store has no asyncio twin: CreateLease in threads

    @rpc_async
    async def CreateLease(
        self, request: pb.CreateLeaseRequest, context: Any
    ) -> pb.CreateLeaseResponse:
        with LEASE_FIELDS:
            wanted = lease_request_from_proto(request.lease)
            leases = self._leases or self._asyncio_leases()
            if leases is not None:
                lease = await leases.create_lease(wanted)
            else:
                lease = await in_threads(self.executor, lambda: self.broker.create_lease(wanted))
        response = pb.CreateLeaseResponse()
        lease_to_proto(request.lease, lease, response.lease)
        return response

    def _asyncio_leases(self) -> AsyncLeases | None:
        """CreateLease on an asyncio twin of the broker's client, made once; None when
        the store has none (reading ``client`` of a broker still starting raises its
        STORE_UNAVAILABLE)."""
        if self._threaded:
            return None
        twin = async_twin(self.broker.client)
        if twin is None:
            self._threaded = True
            return None
        self._leases = AsyncLeases(self.broker, twin)
        return self._leases

    async def close(self) -> None:
        """Close the asyncio client's connections (on the loop that made them)."""
        if self._leases is not None:
            await self._leases.close()

    @rpc_async
    async def CreateBooking(
        self, request: pb.CreateBookingRequest, context: Any
    ) -> pb.CreateBookingResponse:
        return await in_threads(self.executor, lambda: self._create_booking(request))

    def _create_booking(self, request: pb.CreateBookingRequest) -> pb.CreateBookingResponse:
        booking = self.broker.create_booking(booking_request_from_proto(request))
        response = pb.CreateBookingResponse()
        booking_to_proto(booking, response.booking)
        return response

    @rpc_async
    async def UpdateBooking(
        self, request: pb.UpdateBookingRequest, context: Any
    ) -> pb.UpdateBookingResponse:
        return await in_threads(self.executor, lambda: self._update_booking(request))

    def _update_booking(self, request: pb.UpdateBookingRequest) -> pb.UpdateBookingResponse:
        update = booking_update_from_proto(request)
        with BOOKING_FIELDS:
            if update.cancel:
                booking = self.broker.cancel_booking(update.booking_id)
            else:
                booking = self.broker.reschedule_booking(
                    update.booking_id, update.start_ns, update.duration_ns
                )
        response = pb.UpdateBookingResponse()
        booking_to_proto(booking, response.booking)
        return response
