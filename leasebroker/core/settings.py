"""Broker settings: one dataclass, checked once, shared by the library, server and CLI."""

from __future__ import annotations

from dataclasses import dataclass

from leasebroker.core.keys import DEFAULT_PREFIX, KeyBuilder
from leasebroker.core.units import MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE
from leasebroker.core.validation import MAX_CAPACITY, is_int

# Ended lease records must outlive sweeper passes and client retries.
MIN_RETENTION_MS = MS_PER_MINUTE
# The longest hold or retention: ten years is far past any booking's horizon.
MAX_DURATION_MS = 3_660 * MS_PER_DAY
# Event streams keep at least this much history (a follower may lag a little).
MIN_EVENTS_RETENTION_MS = 1_000
# events_retention_ms of 0 turns the event streams off: no script appends an event.
# (A deployment that follows no stream saves the XADD's Redis CPU and the entry's
# memory on every change: docs/semantics.md, "Turning the stream off".)
EVENTS_OFF = 0


@dataclass(frozen=True)
class BrokerConfig:
    """How the broker decides. Every process sharing one Redis must use the same values.

    default_capacity: spots per slot for merchants with no loaded inventory
        (0: slots of such merchants are not offered).
    default_hold_ms: lease length when the request sets no lease_expiration_time.
    max_hold_ms: the longest lease granted; longer requests are shortened to it.
    key_prefix: first component of every Redis key.
    record_retention_ms: how long a lease record stays readable after the lease
        ended (for inspection, retries and the expiry sweeper).
    events_retention_ms: how long each merchant's event stream keeps an entry (trimmed
        by age, approximately, on every append); EVENTS_OFF (0): no events are written.
    """

    default_capacity: int = 1
    default_hold_ms: int = 10 * MS_PER_MINUTE
    max_hold_ms: int = 30 * MS_PER_MINUTE
    key_prefix: str = DEFAULT_PREFIX
    record_retention_ms: int = 24 * MS_PER_HOUR
    events_retention_ms: int = MS_PER_HOUR

    def __post_init__(self) -> None:
        # Every value goes into scripts as a number: whole numbers only, in range (or
        # the one value out of range that means off), so no script can fail half-way
        # on one (Redis does not roll scripts back).
        for name, low, high, off in (
            ("default_capacity", 0, MAX_CAPACITY, None),
            ("default_hold_ms", 1, MAX_DURATION_MS, None),
            ("max_hold_ms", 1, MAX_DURATION_MS, None),
            ("record_retention_ms", MIN_RETENTION_MS, MAX_DURATION_MS, None),
            ("events_retention_ms", MIN_EVENTS_RETENTION_MS, MAX_DURATION_MS, EVENTS_OFF),
        ):
            value = getattr(self, name)
            if not is_int(value):
                raise ValueError(f"{name} must be a whole number, not {value!r}")
            if not low <= value <= high and value != off:
                also = f" (or {off}: off)" if off is not None else ""
                raise ValueError(f"{name} must be from {low} to {high}{also}, not {value}")
        if self.max_hold_ms < self.default_hold_ms:
            raise ValueError("maximum hold must be at least the default hold")
        if not isinstance(self.key_prefix, str):
            raise ValueError("key prefix must be text")
        KeyBuilder(self.key_prefix)  # raises on a prefix that could break key structure

    @property
    def events_on(self) -> bool:
        """Whether the scripts append events to the merchants' streams."""
        return self.events_retention_ms != EVENTS_OFF
