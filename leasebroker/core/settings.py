"""Broker settings: one dataclass, checked once, shared by the library, server and CLI."""

from __future__ import annotations

from dataclasses import dataclass

from leasebroker.core.keys import DEFAULT_PREFIX, KeyBuilder
from leasebroker.core.units import MS_PER_HOUR, MS_PER_MINUTE

# Ended lease records must outlive sweeper passes and client retries.
MIN_RETENTION_MS = MS_PER_MINUTE


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
    events_maxlen: approximate length each merchant's event stream is capped at.
    """

    default_capacity: int = 1
    default_hold_ms: int = 10 * MS_PER_MINUTE
    max_hold_ms: int = 30 * MS_PER_MINUTE
    key_prefix: str = DEFAULT_PREFIX
    record_retention_ms: int = 24 * MS_PER_HOUR
    events_maxlen: int = 10_000

    def __post_init__(self) -> None:
        if self.default_capacity < 0:
            raise ValueError("default capacity must be 0 or more")
        if self.default_hold_ms <= 0:
            raise ValueError("default hold must be positive")
        if self.max_hold_ms < self.default_hold_ms:
            raise ValueError("maximum hold must be at least the default hold")
        if self.record_retention_ms < MIN_RETENTION_MS:
            # Shorter, and the sweeper could miss an expiry and CreateBooking retries fail.
            raise ValueError("record retention must be at least 1m")
        if self.events_maxlen < 1:
            raise ValueError("the event stream needs a max length of at least 1")
        KeyBuilder(self.key_prefix)  # raises on a prefix that could break key structure
