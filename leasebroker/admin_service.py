"""The operators' ``leasebroker.v1.LeaseAdmin`` service: request checks and conversions only.

Each RPC is a thin wrapper over one :class:`LeaseBroker` method. Requests are
checked here, every bad field reported at once as INVALID_FIELD with
``google.rpc.BadRequest`` details named by its path in the v1 request message
(``slot.start_time``). Errors go through the v0 service's ``rpc`` decorator,
and so through the one :mod:`leasebroker.grpc_errors` mapping.

It is served on its own port (:func:`leasebroker.server.start_admin_server`),
never on the one Google calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from leasebroker.api.v0 import booking_service_pb2 as v0
from leasebroker.api.v1 import admin_pb2 as pb
from leasebroker.api.v1 import admin_pb2_grpc as pb_grpc
from leasebroker.broker import LeaseBroker
from leasebroker.convert import duration_ns, timestamp_ns
from leasebroker.errors import BrokerError, FieldViolation, Reason
from leasebroker.feed import InventorySlot, parse_feed
from leasebroker.keys import SlotId
from leasebroker.model import NS_PER_MS, Booking, LeaseView, SlotStatus
from leasebroker.service import rpc
from leasebroker.validation import (
    check_duration,
    check_id,
    check_instant,
    check_start,
    raise_if_invalid,
)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["LeaseAdmin"].full_name
# The largest capacity SetSlotCapacity accepts.
MAX_CAPACITY = 2**31 - 1

_LEASE_STATES = {
    "held": pb.HELD,
    "expired": pb.EXPIRED,
    "released": pb.RELEASED,
    "consumed": pb.CONSUMED,
}
_BOOKING_STATES = {"confirmed": pb.CONFIRMED, "cancelled": pb.CANCELLED}
_CAPACITY_SOURCES = {"inventory": pb.INVENTORY, "default": pb.DEFAULT, "unlisted": pb.UNLISTED}


# --- Requests to core data: each helper appends what is wrong to ``violations``.


def _check(problem: FieldViolation | None, violations: list[FieldViolation]) -> None:
    if problem is not None:
        violations.append(problem)


def _required(value: str, field: str, violations: list[FieldViolation]) -> str:
    """A lease or booking id only has to be present: a malformed one is simply not found."""
    if not value:
        violations.append(FieldViolation(field, "is required"))
    return value


def _id(value: str, field: str, violations: list[FieldViolation], *, required: bool) -> str:
    """A merchant, service, staff or room id, checked as the v0 service checks them."""
    _check(check_id(value, field, required=required), violations)
    return value


def record_id(value: str, field: str) -> str:
    """A lease or booking id on its own: INVALID_FIELD when missing."""
    violations: list[FieldViolation] = []
    _required(value, field, violations)
    raise_if_invalid(violations)
    return value


def merchant_id(value: str) -> str:
    """A request's ``merchant_id``: INVALID_FIELD when missing or malformed."""
    violations: list[FieldViolation] = []
    _id(value, "merchant_id", violations, required=True)
    raise_if_invalid(violations)
    return value


def _instant(ts: Timestamp, field: str, violations: list[FieldViolation]) -> int:
    """Nanoseconds since the epoch of a well-formed Timestamp in protobuf's range."""
    before = len(violations)
    value = timestamp_ns(ts, field, violations)
    if len(violations) == before:
        _check(check_instant(value, field), violations)
    return value


def slot_from_proto(slot: pb.Slot, field: str, violations: list[FieldViolation]) -> SlotId:
    """A complete slot: merchant, service, start time and duration are required."""
    start = duration = 0
    if slot.HasField("start_time"):
        before = len(violations)
        start = timestamp_ns(slot.start_time, f"{field}.start_time", violations)
        if len(violations) == before:
            _check(check_start(start, f"{field}.start_time"), violations)
    else:
        violations.append(FieldViolation(f"{field}.start_time", "is required"))
    if slot.HasField("duration"):
        before = len(violations)
        duration = duration_ns(slot.duration, f"{field}.duration", violations)
        if len(violations) == before:
            _check(check_duration(duration, f"{field}.duration"), violations)
    else:
        violations.append(FieldViolation(f"{field}.duration", "is required"))
    return SlotId(
        merchant_id=_id(slot.merchant_id, f"{field}.merchant_id", violations, required=True),
        service_id=_id(slot.service_id, f"{field}.service_id", violations, required=True),
        start_ns=start,
        duration_ns=duration,
        staff_id=_id(slot.staff_id, f"{field}.staff_id", violations, required=False),
        room_id=_id(slot.room_id, f"{field}.room_id", violations, required=False),
    )


