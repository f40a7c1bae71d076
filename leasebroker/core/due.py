"""The sweeper's due index: which merchants have a lease to sweep, and from when.

``<prefix>:due`` is a ZSET of merchant id -> the earliest expiry (ms) among its unswept
leases. It is a hint, never the truth: the lease index of each merchant is. So the
sweeper's work follows the leases that expire, not the number of merchants: a pass
reads the merchants due now (one call when none is), sweeps them, and moves each
entry to the merchant's next expiry.

A script may write only its own merchant's hash tag (Redis Cluster), so the index is
kept outside the scripts: CreateLease lowers its merchant's entry after its script
(``ZADD LT``, at most once per few seconds per merchant and process while the entry is
at or below the new expiry), and the sweeper moves an entry with a compare-and-set
script. A write that is lost only delays a lease.expired event until the sweeper's
slow full pass, which re-seeds the index from every merchant's lease index.
"""

from __future__ import annotations

import logging
import time

from leasebroker.core.base import BrokerCore
from leasebroker.core.errors import BrokerError
from leasebroker.core.model import Lease
from leasebroker.core.steps import Bookkeeping, Steps

log = logging.getLogger(__name__)

# How long a process trusts its last write of a merchant's entry (see after_grant_steps).
MARK_REUSE_S = 5.0


class DueOps(BrokerCore):
    """Keeping the due index."""

    def after_grant_steps(self, lease: Lease) -> Steps[None]:
        """The sweeper's bookkeeping once ``lease`` is granted (core/steps.py): its
        merchant in the registry (at most once a minute per process) and, for a new
        lease, in the due index at its expiry (``ZADD LT``). Best effort: a failed write
        is logged and forgotten, so that the next lease tries again; it only delays
        lease.expired events, and never turns a granted lease into an error."""
        merchant = lease.slot.merchant_id
        failed = yield from self.registration_steps(merchant)
        if failed is not None:
            log.warning("could not register merchant for the expiry sweeper: %s", failed)
        if not lease.replayed and self.claim_mark(merchant, lease.expires_at_ms):
            due = ("ZADD", self.keys.due(), "LT", lease.expires_at_ms, merchant)
            marked = yield Bookkeeping(due)
            if isinstance(marked, BrokerError):
                self.forget_mark(merchant)
                log.warning("could not mark a merchant due for the sweeper: %s", marked)

    def claim_mark(self, merchant_id: str, expires_ms: int) -> bool:
        """Whether the index entry must be written now (``ZADD LT`` of ``expires_ms``);
        if so, it counts as written until :meth:`forget_mark` (the write failed)."""
        now = time.monotonic()
        with self._marks_lock:
            written = self._marks.get(merchant_id)
            if written and written[0] <= expires_ms and now - written[1] < MARK_REUSE_S:
                return False
            self._marks[merchant_id] = (expires_ms, now)
            return True

    def forget_mark(self, merchant_id: str) -> None:
        with self._marks_lock:
            self._marks.pop(merchant_id, None)

    def due_merchants(self, now_ms: int, limit: int) -> list[tuple[str, int]]:
        """Up to ``limit`` merchants due at ``now_ms`` with the score each was due at."""
        key = self.keys.due()
        found = self._read(
            lambda: self.client.zrangebyscore(key, "-inf", now_ms, 0, limit, withscores=True)
        )
        return [(member.decode(), int(score)) for member, score in found]

    def settle_due(self, merchant_id: str, seen_score: int) -> None:
        """After a sweep: move the merchant's entry to its next expiry (or drop it when it
        has no lease left), unless it changed since it was read at ``seen_score``."""
        next_expiry = self._next_expiry(merchant_id)
        self._call(
            "advance_due",
            [self.keys.due()],
            [merchant_id, seen_score, "" if next_expiry is None else next_expiry],
        )

    def seed_due(self, merchant_id: str) -> None:
        """Put the merchant in the index at its earliest unswept expiry, if it has one."""
        next_expiry = self._next_expiry(merchant_id)
        if next_expiry is not None:
            key = self.keys.due()
            self._read(lambda: self.client.zadd(key, {merchant_id: next_expiry}, lt=True))

    def _next_expiry(self, merchant_id: str) -> int | None:
        index = self.keys.lease_index(merchant_id)
        first = self._read(lambda: self.client.zrange(index, 0, 0, withscores=True))
        return int(first[0][1]) if first else None
