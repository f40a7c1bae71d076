"""The v0 BookingService over gRPC: message shape checks and the error mapping, nothing else."""

from __future__ import annotations

import grpc

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
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
from leasebroker.wire.errors import rpc


class BookingService(pb_grpc.BookingServiceServicer):
    """``ext.maps.booking.partner.v0.BookingService`` backed by a :class:`LeaseBroker`."""

    def __init__(self, broker: LeaseBroker) -> None:
        self.broker = broker

    @rpc
    def CreateLease(
        self, request: pb.CreateLeaseRequest, context: grpc.ServicerContext
    ) -> pb.CreateLeaseResponse:
        with LEASE_FIELDS:
            lease = self.broker.create_lease(lease_request_from_proto(request.lease))
        response = pb.CreateLeaseResponse()
        lease_to_proto(request.lease, lease, response.lease)
        return response

    @rpc
    def CreateBooking(
        self, request: pb.CreateBookingRequest, context: grpc.ServicerContext
    ) -> pb.CreateBookingResponse:
        booking = self.broker.create_booking(booking_request_from_proto(request))
        response = pb.CreateBookingResponse()
        booking_to_proto(booking, response.booking)
        return response

    @rpc
    def UpdateBooking(
        self, request: pb.UpdateBookingRequest, context: grpc.ServicerContext
    ) -> pb.UpdateBookingResponse:
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