def _request_slot(
    request: pb.GetSlotAvailabilityRequest | pb.SetSlotCapacityRequest,
    violations: list[FieldViolation],
) -> SlotId:
    if not request.HasField("slot"):
        violations.append(FieldViolation("slot", "is required"))
        return SlotId("", "", 0, 0)
    return slot_from_proto(request.slot, "slot", violations)


@dataclass(frozen=True)
class ListFilter:
    """What ListLeases and ListBookings select: a merchant, maybe one slot, a start range."""

    merchant_id: str
    slot: SlotId | None
    start_from_ns: int | None
    start_before_ns: int | None


def list_filter_from_proto(request: pb.ListLeasesRequest | pb.ListBookingsRequest) -> ListFilter:
    """The selection a list request asks for; INVALID_FIELD naming every bad field."""
    violations: list[FieldViolation] = []
    merchant = _id(request.merchant_id, "merchant_id", violations, required=True)
    slot = None
    if request.HasField("slot"):
        given = pb.Slot()
        given.CopyFrom(request.slot)
        if not given.merchant_id:
            given.merchant_id = merchant
        elif merchant and given.merchant_id != merchant:
            violations.append(FieldViolation("slot.merchant_id", "must be empty or merchant_id"))
        slot = slot_from_proto(given, "slot", violations)
    start_from = start_before = None
    if request.HasField("start_time_from"):
        start_from = _instant(request.start_time_from, "start_time_from", violations)
    if request.HasField("start_time_before"):
        start_before = _instant(request.start_time_before, "start_time_before", violations)
    both = start_from is not None and start_before is not None
    if both and not violations and start_before <= start_from:
        violations.append(FieldViolation("start_time_before", "must be after start_time_from"))
    raise_if_invalid(violations)
    return ListFilter(merchant, slot, start_from, start_before)


