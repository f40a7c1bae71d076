"""The v0 BookingService over gRPC: message shape checks and the error mapping, nothing else.

It runs on a ``grpc.aio`` server (wire/server.py), and every method is a coroutine
that awaits the core on an asyncio twin of the store's client (core/async_broker.py):
a call waiting for Redis holds no thread. Without a twin (a client class of the
application's own, which async_twin does not know) each runs the threaded core method
in the server's handler threads instead, with the call's context (its deadline, its
trace).
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
from leasebroker.core.async_broker import AsyncBroker, async_twin
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

    Its methods, and ``close``, run on one event loop (the grpc.aio server's). The
    asyncio broker is made there on the first call after the broker is ready (``serve``
    starts with a stand-in until Redis answers); threaded calls run in ``executor``.
    """

    def __init__(self, broker: LeaseBroker, executor: Executor | None = None) -> None:
        self.broker = broker
        self.executor = executor
        self._awaited: AsyncBroker | None = None
        self._threaded = False  # the store has no asyncio twin: every call in threads

    @rpc_async
    async def CreateLease(
        self, request: pb.CreateLeaseRequest, context: Any
    ) -> pb.CreateLeaseResponse:
        with LEASE_FIELDS:
            lease = await self._core("create_lease", lease_request_from_proto(request.lease))
        response = pb.CreateLeaseResponse()
        lease_to_proto(request.lease, lease, response.lease)
        return response

    @rpc_async
    async def CreateBooking(
        self, request: pb.CreateBookingRequest, context: Any
    ) -> pb.CreateBookingResponse:
        booking = await self._core("create_booking", booking_request_from_proto(request))
        response = pb.CreateBookingResponse()
        booking_to_proto(booking, response.booking)
        return response

    @rpc_async
    async def UpdateBooking(
        self, request: pb.UpdateBookingRequest, context: Any
    ) -> pb.UpdateBookingResponse:
        update = booking_update_from_proto(request)
        with BOOKING_FIELDS:
            if update.cancel:
                booking = await self._core("cancel_booking", update.booking_id)
            else:
                booking = await self._core(
                    "reschedule_booking", update.booking_id, update.start_ns, update.duration_ns
                )
        response = pb.UpdateBookingResponse()
        booking_to_proto(booking, response.booking)
        return response

    async def _core(self, operation: str, *args: Any) -> Any:
        """The core ``operation`` (a method both LeaseBroker and AsyncBroker have, by the
        same name and arguments): awaited on the asyncio broker, or in a handler thread
        when the store has no asyncio twin."""
        awaited = self._awaited or self._asyncio_broker()
        if awaited is not None:
            return await getattr(awaited, operation)(*args)
        return await in_threads(
            self.executor, functools.partial(getattr(self.broker, operation), *args)
        )

    def _asyncio_broker(self) -> AsyncBroker | None:
        """The operations on an asyncio twin of the broker's client, made once; None
        when the store has none (reading ``client`` of a broker still starting raises
        its STORE_UNAVAILABLE)."""
        if self._threaded:
            return None
        twin = async_twin(self.broker.client)
        if twin is None:
            self._threaded = True
            return None
        self._awaited = AsyncBroker(self.broker, twin)
        return self._awaited

    async def close(self) -> None:
        """Close the asyncio connections (on the loop that made them)."""
        if self._awaited is not None:
            await self._awaited.close()
