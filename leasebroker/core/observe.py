"""What the core reports as it works, for whoever watches it: plain hooks, no metrics library.

The core calls the current :class:`Observer`'s methods; this one does nothing, so a
library user pays nothing and needs nothing. ``leasebroker serve`` installs one that
feeds Prometheus (:mod:`leasebroker.wire.metrics`) with :func:`set_observer`. A hook
gets no merchant, client or lease id, only kinds and numbers, and must not raise.
"""

from __future__ import annotations


class Observer:
    """The hooks; subclass and override the ones you want."""

    def redis_error(self, reason: str, error: BaseException) -> None:
        """A Redis call failed; ``reason`` is what the caller gets (STORE_UNAVAILABLE,
        DEADLINE_EXCEEDED or INTERNAL), ``error`` what redis-py raised."""

    def pool_wait(self, seconds: float) -> None:
        """A caller waited ``seconds`` for a free pooled Redis connection."""

    def sweep_pass(self, swept: int, lateness_s: float) -> None:
        """A sweeper pass marked ``swept`` leases expired; when it started, the oldest
        expiry not yet swept was ``lateness_s`` seconds in the past (0: none was due)."""

    def sweep_failed(self) -> None:
        """A sweeper pass failed (the store did not answer, most likely)."""


_current = Observer()


def observer() -> Observer:
    """The installed observer (a do-nothing one unless :func:`set_observer` was called)."""
    return _current


def set_observer(new: Observer | None) -> None:
    """Install ``new`` for the whole process (None: back to doing nothing)."""
    global _current
    _current = new if new is not None else Observer()
