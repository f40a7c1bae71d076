"""Pruning what never expires by itself: bookings of past slots, and their counters.

Booking records (with the client's personal data), the booking index, the occupancy
sets of booked slots and the per-slot fencing counters have no TTL: the broker cannot
know how long a partner needs them. Once a slot has started none of them can change
any more, so after a grace period an operator may drop them (``leasebroker prune``).
Every removal is an atomic script that re-checks the slot's start against the cutoff
on Redis's clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from leasebroker.core.base import BrokerCore
from leasebroker.core.keys import IdKind, SlotId, parse_public_id
from leasebroker.core.outcomes import Outcome
from leasebroker.core.steps import ReadRecord, RunScript, Steps
from leasebroker.core.units import floor_ms
from leasebroker.core.validation import MAX_SCRIPT_INT, check_int, raise_if_invalid

# Pairs of (field, start) per prune_fences call, and bookings read per pass.
_BATCH = 500


@dataclass(frozen=True)
class PruneReport:
    """What one prune pass removed."""

    bookings: int = 0
    fences: int = 0

    def __add__(self, other: PruneReport) -> PruneReport:
        return PruneReport(self.bookings + other.bookings, self.fences + other.fences)


class PruneOps(BrokerCore):
    """Removing records of slots that started before a cutoff."""

    def prune(self, merchant_id: str, older_than_ms: int) -> PruneReport:
        """Forget the merchant's bookings (and occupancy sets and fencing counters) of
        slots that started more than ``older_than_ms`` ago on Redis's clock."""
        self.check_selection(merchant_id)
        raise_if_invalid([check_int(older_than_ms, "older_than", 0, MAX_SCRIPT_INT)])
        cutoff = self.now_ms() - older_than_ms
        return PruneReport(
            bookings=self._prune_bookings(merchant_id, cutoff),
            fences=self._prune_fences(merchant_id, cutoff),
        )

    def _prune_bookings(self, merchant_id: str, cutoff_ms: int) -> int:
        index = self.keys.booking_index(merchant_id)
        removed = 0
        while True:
            due = self._read(self.client.zrangebyscore, index, "-inf", f"({cutoff_ms}", 0, _BATCH)
            pruned = sum(self._prune_booking(merchant_id, i.decode(), cutoff_ms) for i in due)
            removed += pruned
            # A full batch of which nothing could go (Redis's clock stepped back below
            # the cutoff) would come back forever: stop there.
            if len(due) < _BATCH or not pruned:
                return removed

    def _prune_booking(self, merchant_id: str, booking_id: str, cutoff_ms: int) -> int:
        index = self.keys.booking_index(merchant_id)
        parsed = parse_public_id(booking_id, IdKind.BOOKING)
        key = self.keys.booking(merchant_id, parsed.token if parsed else "malformed")

        def attempt() -> Steps[list]:
            # A record that is gone leaves only its index entry; its own (missing) key
            # then also fills the slot position, which the script does not touch.
            record = yield ReadRecord(key)
            slot_key = record.get("slot", key.encode()).decode()
            return (
                yield RunScript("prune_booking", [index, key, slot_key], [booking_id, cutoff_ms])
            )

        return int(self.drive(self._until_settled(attempt)) is Outcome.OK)

    def _prune_fences(self, merchant_id: str, cutoff_ms: int) -> int:
        fences = self.keys.fences(merchant_id)
        fields = [f.decode() for f in self._read(self.client.hkeys, fences)]
        old = [
            (field, start_ms)
            for field in fields
            if (start_ms := floor_ms(SlotId.from_field(merchant_id, field).start_ns)) < cutoff_ms
        ]
        removed = 0
        for i in range(0, len(old), _BATCH):
            args: list[str | int] = [cutoff_ms]
            for field, start_ms in old[i : i + _BATCH]:
                args += [field, start_ms]
            removed += int(self._call("prune_fences", [fences], args)[1])
        return removed
