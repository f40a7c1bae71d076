"""Between the admin API's ``leasebroker.v1`` messages and the broker core's plain data.

Shape checks only (a required message, a Timestamp's nanos, the order of a time
range); the core checks values once, in its operation. Violations are named by
their path in the v1 request message (``slot.start_time``): core names are mapped
with :data:`SLOT_FIELDS` / :data:`SELECTION_FIELDS`.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from leasebroker.api.v0 import booking_service_pb2 as v0
from leasebroker.api.v1 import admin_pb2 as pb
from leasebroker.core.errors import BrokerError, FieldViolation, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import (
    Booking,
    BookingStatus,
    CapacitySource,
    InventorySlot,
    InventoryState,
    LeaseState,
    LeaseView,
    SlotStatus,
)
from leasebroker.core.units import NS_PER_MS
from leasebroker.core.validation import (
    check_capacity,
    check_instant,
    merchant_violations,
    raise_if_invalid,
    selection_violations,
    slot_violations,
)
from leasebroker.wire.booking_convert import duration_ns, timestamp_ns
from leasebroker.wire.errors import FieldPaths
from leasebroker.wire.feed import Feed, FeedError, check_complete, decode_feed

# A request whose slot is ``slot`` (GetSlotAvailability, SetSlotCapacity).
SLOT_FIELDS = FieldPaths("slot", {"capacity": "capacity"})
# A list request: ``merchant_id`` and maybe a ``slot`` of it.
SELECTION_FIELDS = FieldPaths("slot", {"merchant_id": "merchant_id"})

_LEASE_STATES = {
    LeaseState.HELD: pb.HELD,
    LeaseState.EXPIRED: pb.EXPIRED,
    LeaseState.RELEASED: pb.RELEASED,
    LeaseState.CONSUMED: pb.CONSUMED,
}
_BOOKING_STATES = {BookingStatus.CONFIRMED: pb.CONFIRMED, BookingStatus.CANCELLED: pb.CANCELLED}
_INVENTORY_STATES = {
    InventoryState.NONE: pb.NO_INVENTORY,
    InventoryState.LOADED: pb.LOADED,
    InventoryState.WITHDRAWN: pb.WITHDRAWN,
}
_CAPACITY_SOURCES = {
    CapacitySource.INVENTORY: pb.INVENTORY,
    CapacitySource.DEFAULT: pb.DEFAULT,
    CapacitySource.UNLISTED: pb.UNLISTED,
}


# --- Requests to core data.


def record_id(value: str, field: str) -> str:
    """A lease or booking id: INVALID_FIELD when missing (a malformed one is not found)."""
    if not value:
        raise_if_invalid([FieldViolation(field, "is required")])
    return value


def _instant(ts: Timestamp, field: str, violations: list[FieldViolation]) -> int:
    """Nanoseconds since the epoch of a well-formed Timestamp in protobuf's range."""
    before = len(violations)
    value = timestamp_ns(ts, field, violations)
    if len(violations) == before:
        problem = check_instant(value, field)
        if problem is not None:
            violations.append(problem)
    return value


def slot_from_proto(slot: pb.Slot, field: str, violations: list[FieldViolation]) -> SlotId:
    """A slot; a missing or malformed start time or duration is a violation here."""
    start = duration = 0
    if slot.HasField("start_time"):
        start = timestamp_ns(slot.start_time, f"{field}.start_time", violations)
    else:
        violations.append(FieldViolation(f"{field}.start_time", "is required"))
    if slot.HasField("duration"):
        duration = duration_ns(slot.duration, f"{field}.duration", violations)
    else:
        violations.append(FieldViolation(f"{field}.duration", "is required"))
    return SlotId(
        merchant_id=slot.merchant_id,
        service_id=slot.service_id,
        start_ns=start,
        duration_ns=duration,
        staff_id=slot.staff_id,
        room_id=slot.room_id,
    )


def request_slot(
    request: pb.GetSlotAvailabilityRequest | pb.SetSlotCapacityRequest,
) -> SlotId:
    """The request's slot; INVALID_FIELD naming every bad field when its shape is wrong."""
    shape: list[FieldViolation] = []
    if not request.HasField("slot"):
        raise_if_invalid([FieldViolation("slot", "is required")])
    slot = slot_from_proto(request.slot, "slot", shape)
    checks = slot_violations(slot)
    if isinstance(request, pb.SetSlotCapacityRequest):
        checks += [p for p in [check_capacity(request.capacity)] if p is not None]
    SLOT_FIELDS.raise_all(shape, checks)
    return slot


@dataclass(frozen=True)
class ListFilter:
    """What ListLeases and ListBookings select: a merchant, maybe one slot, a start range."""

    merchant_id: str
    slot: SlotId | None
    start_from_ns: int | None
    start_before_ns: int | None


def list_filter_from_proto(request: pb.ListLeasesRequest | pb.ListBookingsRequest) -> ListFilter:
    """The selection a list request asks for; INVALID_FIELD naming every bad field."""
    shape: list[FieldViolation] = []
    merchant = request.merchant_id
    slot = None
    if request.HasField("slot"):
        given = pb.Slot()
        given.CopyFrom(request.slot)
        if not given.merchant_id:
            given.merchant_id = merchant
        elif merchant and given.merchant_id != merchant:
            shape.append(FieldViolation("slot.merchant_id", "must be empty or merchant_id"))
        slot = slot_from_proto(given, "slot", shape)
    start_from = start_before = None
    if request.HasField("start_time_from"):
        start_from = _instant(request.start_time_from, "start_time_from", shape)
    if request.HasField("start_time_before"):
        start_before = _instant(request.start_time_before, "start_time_before", shape)
    both = start_from is not None and start_before is not None
    if both and not shape and start_before <= start_from:
        shape.append(FieldViolation("start_time_before", "must be after start_time_from"))
    if shape:  # the core checks the values once, in the list operation, when the shape is right
        SELECTION_FIELDS.raise_all(shape, selection_violations(merchant, slot))
    return ListFilter(merchant, slot, start_from, start_before)


def day_from_proto(request: pb.ListSlotAvailabilityRequest) -> int:
    """The day ListSlotAvailability asks for, as nanoseconds since the epoch."""
    shape: list[FieldViolation] = []
    day_start = 0
    if request.HasField("day_start"):
        day_start = _instant(request.day_start, "day_start", shape)
    else:
        shape.append(FieldViolation("day_start", "is required"))
    SELECTION_FIELDS.raise_all(shape, merchant_violations(request.merchant_id))
    return day_start


def extension_ms_from_proto(request: pb.ExtendLeaseRequest) -> int:
    """The extension in whole milliseconds (rounded up, so any positive one extends)."""
    violations: list[FieldViolation] = []
    if not request.lease_id:
        violations.append(FieldViolation("lease_id", "is required"))
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


def feed_from_json(feed_json: bytes, *, complete: bool = False) -> Feed:
    """Each merchant's inventory in a JSON feed; INVALID_FIELD on ``feed_json`` if it is
    bad, or (``complete``) only one shard of a sharded feed."""
    if not feed_json:
        raise_if_invalid([FieldViolation("feed_json", "is required")])
    try:
        feed = decode_feed(feed_json, "feed_json")
        if complete:
            check_complete(feed, "feed_json")
        return feed
    except FeedError as exc:
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


def inventory_state_to_proto(state: InventoryState) -> pb.InventoryState.ValueType:
    return _INVENTORY_STATES[state]


def slot_capacity_to_proto(item: InventorySlot) -> pb.SlotCapacity:
    return pb.SlotCapacity(slot=slot_to_proto(item.slot), capacity=item.capacity)
