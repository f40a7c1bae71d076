"""The broker core: every lease and booking operation, usable as a library without gRPC.

Each operation validates its input, builds its keys with :class:`KeyBuilder`,
runs one atomic Lua script, and turns the script's outcome into a result or a
:class:`BrokerError`. CreateLease is one Redis round trip; operations on an
existing lease or booking first read its record to learn which slot key the
script must be given (every key a script touches is passed in KEYS).
"""

from __future__ import annotations

from leasebroker.core.bookings import BookingOps
from leasebroker.core.inspection import InspectionOps
from leasebroker.core.inventory import InventoryOps
from leasebroker.core.leases import LeaseOps, request_fingerprint
from leasebroker.core.model import SlotStatus
from leasebroker.core.pruning import PruneOps
from leasebroker.core.stored_settings import SettingsOps
from leasebroker.core.units import DAY_NS

__all__ = ["LeaseBroker", "request_fingerprint"]


class LeaseBroker(LeaseOps, BookingOps, InventoryOps, PruneOps, InspectionOps, SettingsOps):
    """Lease, booking and inventory operations over one Redis client
    (single node, cluster, or fakeredis)."""

    def day_status(self, merchant_id: str, day_start_ns: int) -> list[SlotStatus]:
        """Every slot of the merchant starting within one day from ``day_start_ns``: its
        inventory slots plus any slot with a live lease or a booking, by start time."""
        self.check_selection(merchant_id, None, day_start_ns)
        end = day_start_ns + DAY_NS
        slots = {
            item.slot
            for item in self.get_inventory(merchant_id)
            if day_start_ns <= item.slot.start_ns < end
        }
        slots |= {v.slot for v in self.list_leases(merchant_id, None, day_start_ns, end)}
        slots |= {b.slot for b in self.list_bookings(merchant_id, None, day_start_ns, end)}
        ordered = sorted(slots, key=lambda s: (s.start_ns, s.field()))
        return [self.slot_status(slot) for slot in ordered]
