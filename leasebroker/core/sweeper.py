"""The expiry sweeper: emits ``lease.expired`` soon after a lease's hold ends, and tidies indexes.

Correctness never depends on it (an expired hold stops counting at its expiry
on its own). Each lease is swept by an atomic script that only the first caller
finds due, so any number of ``serve`` processes can sweep at once and every
expiry is reported exactly once. Work per pass is bounded by ``batch`` leases
per merchant. Each pass is reported to the core's observer (:mod:`leasebroker.core.observe`).

A pass of ``serve``'s sweeper visits only the merchants the due index
(:mod:`leasebroker.core.due`) says are due: an idle broker costs two Redis calls a
second (TIME and the index), whatever its number of merchants. A full pass over every
registered merchant (``leasebroker sweep``, and ``serve`` once every FULL_PASS_S) also
re-seeds the index, catching anything a lost index write left behind.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from leasebroker.core.background import Periodic
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.observe import observer

DEFAULT_INTERVAL_S = 1.0
DEFAULT_BATCH = 200
# Merchants one due pass visits at most (the rest wait for the next pass).
DUE_MERCHANTS = 500
# How often serve's sweeper walks every registered merchant anyway (about three Redis
# calls per merchant: 10,000 merchants every 30 minutes average ~17 calls a second).
FULL_PASS_S = 1800.0


def sweep_once(broker: LeaseBroker, batch: int = DEFAULT_BATCH) -> int:
    """A full pass: every registered merchant, re-seeding the due index; returns how
    many leases it marked expired."""
    return _sweep(broker, [(merchant, None) for merchant in broker.merchants()], batch)


def sweep_due(broker: LeaseBroker, batch: int = DEFAULT_BATCH) -> int:
    """A pass over the merchants due now; returns how many leases it marked expired."""
    return _sweep(broker, broker.due_merchants(broker.now_ms(), DUE_MERCHANTS), batch)


def _sweep(broker: LeaseBroker, merchants: Sequence[tuple[str, int | None]], batch: int) -> int:
    """Sweep each merchant, then move its due-index entry: from the score it was found
    due at, or (None, a full pass) to wherever its lease index says."""
    swept = lateness_ms = 0
    try:
        for merchant, due_score in merchants:
            count, late_ms = broker.sweep_merchant(merchant, batch)
            swept += count
            lateness_ms = max(lateness_ms, late_ms)
            if due_score is None:
                broker.seed_due(merchant)
            else:
                broker.settle_due(merchant, due_score)
    except Exception:
        observer().sweep_failed()
        raise
    observer().sweep_pass(swept, lateness_ms / 1000)
    return swept


class SweeperThread(Periodic):
    """Sweeps the due merchants every ``interval_s`` seconds, and every merchant every
    ``full_pass_s`` (the first full pass at a random point of the first period, so
    processes started together do not walk every merchant at once), until stopped."""

    def __init__(
        self,
        broker: LeaseBroker,
        interval_s: float = DEFAULT_INTERVAL_S,
        full_pass_s: float = FULL_PASS_S,
    ) -> None:
        super().__init__("lease-sweeper", self._pass, interval_s)
        self.broker = broker
        self.full_pass_s = full_pass_s
        self._next_full = time.monotonic() + random.uniform(0.0, full_pass_s)

    def _pass(self) -> int:
        now = time.monotonic()
        if now >= self._next_full:
            self._next_full = now + self.full_pass_s
            return sweep_once(self.broker)
        return sweep_due(self.broker)