def extension_ms_from_proto(request: pb.ExtendLeaseRequest) -> int:
    """The extension in whole milliseconds (rounded up, so any positive one extends)."""
    violations: list[FieldViolation] = []
    _required(request.lease_id, "lease_id", violations)
    extension = 0
    if request.HasField("extension"):
        before = len(violations)
        extension = duration_ns(request.extension, "extension", violations)
        if extension <= 0 and len(violations) == before:
            violations.append(FieldViolation("extension", "must be positive"))
    else:
        violations.append(FieldViolation("extension", "is required"))
    raise_if_invalid(violations)
    return -(-extension // NS_PER_MS)


def feed_from_json(feed_json: bytes) -> dict[str, list[InventorySlot]]:
    """Each merchant's inventory in a JSON feed; INVALID_FIELD on ``feed_json`` if it is bad."""
    if not feed_json:
        raise_if_invalid([FieldViolation("feed_json", "is required")])
    try:
        return parse_feed(json.loads(feed_json))
    # FeedError, JSONDecodeError and UnicodeDecodeError are all ValueErrors, and any
    # ValueError while parsing means bad input; RecursionError: JSON nested too deeply.
    except (ValueError, RecursionError) as exc:
        description = f"is not a valid availability feed: {exc}"
        raise BrokerError(
            Reason.INVALID_FIELD,
            f"invalid request: feed_json {description}",
            (FieldViolation("feed_json", description),),
        ) from exc


# --- Core data to replies.


def slot_to_proto(slot: SlotId) -> pb.Slot:
    reply = pb.Slot(
        merchant_id=slot.merchant_id,
        service_id=slot.service_id,
        staff_id=slot.staff_id,
        room_id=slot.room_id,
    )
    reply.start_time.FromNanoseconds(slot.start_ns)
    reply.duration.FromNanoseconds(slot.duration_ns)
    return reply


def lease_to_proto(view: LeaseView) -> pb.LeaseInfo:
    reply = pb.LeaseInfo(
        lease_id=view.lease_id,
        slot=slot_to_proto(view.slot),
        client_reference=view.client_reference,
        availability_tag=view.availability_tag,
        state=_LEASE_STATES.get(view.state, pb.LEASE_STATE_UNSPECIFIED),
        fencing_token=view.fence,
        booking_id=view.booking_id or "",
    )
    reply.create_time.FromMilliseconds(view.created_ms)
    reply.expire_time.FromMilliseconds(view.expires_at_ms)
    if view.ended_ms is not None:
        reply.end_time.FromMilliseconds(view.ended_ms)
    return reply


def booking_to_proto(booking: Booking) -> pb.BookingInfo:
    reply = pb.BookingInfo(
        booking_id=booking.booking_id,
        lease_id=booking.lease_id,
        slot=slot_to_proto(booking.slot),
        state=_BOOKING_STATES.get(booking.status, pb.BOOKING_STATE_UNSPECIFIED),
        fencing_token=booking.fence,
        client_information=v0.ClientInformation.FromString(booking.client_information),
    )
    reply.create_time.FromMilliseconds(booking.created_ms)
    reply.update_time.FromMilliseconds(booking.updated_ms)
    return reply


def availability_to_proto(status: SlotStatus) -> pb.SlotAvailability:
    return pb.SlotAvailability(
        slot=slot_to_proto(status.slot),
        capacity=status.capacity,
        capacity_source=_CAPACITY_SOURCES.get(status.source, pb.CAPACITY_SOURCE_UNSPECIFIED),
        holds=status.holds,
        bookings=status.bookings,
        free=status.free,
    )


def _slot_capacity(item: InventorySlot) -> pb.SlotCapacity:
    return pb.SlotCapacity(slot=slot_to_proto(item.slot), capacity=item.capacity)


# --- The service.


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
        leases = self.broker.list_leases(
            where.merchant_id, where.slot, where.start_from_ns, where.start_before_ns
        )
        return pb.ListLeasesResponse(leases=[lease_to_proto(view) for view in leases])

    @rpc
    def ListBookings(
        self, request: pb.ListBookingsRequest, context: grpc.ServicerContext
    ) -> pb.ListBookingsResponse:
        where = list_filter_from_proto(request)
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
        violations: list[FieldViolation] = []
        slot = _request_slot(request, violations)
        raise_if_invalid(violations)
        return availability_to_proto(self.broker.slot_status(slot))

    @rpc
    def ListSlotAvailability(
        self, request: pb.ListSlotAvailabilityRequest, context: grpc.ServicerContext
    ) -> pb.ListSlotAvailabilityResponse:
        violations: list[FieldViolation] = []
        merchant = _id(request.merchant_id, "merchant_id", violations, required=True)
        day_start = 0
        if request.HasField("day_start"):
            day_start = _instant(request.day_start, "day_start", violations)
        else:
            violations.append(FieldViolation("day_start", "is required"))
        raise_if_invalid(violations)
        statuses = self.broker.day_status(merchant, day_start)
        return pb.ListSlotAvailabilityResponse(slots=[availability_to_proto(s) for s in statuses])

    @rpc
    def LoadInventory(
        self, request: pb.LoadInventoryRequest, context: grpc.ServicerContext
    ) -> pb.LoadInventoryResponse:
        inventories = feed_from_json(request.feed_json)
        withdrawn: list[str] = []
        if request.complete:
            total, withdrawn = self.broker.replace_all_inventories(inventories)
        else:
            total = sum(self.broker.replace_inventory(m, s) for m, s in inventories.items())
        return pb.LoadInventoryResponse(
            merchants=len(inventories), slots=total, withdrawn_merchants=withdrawn
        )

    @rpc
    def SetSlotCapacity(
        self, request: pb.SetSlotCapacityRequest, context: grpc.ServicerContext
    ) -> pb.SetSlotCapacityResponse:
        violations: list[FieldViolation] = []
        slot = _request_slot(request, violations)
        if not 0 <= request.capacity <= MAX_CAPACITY:
            violations.append(FieldViolation("capacity", f"must be 0 to {MAX_CAPACITY}"))
        raise_if_invalid(violations)
        previous = self.broker.set_capacity(slot, request.capacity)
        return pb.SetSlotCapacityResponse(previous_capacity=previous)

    @rpc
    def GetInventory(
        self, request: pb.GetInventoryRequest, context: grpc.ServicerContext
    ) -> pb.GetInventoryResponse:
        inventory = self.broker.get_inventory(merchant_id(request.merchant_id))
        return pb.GetInventoryResponse(slots=[_slot_capacity(item) for item in inventory])
