"""The expiry sweeper: emits ``lease.expired`` soon after a lease's hold ends, and tidies indexes.

Correctness never depends on it (an expired hold stops counting at its expiry
on its own). Each lease is swept by an atomic script that only the first caller
finds due, so any number of ``serve`` processes can sweep at once and every
expiry is reported exactly once. Work per pass is bounded by ``batch`` leases
per merchant. Each pass is reported to the core's observer (:mod:`leasebroker.core.observe`).
"""

from __future__ import annotations

from leasebroker.core.background import Periodic
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.observe import observer

DEFAULT_INTERVAL_S = 1.0
DEFAULT_BATCH = 200


def sweep_once(broker: LeaseBroker, batch: int = DEFAULT_BATCH) -> int:
    """One pass over every registered merchant; returns how many leases it marked expired."""
    swept = lateness_ms = 0
    try:
        for merchant in broker.merchants():
            count, late_ms = broker.sweep_merchant(merchant, batch)
            swept += count
            lateness_ms = max(lateness_ms, late_ms)
    except Exception:
        observer().sweep_failed()
        raise
    observer().sweep_pass(swept, lateness_ms / 1000)
    return swept


class SweeperThread(Periodic):
    """Runs :func:`sweep_once` every ``interval_s`` seconds until stopped."""

    def __init__(self, broker: LeaseBroker, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        super().__init__("lease-sweeper", lambda: sweep_once(broker), interval_s)
        self.broker = broker
