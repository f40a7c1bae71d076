"""The operators' ``leasebroker.v1.LeaseAdmin`` service: each RPC a thin wrapper over one
:class:`LeaseBroker` method.

Requests are converted by :mod:`leasebroker.wire.admin_convert`; every bad field is
reported at once as INVALID_FIELD with ``google.rpc.BadRequest`` details named by its
path in the v1 request message (``slot.start_time``). Errors go through ``rpc``, and
so through the one :mod:`leasebroker.wire.errors` mapping.

It is served on its own port (:func:`leasebroker.wire.server.start_admin_server`),
never on the one Google calls.
"""

from __future__ import annotations

import grpc

from leasebroker.api.v1 import admin_pb2 as pb
from leasebroker.api.v1 import admin_pb2_grpc as pb_grpc
from leasebroker.core.broker import LeaseBroker
from leasebroker.wire.admin_convert import (
    SELECTION_FIELDS,
    SLOT_FIELDS,
    availability_to_proto,
    booking_to_proto,
    day_from_proto,
    extension_ms_from_proto,
    feed_from_json,
    inventory_state_to_proto,
    lease_to_proto,
    list_filter_from_proto,
    record_id,
    request_slot,
    slot_capacity_to_proto,
)
from leasebroker.wire.errors import rpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LeaseAdmin"].full_name


class LeaseAdmin(pb_grpc.LeaseAdminServicer):
    """``leasebroker.v1.LeaseAdmin`` backed by a :class:`LeaseBroker`."""

    def __init__(self, broker: LeaseBroker) -> None:
        self.broker = broker

    @rpc
    def GetLease(self, request: pb.GetLeaseRequest, context: grpc.ServicerContext) -> pb.LeaseInfo:
        return lease_to_proto(self.broker.get_lease(record_id(request.lease_id, "lease_id")))

    @rpc
    def GetBooking(
        self, request: pb.GetBookingRequest, context: grpc.ServicerContext
    ) -> pb.BookingInfo:
        booking_id = record_id(request.booking_id, "booking_id")
        return booking_to_proto(self.broker.get_booking(booking_id))

    @rpc
    def ListLeases(
        self, request: pb.ListLeasesRequest, context: grpc.ServicerContext
    ) -> pb.ListLeasesResponse:
        where = list_filter_from_proto(request)
        with SELECTION_FIELDS:
            leases = self.broker.list_leases(
                where.merchant_id, where.slot, where.start_from_ns, where.start_before_ns
            )
        return pb.ListLeasesResponse(leases=[lease_to_proto(view) for view in leases])

    @rpc
    def ListBookings(
        self, request: pb.ListBookingsRequest, context: grpc.ServicerContext
    ) -> pb.ListBookingsResponse:
        where = list_filter_from_proto(request)
        with SELECTION_FIELDS:
            bookings = self.broker.list_bookings(
                where.merchant_id, where.slot, where.start_from_ns, where.start_before_ns
            )
        return pb.ListBookingsResponse(bookings=[booking_to_proto(b) for b in bookings])

    @rpc
    def ReleaseLease(
        self, request: pb.ReleaseLeaseRequest, context: grpc.ServicerContext
    ) -> pb.LeaseInfo:
        return lease_to_proto(self.broker.release_lease(record_id(request.lease_id, "lease_id")))

    @rpc
    def ExtendLease(
        self, request: pb.ExtendLeaseRequest, context: grpc.ServicerContext
    ) -> pb.LeaseInfo:
        by_ms = extension_ms_from_proto(request)
        fence = (
            request.expected_fencing_token if request.HasField("expected_fencing_token") else None
        )
        return lease_to_proto(self.broker.extend_lease(request.lease_id, by_ms, fence))

    @rpc
    def GetSlotAvailability(
        self, request: pb.GetSlotAvailabilityRequest, context: grpc.ServicerContext
    ) -> pb.SlotAvailability:
        slot = request_slot(request)
        with SLOT_FIELDS:
            return availability_to_proto(self.broker.slot_status(slot))

    @rpc
    def ListSlotAvailability(
        self, request: pb.ListSlotAvailabilityRequest, context: grpc.ServicerContext
    ) -> pb.ListSlotAvailabilityResponse:
        day_start = day_from_proto(request)
        with SELECTION_FIELDS:
            statuses = self.broker.day_status(request.merchant_id, day_start)
        return pb.ListSlotAvailabilityResponse(slots=[availability_to_proto(s) for s in statuses])

    @rpc
    def LoadInventory(
        self, request: pb.LoadInventoryRequest, context: grpc.ServicerContext
    ) -> pb.LoadInventoryResponse:
        inventories = feed_from_json(request.feed_json, complete=request.complete)
        meta = inventories.metadata
        total, withdrawn = self.broker.load_inventories(
            inventories,
            complete=request.complete,
            generation=meta.generation_timestamp,
            nonce=meta.nonce,
        )
        return pb.LoadInventoryResponse(
            merchants=len(inventories), slots=total, withdrawn_merchants=withdrawn
        )

    @rpc
    def SetSlotCapacity(
        self, request: pb.SetSlotCapacityRequest, context: grpc.ServicerContext
    ) -> pb.SetSlotCapacityResponse:
        slot = request_slot(request)
        with SLOT_FIELDS:
            previous = self.broker.set_capacity(slot, request.capacity)
        return pb.SetSlotCapacityResponse(previous_capacity=previous)

    @rpc
    def GetInventory(
        self, request: pb.GetInventoryRequest, context: grpc.ServicerContext
    ) -> pb.GetInventoryResponse:
        with SELECTION_FIELDS:
            inventory = self.broker.get_inventory(request.merchant_id)
            state = self.broker.inventory_state(request.merchant_id)
        return pb.GetInventoryResponse(
            slots=[slot_capacity_to_proto(item) for item in inventory],
            state=inventory_state_to_proto(state),
        )
