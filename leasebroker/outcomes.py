"""Outcome codes that the Lua scripts reply with: the one list shared by Python and Lua.

Every script replies ``{code, ...data}`` with ``code`` from :class:`Outcome`.
The scripts never spell a number: :mod:`leasebroker.scripts` puts this enum in
front of each script as a Lua table ``OUTCOME`` (``OUTCOME.SLOT_FULL``), so the
two languages cannot drift apart. Mapping an outcome to a gRPC status happens in
one place, :mod:`leasebroker.grpc_errors`.
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


def lua_table() -> str:
    """The enum as a Lua table constructor, e.g. ``{OK=0,REPLAYED=1}``."""
    return "{" + ",".join(f"{o.name}={o.value}" for o in Outcome) + "}"
