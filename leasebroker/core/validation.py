"""Checks on request values that need no clock and no store.

Whether a start or expiry time lies in the past is decided inside the Lua
scripts, on Redis's clock; a front end's clock never decides anything.
Violations name the request's fields in the core's own terms (``merchant_id``,
``staff_id``, ``start_time``, ``requested_expiry``); a front end maps them to the
paths of its own messages (the gRPC wire: ``lease.resources.staff_id``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from leasebroker.core.errors import BrokerError, FieldViolation, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest
from leasebroker.core.units import NS_PER_S, S_PER_DAY

MAX_ID_BYTES = 256
# Unicode categories Cc (control) and Cs (lone surrogates), exactly: one regex search
# instead of a per-character category lookup (tests/test_keys.py checks every code point).
_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# The largest capacity of one slot (an int32, as the admin API carries it).
MAX_CAPACITY = 2**31 - 1
# The range protobuf's Timestamp allows: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999999999Z.
MIN_INSTANT_NS = -62_135_596_800 * NS_PER_S
MAX_INSTANT_NS = 253_402_300_800 * NS_PER_S - 1
# Slot starts are stored as int64 nanoseconds since 1970: 1970-01-01 to 2262-04-11.
MIN_SLOT_START_NS = 0
MAX_SLOT_START_NS = 2**63 - 1
# No bookable slot lasts longer than this; anything longer is a client bug.
MAX_SLOT_DURATION_NS = 31 * S_PER_DAY * NS_PER_S


# The largest whole number a script takes as a number (Lua keeps it exactly below 2**53;
# the scripts accept at most 15 digits).
MAX_SCRIPT_INT = 10**15 - 1


def is_int(value: object) -> bool:
    """A whole number, and not a bool (``True`` is an int to Python, never to us)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(value: object, field: str, low: int, high: int) -> FieldViolation | None:
    """A whole number from ``low`` to ``high``: what every number a script gets must be."""
    if not is_int(value):
        return FieldViolation(field, "must be a whole number")
    assert isinstance(value, int)
    if low <= value <= high:
        return None
    return FieldViolation(field, f"must be from {low} to {high}")


def check_fence(value: int | None, field: str = "expected_fence") -> FieldViolation | None:
    """An expected fencing token: None (no check) or a token a slot could have handed out."""
    return None if value is None else check_int(value, field, 0, MAX_SCRIPT_INT)


def check_id(value: str, field: str, *, required: bool) -> FieldViolation | None:
    """An id must be non-empty (when required), at most 256 UTF-8 bytes, free of control codes."""
    if not isinstance(value, str):
        return FieldViolation(field, "must be text")
    if not value:
        return FieldViolation(field, "is required") if required else None
    if len(value.encode("utf-8", "surrogatepass")) > MAX_ID_BYTES:
        return FieldViolation(field, f"is longer than {MAX_ID_BYTES} bytes")
    if _CONTROL_RE.search(value):
        return FieldViolation(field, "contains control characters")
    return None


def check_instant(epoch_ns: int, field: str) -> FieldViolation | None:
    """An instant must lie in protobuf Timestamp's range."""
    if not is_int(epoch_ns):
        return FieldViolation(field, "must be whole nanoseconds")
    if MIN_INSTANT_NS <= epoch_ns <= MAX_INSTANT_NS:
        return None
    return FieldViolation(field, "is outside the valid timestamp range")


def check_start(epoch_ns: int, field: str) -> FieldViolation | None:
    """A slot start must lie between 1970 and 2262 (int64 nanoseconds)."""
    if not is_int(epoch_ns):
        return FieldViolation(field, "must be whole nanoseconds")
    if MIN_SLOT_START_NS <= epoch_ns <= MAX_SLOT_START_NS:
        return None
    return FieldViolation(field, "must be between 1970-01-01 and 2262-04-11")


def check_duration(duration_ns: int, field: str) -> FieldViolation | None:
    """A slot lasts more than nothing and at most 31 days."""
    if not is_int(duration_ns):
        return FieldViolation(field, "must be whole nanoseconds")
    if duration_ns <= 0:
        return FieldViolation(field, "must be positive")
    if duration_ns > MAX_SLOT_DURATION_NS:
        return FieldViolation(field, "is longer than 31 days")
    return None


def check_capacity(capacity: int, field: str = "capacity") -> FieldViolation | None:
    """A capacity is a whole number from 0 to :data:`MAX_CAPACITY`."""
    if not is_int(capacity):
        return FieldViolation(field, "must be a whole number")
    if 0 <= capacity <= MAX_CAPACITY:
        return None
    return FieldViolation(field, f"must be 0 to {MAX_CAPACITY}")


def merchant_violations(merchant_id: str) -> list[FieldViolation]:
    """What is wrong with a merchant id given on its own."""
    problem = check_id(merchant_id, "merchant_id", required=True)
    return [] if problem is None else [problem]


def slot_violations(slot: SlotId) -> list[FieldViolation]:
    """Everything wrong with a slot."""
    checks = [
        check_id(slot.merchant_id, "merchant_id", required=True),
        check_id(slot.service_id, "service_id", required=True),
        check_id(slot.staff_id, "staff_id", required=False),
        check_id(slot.room_id, "room_id", required=False),
        check_start(slot.start_ns, "start_time"),
        check_duration(slot.duration_ns, "duration"),
    ]
    return [v for v in checks if v is not None]


def selection_violations(
    merchant_id: str,
    slot: SlotId | None = None,
    start_from_ns: int | None = None,
    start_before_ns: int | None = None,
) -> list[FieldViolation]:
    """Everything wrong with what a read names: a merchant, maybe one of its slots, and
    a range of slot starts."""
    problems = merchant_violations(merchant_id)
    if slot is not None:
        problems += [v for v in slot_violations(slot) if v.field != "merchant_id"]
    for bound, name in ((start_from_ns, "start_time_from"), (start_before_ns, "start_time_before")):
        problem = None if bound is None else check_instant(bound, name)
        if problem is not None:
            problems.append(problem)
    return problems


def lease_request_violations(request: LeaseRequest) -> list[FieldViolation]:
    """Everything wrong with a CreateLease request that can be told without a clock."""
    checks = [
        *slot_violations(request.slot),
        check_id(request.client_reference, "client_reference", required=True),
        check_id(request.availability_tag, "availability_tag", required=False),
    ]
    if request.requested_expiry_ns is not None:
        checks.append(check_instant(request.requested_expiry_ns, "requested_expiry"))
    return [v for v in checks if v is not None]


def raise_if_invalid(checks: Iterable[FieldViolation | None]) -> None:
    """One INVALID_FIELD error naming every bad field (Nones are passed checks), or nothing."""
    violations = [v for v in checks if v is not None]
    if violations:
        names = ", ".join(v.field for v in violations)
        raise BrokerError(Reason.INVALID_FIELD, f"invalid request: {names}", tuple(violations))
