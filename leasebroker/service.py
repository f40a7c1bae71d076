"""The v0 BookingService over gRPC: message shape checks and the error mapping, nothing else."""

from __future__ import annotations

import logging

import grpc

from leasebroker import grpc_errors
from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.broker import LeaseBroker
from leasebroker.convert import lease_request_from_proto, lease_to_proto
from leasebroker.errors import BrokerError, Reason

log = logging.getLogger(__name__)


class BookingService(pb_grpc.BookingServiceServicer):
    """``ext.maps.booking.partner.v0.BookingService`` backed by a :class:`LeaseBroker`."""

    def __init__(self, broker: LeaseBroker) -> None:
        self.broker = broker

    def CreateLease(
        self, request: pb.CreateLeaseRequest, context: grpc.ServicerContext
    ) -> pb.CreateLeaseResponse:
        try:
            lease = self.broker.create_lease(lease_request_from_proto(request.lease))
        except BrokerError as error:
            grpc_errors.abort(context, error)
        except Exception:
            log.exception("CreateLease failed")
            grpc_errors.abort(context, BrokerError(Reason.INTERNAL, "internal error"))
        return pb.CreateLeaseResponse(lease=lease_to_proto(request.lease, lease))
