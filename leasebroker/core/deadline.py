"""A caller's deadline, and how it bounds the work done for it.

A front end runs each call inside :func:`call_deadline` with the time its client
still waits. Two things follow:

- Every Redis read and write of that call gives up when the deadline passes (the
  store's connections take their timeout from :func:`remaining_s`), so a Redis that
  hangs costs a call its deadline, not socket timeout x retries.
- The mutating scripts are told the deadline on Redis's own clock
  (:meth:`RedisClock.deadline_ms`) and refuse, writing nothing, once Redis's ``TIME``
  is past it. A request that sat in a stalled Redis's socket buffer while its client
  gave up therefore never takes a spot after the stall.

Redis's clock stays the only clock that decides: the front end's monotonic clock only
carries "how long the client still waits" over to Redis's clock, through an offset
measured on each ``TIME`` read (see :class:`RedisClock`). With no recent reading the
scripts get no deadline and run as before.
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "leasebroker_deadline", default=None
)

# A TIME reading whose round trip took longer than this does not move the offset.
MAX_SAMPLE_RTT_S = 0.1
# An offset older than this is not trusted (Redis's clock may have been stepped).
MAX_OFFSET_AGE_S = 30.0
# A longer "deadline" means none (gRPC reports a call without one as ~292 million years).
MAX_DEADLINE_S = 86_400.0


@contextmanager
def call_deadline(remaining: float | None) -> Iterator[None]:
    """Run the block under a deadline ``remaining`` seconds from now (None: none).
    An enclosing, earlier deadline stays in force."""
    if remaining is None or remaining > MAX_DEADLINE_S:
        yield
        return
    deadline = time.monotonic() + remaining
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def remaining_s() -> float | None:
    """Seconds left before the current call's deadline (negative once past), or None."""
    deadline = _deadline.get()
    return None if deadline is None else deadline - time.monotonic()


def expired() -> bool:
    """Whether the current call's deadline has passed."""
    left = remaining_s()
    return left is not None and left <= 0


class RedisClock:
    """The offset between this process's monotonic clock and Redis's ``TIME``.

    Each TIME reading with a short round trip updates it, taking the middle of the
    round trip as the moment Redis read its clock (error at most half the round trip).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset_ms: float | None = None
        self._measured_at = 0.0

    def record(self, sent: float, received: float, redis_ms: int) -> None:
        """A TIME reading ``redis_ms`` asked at monotonic ``sent``, answered at ``received``."""
        if received - sent > MAX_SAMPLE_RTT_S:
            return
        with self._lock:
            self._offset_ms = redis_ms - (sent + received) / 2 * 1000
            self._measured_at = received

    def deadline_ms(self) -> int | None:
        """The current call's deadline on Redis's clock, or None (no deadline, or no
        recent reading of Redis's clock)."""
        deadline = _deadline.get()
        if deadline is None:
            return None
        with self._lock:
            offset, measured_at = self._offset_ms, self._measured_at
        if offset is None or time.monotonic() - measured_at > MAX_OFFSET_AGE_S:
            return None
        return int(deadline * 1000 + offset)
