"""The expiry sweeper: emits ``lease.expired`` soon after a lease's hold ends, and tidies indexes.

Correctness never depends on it (an expired hold stops counting at its expiry
on its own). Each lease is swept by an atomic script that only the first caller
finds due, so any number of ``serve`` processes can sweep at once and every
expiry is reported exactly once. Work per pass is bounded by ``batch`` leases
per merchant.
"""

from __future__ import annotations

import logging
import threading

from leasebroker.broker import LeaseBroker
from leasebroker.errors import BrokerError

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1.0
DEFAULT_BATCH = 200


def sweep_once(broker: LeaseBroker, batch: int = DEFAULT_BATCH) -> int:
    """One pass over every registered merchant; returns how many leases it marked expired."""
    return sum(broker.sweep_expired(merchant, batch) for merchant in broker.merchants())


class SweeperThread(threading.Thread):
    """Runs :func:`sweep_once` every ``interval_s`` seconds until stopped."""

    def __init__(self, broker: LeaseBroker, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        super().__init__(name="lease-sweeper", daemon=True)
        self.broker = broker
        self.interval_s = interval_s
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval_s):
            try:
                swept = sweep_once(self.broker)
            except BrokerError as error:
                log.warning("sweep failed: %s", error)
            except Exception:
                log.exception("sweep failed")
            else:
                if swept:
                    log.debug("swept %d expired leases", swept)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)
