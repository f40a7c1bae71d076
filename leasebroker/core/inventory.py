"""Inventory operations: load a merchant's slots, set one capacity, and see how full slots are."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from leasebroker.core.base import BrokerCore
from leasebroker.core.errors import BrokerError, FieldViolation, Reason
from leasebroker.core.keys import NOTHING_OFFERED_FIELD, SlotId, is_slot_field, service_field
from leasebroker.core.model import CapacitySource, InventorySlot, InventoryState, SlotStatus
from leasebroker.core.outcomes import Outcome
from leasebroker.core.validation import (
    MAX_SCRIPT_INT,
    check_capacity,
    check_int,
    raise_if_invalid,
    slot_violations,
)


class InventoryOps(BrokerCore):
    """What each merchant offers, and how much of it is taken."""

    def replace_inventory(
        self, merchant_id: str, slots: Sequence[InventorySlot], generation: int | None = None
    ) -> int:
        """Make ``slots`` the merchant's complete inventory, atomically; returns the slot count.

        From then on the merchant offers only these slots: none at all for an empty
        ``slots`` (it does not fall back to the default capacity). Existing leases
        and bookings are not touched. With the feed's ``generation``, a merchant that
        already holds a newer feed's slots is left alone (FEED_OUTDATED).
        """
        _check_inventory(merchant_id, slots)
        return self._write_inventory(merchant_id, slots, generation)

    def _write_inventory(
        self, merchant_id: str, slots: Sequence[InventorySlot], generation: int | None
    ) -> int:
        """:meth:`replace_inventory` for slots already checked."""
        self.register_merchant(merchant_id)
        args: list[str | int] = [
            self.config.events_retention_ms,
            NOTHING_OFFERED_FIELD,
            "" if generation is None else generation,
            len(slots),
        ]
        for item in slots:
            args += [item.slot.field(), item.capacity]
        args += sorted({service_field(item.slot.service_id) for item in slots})
        reply = self._call(
            "replace_inventory",
            [self.keys.inventory(merchant_id), self.keys.events(merchant_id)],
            args,
        )
        if Outcome(int(reply[0])) is Outcome.FEED_OUTDATED:
            raise _outdated(generation, int(reply[1]))
        return int(reply[1])

    def load_inventories(
        self,
        inventories: Mapping[str, Sequence[InventorySlot]],
        *,
        complete: bool = False,
        generation: int | None = None,
        nonce: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> tuple[int, list[str]]:
        """Load a feed's inventories: each merchant in it gets exactly its slots; with
        ``complete``, every other merchant the broker knows is withdrawn too. A feed
        with a ``generation`` (its generation_timestamp, seconds) older than the newest
        one loaded is refused with FEED_OUTDATED before anything changes. ``progress``
        is called with the merchants and slots loaded so far after each merchant.
        Returns the slot count and the merchants withdrawn.

        Every slot is checked before anything is written, so a feed with a bad value
        records no generation and loads nobody. Of two loaders running at once, the
        older feed never overwrites a merchant the newer one has written (each
        merchant's inventory keeps its feed's generation; the older load then stops
        with FEED_OUTDATED).
        """
        for merchant_id, items in inventories.items():
            _check_inventory(merchant_id, items)
        if generation is not None:
            raise_if_invalid([check_int(generation, "generation_timestamp", 0, MAX_SCRIPT_INT)])
            reply = self._call(
                "record_feed_generation",
                [self.keys.feed()],
                [generation, "" if nonce is None else nonce],
            )
            if Outcome(int(reply[0])) is Outcome.FEED_OUTDATED:
                raise _outdated(generation, int(reply[1]))
        slots = 0
        for done, (merchant, items) in enumerate(inventories.items(), start=1):
            slots += self._write_inventory(merchant, items, generation)
            if progress is not None:
                progress(done, slots)
        withdrawn = self._withdraw_others(inventories, generation) if complete else []
        return slots, withdrawn

    def replace_all_inventories(
        self, inventories: Mapping[str, Sequence[InventorySlot]]
    ) -> tuple[int, list[str]]:
        """Load a feed that lists every merchant (a complete feed): each merchant in it
        gets its slots, and every other merchant the broker knows is left offering
        nothing. Returns the slot count and the merchants withdrawn."""
        return self.load_inventories(inventories, complete=True)

    def _withdraw_others(
        self, inventories: Mapping[str, Sequence[InventorySlot]], generation: int | None
    ) -> list[str]:
        """Leave every known merchant not in ``inventories`` offering nothing."""
        withdrawn = [m for m in self.merchants() if m not in inventories]
        for merchant_id in withdrawn:
            self._write_inventory(merchant_id, [], generation)
        return withdrawn

    def set_capacity(self, slot: SlotId, capacity: int) -> int | None:
        """Set one slot's capacity; returns the previous one (None: it was not listed).

        Lowering it cancels nothing already held or booked. Note that a merchant
        without inventory gets one by this, which then offers only listed slots.
        """
        raise_if_invalid(_capacity_violations(slot, capacity))
        self.register_merchant(slot.merchant_id)
        reply = self._call(
            "set_capacity",
            [self.keys.inventory(slot.merchant_id), self.keys.events(slot.merchant_id)],
            [
                slot.field(),
                capacity,
                self.config.events_retention_ms,
                service_field(slot.service_id),
            ],
        )
        previous = int(reply[1])
        return None if previous < 0 else previous

    def get_inventory(self, merchant_id: str) -> list[InventorySlot]:
        """The merchant's loaded inventory, by start time (empty: it has none)."""
        self.check_selection(merchant_id)
        raw = self._read(self.client.hgetall, self.keys.inventory(merchant_id))
        slots = [
            InventorySlot(SlotId.from_field(merchant_id, field.decode()), int(capacity))
            for field, capacity in raw.items()
            if is_slot_field(field.decode())
        ]
        return sorted(slots, key=lambda s: (s.slot.start_ns, s.slot.field()))

    def inventory_state(self, merchant_id: str) -> InventoryState:
        """Whether the merchant has no inventory, a loaded one, or a withdrawn one."""
        self.check_selection(merchant_id)
        fields = self._read(self.client.hkeys, self.keys.inventory(merchant_id))
        if not fields:
            return InventoryState.NONE
        if any(is_slot_field(f.decode()) for f in fields):
            return InventoryState.LOADED
        return InventoryState.WITHDRAWN

    def slot_status(self, slot: SlotId) -> SlotStatus:
        """Capacity, live holds, bookings and free spots of one slot, read atomically."""
        raise_if_invalid(slot_violations(slot))
        reply = self._call(
            "slot_status",
            [self.keys.slot(slot), self.keys.inventory(slot.merchant_id)],
            [slot.field(), self.config.default_capacity],
        )
        return SlotStatus(
            slot=slot,
            capacity=int(reply[1]),
            source=CapacitySource(reply[2].decode()),
            holds=int(reply[3]),
            bookings=int(reply[4]),
        )


def _check_inventory(merchant_id: str, slots: Sequence[InventorySlot]) -> None:
    """INVALID_FIELD for a bad slot or capacity; ValueError for a slot of another merchant."""
    if any(item.slot.merchant_id != merchant_id for item in slots):
        raise ValueError(f"every slot must belong to merchant {merchant_id!r}")
    for item in slots:
        raise_if_invalid(_capacity_violations(item.slot, item.capacity))


def _capacity_violations(slot: SlotId, capacity: int) -> list[FieldViolation]:
    """What is wrong with one slot and its capacity."""
    problem = check_capacity(capacity)
    return [*slot_violations(slot), *([problem] if problem else [])]


def _outdated(generation: int | None, loaded: int) -> BrokerError:
    return BrokerError(
        Reason.FEED_OUTDATED,
        f"the feed was generated at {generation}, before the one already loaded "
        f"({loaded}): loading it would bring older inventory back",
    )
