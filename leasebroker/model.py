"""Plain data the broker core takes and returns; no gRPC or Redis types here.

Times are integers: instants in nanoseconds since the Unix epoch (UTC) and
spans in nanoseconds, so nothing a protobuf Timestamp carries is rounded away.
Lease expiry is in milliseconds, the resolution Redis keeps it in.
"""

from __future__ import annotations

from dataclasses import dataclass

from leasebroker.keys import SlotId

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class LeaseRequest:
    """A CreateLease request: the slot, who asks, and optionally when the hold should end."""

    slot: SlotId
    client_reference: str
    availability_tag: str = ""
    requested_expiry_ns: int | None = None


@dataclass(frozen=True)
class Lease:
    """A granted lease.

    ``fence`` is the slot's fencing token for this lease: it only grows from one
    lease of a slot to the next. ``replayed`` is True when an identical earlier
    request's lease came back.
    """

    lease_id: str
    slot: SlotId
    client_reference: str
    availability_tag: str
    expires_at_ms: int
    fence: int
    replayed: bool = False

    @property
    def expires_at_ns(self) -> int:
        return self.expires_at_ms * NS_PER_MS


@dataclass(frozen=True)
class LeaseView:
    """A lease as stored, for inspection.

    ``state`` is ``held`` (live), ``expired``, ``released`` or ``consumed``
    (it became booking ``booking_id``). Times are ms since the epoch on Redis's clock.
    """

    lease_id: str
    slot: SlotId
    client_reference: str
    availability_tag: str
    state: str
    fence: int
    created_ms: int
    expires_at_ms: int
    ended_ms: int | None
    booking_id: str | None


@dataclass(frozen=True)
class BookingRequest:
    """A CreateBooking request.

    ``client_information`` and ``payment_information`` are the serialized v0
    messages (None: not given); the broker stores them byte for byte and
    processes no payments.
    ``expected_fence``, when set, must be the lease's fencing token.
    """

    lease_id: str
    client_information: bytes | None
    payment_information: bytes | None = None
    expected_fence: int | None = None


@dataclass(frozen=True)
class Booking:
    """A booking: ``status`` is ``confirmed`` or ``cancelled``."""

    booking_id: str
    lease_id: str
    slot: SlotId
    availability_tag: str
    status: str
    fence: int
    created_ms: int
    updated_ms: int
    client_information: bytes
    payment_information: bytes | None
    replayed: bool = False


@dataclass(frozen=True)
class SlotStatus:
    """How full one slot is right now.

    ``source`` says where the capacity comes from: ``inventory``, ``default``
    (merchant without inventory) or ``unlisted`` (not in the merchant's inventory:
    not offered, capacity 0).
    """

    slot: SlotId
    capacity: int
    source: str
    holds: int
    bookings: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.holds - self.bookings)
