"""Plain data the broker core takes and returns; no gRPC or Redis types here.

Times are integers: instants in nanoseconds since the Unix epoch (UTC) and
spans in nanoseconds, so nothing a protobuf Timestamp carries is rounded away.
Lease expiry is in milliseconds, the resolution Redis keeps it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from leasebroker.core.keys import SlotId
from leasebroker.core.units import NS_PER_MS


class _TextEnum(str, Enum):
    """A state stored as text in Redis; ``str()`` and f-strings give the stored text."""

    def __str__(self) -> str:
        return self.value


class LeaseState(_TextEnum):
    """Where a lease is in its life. The scripts read and write these texts (as
    ``LEASE_STATE.HELD`` and so on, replaced by the text when a script is loaded)."""

    HELD = "held"
    # Written by the sweeper; a held lease whose expiry has passed reads as expired too.
    EXPIRED = "expired"
    RELEASED = "released"
    CONSUMED = "consumed"


class BookingStatus(_TextEnum):
    """A booking's status (``BOOKING_STATUS`` in the scripts)."""

    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class CapacitySource(_TextEnum):
    """Where a slot's capacity comes from (``CAPACITY_SOURCE`` in the scripts)."""

    # The merchant's loaded inventory lists the slot.
    INVENTORY = "inventory"
    # The merchant has no inventory: the broker's default capacity applies.
    DEFAULT = "default"
    # The merchant has an inventory that does not list the slot: not offered.
    UNLISTED = "unlisted"


class InventoryState(_TextEnum):
    """What a merchant's inventory is."""

    # Nothing loaded: every slot gets the default capacity (none when that is 0).
    NONE = "none"
    # A loaded inventory: only its slots are offered.
    LOADED = "loaded"
    # An empty inventory (or left out of a complete feed): nothing is offered.
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True)
class InventorySlot:
    """One bookable slot of a merchant's inventory and how many spots it has."""

    slot: SlotId
    capacity: int


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

    ``state``: held (live), expired, released or consumed (it became booking
    ``booking_id``). Times are ms since the epoch on Redis's clock.
    """

    lease_id: str
    slot: SlotId
    client_reference: str
    availability_tag: str
    state: LeaseState
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
    """A booking, confirmed or cancelled."""

    booking_id: str
    lease_id: str
    slot: SlotId
    availability_tag: str
    status: BookingStatus
    fence: int
    created_ms: int
    updated_ms: int
    client_information: bytes
    payment_information: bytes | None
    replayed: bool = False


@dataclass(frozen=True)
class SlotStatus:
    """How full one slot is right now.

    ``source`` says where the capacity comes from (an ``unlisted`` slot is not
    offered: capacity 0).
    """

    slot: SlotId
    capacity: int
    source: CapacitySource
    holds: int
    bookings: int

    @property
    def free(self) -> int:
        return max(0, self.capacity - self.holds - self.bookings)
