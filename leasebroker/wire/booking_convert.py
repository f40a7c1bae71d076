"""Between v0 protobuf messages and the broker core's plain data.

Shape checks that only the wire can fail (a missing message, nanos out of
range) happen here; value checks live in :mod:`leasebroker.core.validation` and run
once, in the core operation. Only when a shape check fails does the conversion ask
the core's checks too, so one error names every bad field.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.errors import FieldViolation
from leasebroker.core.keys import SlotId
from leasebroker.core.model import Booking, BookingRequest, BookingStatus, Lease, LeaseRequest
from leasebroker.core.units import NS_PER_MS, NS_PER_S
from leasebroker.core.validation import lease_request_violations, raise_if_invalid
from leasebroker.wire.errors import FieldPaths

# Where CreateLease's fields sit in the v0 request (the core's names -> v0 paths).
LEASE_FIELDS = FieldPaths(
    "lease",
    {
        "staff_id": "lease.resources.staff_id",
        "room_id": "lease.resources.room_id",
        "requested_expiry": "lease.lease_expiration_time",
    },
)
# The core's own names, unchanged (a conversion run inside LEASE_FIELDS).
CORE_FIELDS = FieldPaths("")
# UpdateBooking's: the booking's own fields.
BOOKING_FIELDS = FieldPaths("booking")

# Duration's own limit: +-10,000 years.
_MAX_DURATION_S = 315_576_000_000


def timestamp_ns(ts: Timestamp, field: str, violations: list[FieldViolation]) -> int:
    """Nanoseconds since the epoch; a violation when nanos is outside [0, 1e9)."""
    if not 0 <= ts.nanos < NS_PER_S:
        violations.append(FieldViolation(field, "nanos must be in [0, 999999999]"))
        return 0
    return ts.seconds * NS_PER_S + ts.nanos


def duration_ns(d: Duration, field: str, violations: list[FieldViolation]) -> int:
    """Nanoseconds; a violation for out-of-range nanos or seconds and nanos of opposite signs."""
    mixed_signs = (d.seconds > 0 and d.nanos < 0) or (d.seconds < 0 and d.nanos > 0)
    if abs(d.nanos) >= NS_PER_S or abs(d.seconds) > _MAX_DURATION_S or mixed_signs:
        violations.append(FieldViolation(field, "is not a valid Duration"))
        return 0
    return d.seconds * NS_PER_S + d.nanos


def lease_request_from_proto(lease: pb.Lease) -> LeaseRequest:
    """The CreateLease request as core data; raises BrokerError(INVALID_FIELD) on a bad
    shape, naming fields as the core does (call it inside ``LEASE_FIELDS``).

    ``lease_id`` is ignored, as the API says for creation.
    """
    violations: list[FieldViolation] = []
    start = duration = 0
    if lease.HasField("start_time"):
        start = timestamp_ns(lease.start_time, "start_time", violations)
    else:
        violations.append(FieldViolation("start_time", "is required"))
    if lease.HasField("duration"):
        duration = duration_ns(lease.duration, "duration", violations)
    else:
        violations.append(FieldViolation("duration", "is required"))
    expiry = None
    if lease.HasField("lease_expiration_time"):
        expiry = timestamp_ns(lease.lease_expiration_time, "requested_expiry", violations)
    request = LeaseRequest(
        slot=SlotId(
            merchant_id=lease.merchant_id,
            service_id=lease.service_id,
            start_ns=start,
            duration_ns=duration,
            staff_id=lease.resources.staff_id,
            room_id=lease.resources.room_id,
        ),
        client_reference=lease.client_reference,
        availability_tag=lease.availability_tag,
        requested_expiry_ns=expiry,
    )
    if (
        violations
    ):  # shape and value problems together, in the core's names (LEASE_FIELDS maps them)
        CORE_FIELDS.raise_all(violations, lease_request_violations(request))
    return request


def lease_to_proto(request: pb.Lease, lease: Lease, reply: pb.Lease | None = None) -> pb.Lease:
    """The response Lease: the request echoed field for field, with lease_id and expiry set;
    written into ``reply`` when given (a response's field: no copy of a copy)."""
    reply = pb.Lease() if reply is None else reply
    reply.CopyFrom(request)
    reply.lease_id = lease.lease_id
    expires_ns = lease.expires_at_ms * NS_PER_MS
    reply.lease_expiration_time.seconds, reply.lease_expiration_time.nanos = divmod(
        expires_ns, NS_PER_S
    )
    return reply


_STATUS_TO_PROTO = {BookingStatus.CONFIRMED: pb.CONFIRMED, BookingStatus.CANCELLED: pb.CANCELED}
# The longest text of one ClientInformation field: generous for any name or address.
MAX_CLIENT_TEXT_BYTES = 4096
_CLIENT_TEXT_FIELDS = ("given_name", "family_name", "telephone", "email")
_ADDRESS_FIELDS = (
    "address_country", "address_locality", "address_region",
    "post_office_box_number", "postal_code", "street_address",
)  # fmt: skip


def _client_text(value: str, field: str, *, required: bool) -> FieldViolation | None:
    """What real people type passes: newlines, tabs, any script, emoji. The broker never
    puts it in a key, so only a missing required value or an oversized one is refused."""
    if not value:
        return FieldViolation(field, "is required") if required else None
    if len(value.encode("utf-8")) > MAX_CLIENT_TEXT_BYTES:
        return FieldViolation(field, f"is longer than {MAX_CLIENT_TEXT_BYTES} bytes")
    return None


def client_violations(client: pb.ClientInformation) -> list[FieldViolation]:
    """v0's ClientInformation must carry a telephone; every text is kept as given."""
    checks = [
        _client_text(
            getattr(client, name), f"client_information.{name}", required=name == "telephone"
        )
        for name in _CLIENT_TEXT_FIELDS
    ]
    if client.HasField("address"):  # none of its texts is required
        address = client.address
        checks += [
            _client_text(getattr(address, name), f"client_information.address.{name}",
                         required=False)
            for name in _ADDRESS_FIELDS
        ]  # fmt: skip
    return [v for v in checks if v is not None]


_RESCHEDULE_PATHS = frozenset({"start_time", "duration"})


def booking_request_from_proto(request: pb.CreateBookingRequest) -> BookingRequest:
    """The CreateBooking request as core data. payment_processing_parameters is not
    kept: the broker processes no payments."""
    client = None
    if request.HasField("client_information"):
        raise_if_invalid(client_violations(request.client_information))
        client = request.client_information.SerializeToString(deterministic=True)
    payment = None
    if request.HasField("payment_information"):
        payment = request.payment_information.SerializeToString()
    return BookingRequest(
        lease_id=request.lease_ref.lease_id,
        client_information=client,
        payment_information=payment,
    )


def booking_to_proto(booking: Booking, reply: pb.Booking | None = None) -> pb.Booking:
    """A stored booking as a v0 Booking (CANCELED is 4 on the v0 wire); written into
    ``reply`` when given (a response's field: no copy of a copy)."""
    reply = pb.Booking() if reply is None else reply
    reply.booking_id = booking.booking_id
    reply.merchant_id = booking.slot.merchant_id
    reply.service_id = booking.slot.service_id
    reply.status = _STATUS_TO_PROTO[booking.status]
    reply.start_time.seconds, reply.start_time.nanos = divmod(booking.slot.start_ns, NS_PER_S)
    reply.duration.seconds, reply.duration.nanos = divmod(booking.slot.duration_ns, NS_PER_S)
    reply.client_information.ParseFromString(booking.client_information)
    if booking.payment_information is not None:
        reply.payment_information.ParseFromString(booking.payment_information)
    return reply


@dataclass(frozen=True)
class BookingUpdate:
    """An UpdateBooking request: a cancel, or a reschedule (None keeps the current value)."""

    booking_id: str
    cancel: bool
    start_ns: int | None = None
    duration_ns: int | None = None


def booking_update_from_proto(request: pb.UpdateBookingRequest) -> BookingUpdate:
    """Check the update mask: ``status`` (to CANCELED) alone, or ``start_time`` and/or
    ``duration``; anything else is INVALID_FIELD with BadRequest details."""
    paths = set(request.update_mask.paths)
    booking = request.booking
    violations: list[FieldViolation] = []
    if not paths:
        violations.append(
            FieldViolation("update_mask", "is empty: set status, or start_time and duration")
        )
    unknown = sorted(paths - _RESCHEDULE_PATHS - {"status"})
    if unknown:
        violations.append(
            FieldViolation(
                "update_mask",
                f"cannot update {', '.join(unknown)}; only status, start_time and duration",
            )
        )
    if "status" in paths and paths & _RESCHEDULE_PATHS:
        violations.append(FieldViolation("update_mask", "cancel and reschedule separately"))
    if "status" in paths and booking.status != pb.CANCELED:
        violations.append(FieldViolation("booking.status", "can only be set to CANCELED"))
    start = duration = None
    if "start_time" in paths:
        if booking.HasField("start_time"):
            start = timestamp_ns(booking.start_time, "booking.start_time", violations)
        else:
            violations.append(FieldViolation("booking.start_time", "is in the mask but not set"))
    if "duration" in paths:
        if booking.HasField("duration"):
            duration = duration_ns(booking.duration, "booking.duration", violations)
        else:
            violations.append(FieldViolation("booking.duration", "is in the mask but not set"))
    raise_if_invalid(violations)
    return BookingUpdate(
        booking_id=booking.booking_id,
        cancel="status" in paths,
        start_ns=start,
        duration_ns=duration,
    )
