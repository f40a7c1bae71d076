"""Outcome codes that the Lua scripts reply with: the one list shared by Python and Lua.

Every script replies ``{code, ...data}`` with ``code`` from :class:`Outcome`.
The scripts never spell a number: they write ``OUTCOME.SLOT_FULL``, and
:mod:`leasebroker.core.scripts` puts this enum's value in its place when it loads
them, so the two languages cannot drift apart. Mapping an outcome to a gRPC status happens in
one place, :mod:`leasebroker.wire.errors`.
"""

from __future__ import annotations

from enum import IntEnum


class Outcome(IntEnum):
    """What a script decided. Values are part of the script contract; never reuse one."""

    OK = 0
    # CreateLease: the same client_reference and request already hold a live lease.
    REPLAYED = 1
    # CreateLease: the client_reference holds a live lease for a different request.
    CLIENT_REFERENCE_IN_USE = 2
    # The slot is offered but every spot is held or booked.
    SLOT_FULL = 3
    # The slot is not in the merchant's inventory (or unknown slots get capacity 0).
    SLOT_NOT_OFFERED = 4
    # The slot's start_time is not after Redis's clock.
    START_TIME_PASSED = 5
    # The requested lease_expiration_time is not after Redis's clock.
    EXPIRY_NOT_IN_FUTURE = 6
    # No lease record under that id (never existed, or its retention passed).
    LEASE_NOT_FOUND = 7
    # The lease's hold has ended (its expiry is not after now).
    LEASE_EXPIRED = 8
    # The lease was released early.
    LEASE_RELEASED = 9
    # The lease already became a booking (data: that booking's id).
    LEASE_CONSUMED = 10
    # CreateBooking retried for a lease it already consumed, same client: that booking.
    BOOKING_REPLAYED = 11
    # The caller's fencing token is not the lease's.
    FENCE_MISMATCH = 12
    # No booking record under that id.
    BOOKING_NOT_FOUND = 13
    # The booking is cancelled, so it cannot change any more.
    BOOKING_CANCELLED = 14
    # The booking's slot has started: too late to cancel or reschedule.
    SLOT_STARTED = 15
    # The record's slot is not the one the caller read (it moved meanwhile): read again.
    SLOT_MOVED = 16
    # Nothing to do; the record was already in the asked-for state (data: as for OK).
    UNCHANGED = 17
    # The sweeper found the lease still live (or already swept).
    NOT_DUE = 18
    # An ARGV value is malformed (data: its index); the script wrote nothing. The
    # library checks every value first, so this means a bug, reported as INTERNAL.
    BAD_ARGUMENT = 19
    # The caller's deadline (on Redis's clock) has passed: its client has given up, so
    # the script wrote nothing.
    DEADLINE_PASSED = 20
    # CreateLease: the merchant has no inventory and there is no default capacity.
    UNKNOWN_MERCHANT = 21
    # CreateLease: the merchant's inventory lists no slot of this service.
    UNKNOWN_SERVICE = 22
    # A feed older (by generation_timestamp) than one already loaded (data: that one's).
    FEED_OUTDATED = 23


def lua_literal(value: object) -> str:
    """An enum value as a Lua literal: ``0``, or ``'held'`` for a text (which never holds
    a quote or a backslash)."""
    if isinstance(value, str):
        if "'" in value or "\\" in value:
            raise ValueError(f"an enum text for Lua holds a quote or a backslash: {value!r}")
        return f"'{value}'"
    return str(int(value))  # type: ignore[call-overload]
