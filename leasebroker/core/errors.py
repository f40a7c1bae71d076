"""The broker's errors: a stable machine-readable reason, a message, and bad fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class Reason(str, Enum):
    """Stable reasons, sent to clients as ``google.rpc.ErrorInfo.reason``."""

    INVALID_FIELD = "INVALID_FIELD"
    START_TIME_PASSED = "START_TIME_PASSED"
    EXPIRY_NOT_IN_FUTURE = "EXPIRY_NOT_IN_FUTURE"
    CLIENT_REFERENCE_IN_USE = "CLIENT_REFERENCE_IN_USE"
    SLOT_FULL = "SLOT_FULL"
    SLOT_NOT_OFFERED = "SLOT_NOT_OFFERED"
    # The broker has never heard of this merchant (no inventory, no default capacity).
    UNKNOWN_MERCHANT = "UNKNOWN_MERCHANT"
    # The merchant's inventory has no slot of this service.
    UNKNOWN_SERVICE = "UNKNOWN_SERVICE"
    # A feed older than one already loaded: loading it would bring old inventory back.
    FEED_OUTDATED = "FEED_OUTDATED"
    LEASE_NOT_FOUND = "LEASE_NOT_FOUND"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    LEASE_RELEASED = "LEASE_RELEASED"
    # CreateBooking: the lease was already booked by a different client.
    LEASE_ALREADY_BOOKED = "LEASE_ALREADY_BOOKED"
    # Release/extend: the lease became a booking, so it cannot change any more.
    LEASE_CONSUMED = "LEASE_CONSUMED"
    FENCING_TOKEN_STALE = "FENCING_TOKEN_STALE"
    BOOKING_NOT_FOUND = "BOOKING_NOT_FOUND"
    BOOKING_CANCELLED = "BOOKING_CANCELLED"
    # Cancel/reschedule after the booked slot started.
    SLOT_STARTED = "SLOT_STARTED"
    # The record changed concurrently too often to apply the request; retry.
    CONFLICT = "CONFLICT"
    STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
    # The caller's deadline passed before the work could be done: nothing was done.
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    # The request's bytes are not a valid message of its type (front ends only).
    MALFORMED_REQUEST = "MALFORMED_REQUEST"
    INTERNAL = "INTERNAL"


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field, named by its path in the v0 message (``lease.merchant_id``)."""

    field: str
    description: str


@dataclass
class BrokerError(Exception):
    """Raised by every broker operation that did not succeed.

    For a refusal nothing was written. For STORE_UNAVAILABLE the outcome is
    unknown (a script may have run before the connection broke); every
    operation is idempotent, so retrying is safe.
    """

    reason: Reason
    message: str
    violations: tuple[FieldViolation, ...] = field(default=())
    metadata: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.reason.value}: {self.message}"
