"""The documented lifecycle (docs/semantics.md), held to the exact millisecond.

Every operation agrees when a hold ends and when a slot starts, to the millisecond;
and random interleavings of every operation, on a clock moved a few milliseconds at a
time, give exactly the replies and slot counts a model of the documented semantics
gives. The store's clock is frozen, so these run on fakeredis only (it is also the
embedded production store). They came from an adversarial review of the lifecycle.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from support import (
    HOUR_NS,
    MERCHANT,
    booking_request,
    lease_request,
    outcome,
    refusal,
    slot,
)

from leasebroker.core.errors import Reason
from leasebroker.core.model import InventorySlot
from leasebroker.core.pruning import PruneReport
from leasebroker.core.units import NS_PER_MS


def attrs(got: Any, *names: str) -> Any:
    """Those attributes of a result, or the refusal's reason as it is."""
    return got if isinstance(got, Reason) else tuple(getattr(got, n) for n in names)


# ================================================================ exact milliseconds


@pytest.mark.parametrize("backend", ["fake"])
def test_every_operation_agrees_a_hold_ends_at_its_expiry_millisecond(make_broker, clock):
    """At expiry - 1 the hold counts everywhere; at expiry it counts nowhere."""
    broker = make_broker(default_capacity=1)
    here, there = slot(), slot(start_ns=slot().start_ns + HOUR_NS)
    expiry = clock.freeze() + 100
    request = lease_request(requested_expiry_ns=expiry * NS_PER_MS)
    lease = broker.create_lease(request)
    assert lease.expires_at_ms == expiry
    mover = broker.create_lease(lease_request(start_ns=there.start_ns, client_reference="m"))
    booking = broker.create_booking(booking_request(mover.lease_id))

    clock.at(expiry - 1)
    other = lease_request(client_reference="other")
    assert refusal(broker.create_lease, other).reason is Reason.SLOT_FULL
    moving = outcome(broker.reschedule_booking, booking.booking_id, here.start_ns, None)
    assert moving is Reason.SLOT_FULL
    assert broker.create_lease(request).replayed
    assert broker.slot_status(here).holds == 1
    assert broker.sweep_expired(MERCHANT, 100) == 0

    clock.at(expiry)
    assert broker.slot_status(here).holds == 0
    for op in (
        lambda: broker.create_booking(booking_request(lease.lease_id)),
        lambda: broker.extend_lease(lease.lease_id, 1_000),
    ):
        assert refusal(op).reason is Reason.LEASE_EXPIRED
    assert broker.release_lease(lease.lease_id).state == "expired"  # unchanged
    # The reference is free: the same request is no replay (its expiry has passed), and
    # the reference takes a new lease at once.
    assert refusal(broker.create_lease, request).reason is Reason.EXPIRY_NOT_IN_FUTURE
    again = broker.create_lease(lease_request())
    assert (again.replayed, again.fence) == (False, 2)
    assert again.lease_id != lease.lease_id
    assert broker.release_lease(again.lease_id).state == "released"
    assert broker.reschedule_booking(booking.booking_id, here.start_ns, None).slot == here
    assert broker.sweep_expired(MERCHANT, 100) == 1
    status = broker.slot_status(here)
    assert (status.holds, status.bookings) == (0, 1)


@pytest.mark.parametrize("backend", ["fake"])
def test_slot_start_millisecond_for_leases_bookings_and_prune(make_broker, clock, redis_client):
    """A hold is capped at the start; at the start nothing may change; prune waits until
    the start is strictly before its cutoff, and never resets a counter still in use."""
    broker = make_broker(default_capacity=3)
    start = clock.freeze() + 100
    soon = slot(start_ns=start * NS_PER_MS)
    first = broker.create_lease(lease_request(start_ns=soon.start_ns))
    assert first.expires_at_ms == start
    booking = broker.create_booking(booking_request(first.lease_id))

    clock.at(start - 1)
    assert broker.prune(MERCHANT, older_than_ms=0).bookings == 0
    late = broker.create_lease(lease_request(start_ns=soon.start_ns, client_reference="late"))
    assert (late.expires_at_ms, late.fence) == (start, 2)  # counter not reset
    fences = broker.keys.fences(MERCHANT)

    clock.at(start)
    assert refusal(broker.create_booking, booking_request(late.lease_id, "Bo")).reason is (
        Reason.LEASE_EXPIRED
    )
    again = lease_request(start_ns=soon.start_ns, client_reference="again")
    assert refusal(broker.create_lease, again).reason is Reason.START_TIME_PASSED
    assert refusal(broker.cancel_booking, booking.booking_id).reason is Reason.SLOT_STARTED
    move = outcome(broker.reschedule_booking, booking.booking_id, slot().start_ns, None)
    assert move is Reason.SLOT_STARTED
    assert broker.prune(MERCHANT, older_than_ms=0) == PruneReport(0, 0)
    assert redis_client.hget(fences, soon.field()) == b"2"

    clock.at(start + 1)
    report = broker.prune(MERCHANT, older_than_ms=0)
    assert (report.bookings, report.fences) == (1, 1)
    assert refusal(broker.get_booking, booking.booking_id).reason is Reason.BOOKING_NOT_FOUND


# ================================================================ a model of the docs


@dataclass
class MLease:
    lease_id: str
    slot: int
    fp: tuple
    fence: int
    created: int
    expires: int
    state: str = "held"  # held, released, consumed, swept
    booked_by: str | None = None
    booking: str | None = None


@dataclass
class MBooking:
    slot: int
    fence: int
    status: str = "confirmed"


@dataclass
class Model:
    """What docs/semantics.md says the store holds, for a merchant with an inventory."""

    starts: list[int]
    inventory: dict[int, int]
    leases: dict[str, MLease] = field(default_factory=dict)
    bookings: dict[str, MBooking] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # reference -> lease id
    fences: dict[int, int] = field(default_factory=dict)

    def holds(self, s: int, now: int) -> int:
        return sum(
            v.slot == s and v.state == "held" and v.expires > now for v in self.leases.values()
        )

    def booked(self, s: int) -> int:
        return sum(b.slot == s and b.status == "confirmed" for b in self.bookings.values())

    def live_ref(self, ref: str, now: int) -> MLease | None:
        lease = self.leases.get(self.refs.get(ref, ""))
        return lease if lease and lease.expires > now else None


HOLD_MS, MAX_HOLD_MS = 60, 90


@pytest.mark.parametrize("backend", ["fake"])
@pytest.mark.parametrize("seed", range(6))
def test_random_interleavings_match_the_documented_semantics(make_broker, clock, seed):
    """One thread, a frozen clock moved in 0-5 ms steps (so expiries, slot starts and
    the capacity checks are hit at their exact millisecond), and random lease, booking,
    inventory, sweep and prune calls; every reply and every slot's holds and bookings
    must be what the documented semantics give."""
    rng = random.Random(seed)
    broker = make_broker(default_hold_ms=HOLD_MS, max_hold_ms=MAX_HOLD_MS)
    t0 = clock.freeze()
    starts = [t0 + 250, t0 + 500, t0 + 750, t0 + 86_400_000]
    slots = [slot(start_ns=ms * NS_PER_MS) for ms in starts]
    model = Model(starts, {0: 2, 1: 1, 3: 2})  # slot 2 is not offered at first
    broker.replace_inventory(
        MERCHANT, [InventorySlot(slots[s], c) for s, c in model.inventory.items()]
    )
    expiries = [None, t0 + 80, t0 + 200, t0 + 450, t0 + 700]
    names = ["Ada", "Bo"]

    def create(now: int) -> tuple[Any, Any]:
        s, ref, exp = rng.randrange(4), f"r{rng.randrange(8)}", rng.choice(expiries)
        request = lease_request(
            start_ns=slots[s].start_ns, client_reference=ref,
            requested_expiry_ns=None if exp is None else exp * NS_PER_MS,
        )  # fmt: skip
        got = outcome(broker.create_lease, request)
        fp = (s, ref)  # the requested expiry is not part of "the same request"
        held = model.live_ref(ref, now)
        if held:
            want = (held.lease_id, held.expires, held.fence) if held.fp == fp else None
            if want is None:
                return got, Reason.CLIENT_REFERENCE_IN_USE
            return attrs(got, "lease_id", "expires_at_ms", "fence", "replayed"), (*want, True)
        if starts[s] <= now:
            return got, Reason.START_TIME_PASSED
        if exp is not None and exp <= now:
            return got, Reason.EXPIRY_NOT_IN_FUTURE
        expires = min(now + HOLD_MS if exp is None else min(exp, now + MAX_HOLD_MS), starts[s])
        if s not in model.inventory:
            return got, Reason.SLOT_NOT_OFFERED
        if model.holds(s, now) + model.booked(s) >= model.inventory[s]:
            return got, Reason.SLOT_FULL
        if isinstance(got, Reason):
            return got, "a lease"
        model.fences[s] = model.fences.get(s, 0) + 1
        model.leases[got.lease_id] = MLease(got.lease_id, s, fp, model.fences[s], now, expires)
        model.refs[ref] = got.lease_id
        return attrs(got, "expires_at_ms", "fence", "replayed"), (expires, model.fences[s], False)

    def pick_lease() -> MLease | None:
        return rng.choice(list(model.leases.values())) if model.leases else None

    def consume(now: int) -> tuple[Any, Any]:
        lease, name = pick_lease(), rng.choice(names)
        if lease is None:
            return None, None
        got = outcome(broker.create_booking, booking_request(lease.lease_id, name))
        if lease.state == "consumed":
            if lease.booked_by != name:
                return got, Reason.LEASE_ALREADY_BOOKED
            if lease.booking not in model.bookings:
                return got, Reason.BOOKING_NOT_FOUND  # pruned
            return attrs(got, "booking_id", "replayed"), (lease.booking, True)
        if lease.state == "released":
            return got, Reason.LEASE_RELEASED
        if lease.state == "swept" or lease.expires <= now:
            return got, Reason.LEASE_EXPIRED
        cap = model.inventory.get(lease.slot)
        if cap is not None and model.booked(lease.slot) >= cap:
            return got, Reason.SLOT_FULL
        if isinstance(got, Reason):
            return got, "a booking"
        lease.state, lease.booked_by, lease.booking = "consumed", name, got.booking_id
        model.bookings[got.booking_id] = MBooking(lease.slot, lease.fence)
        return attrs(got, "fence", "slot"), (lease.fence, slots[lease.slot])

    def release(now: int) -> tuple[Any, Any]:
        lease = pick_lease()
        if lease is None:
            return None, None
        got = outcome(broker.release_lease, lease.lease_id)
        if lease.state == "consumed":
            return got, Reason.LEASE_CONSUMED
        if lease.state == "held" and lease.expires > now:
            lease.state = "released"
            model.refs = {r: i for r, i in model.refs.items() if i != lease.lease_id}
        state = {"held": "expired", "swept": "expired"}.get(lease.state, lease.state)
        return attrs(got, "state"), (state,)

    def extend(now: int) -> tuple[Any, Any]:
        lease, by = pick_lease(), rng.choice([1, 5, 40])
        if lease is None:
            return None, None
        got = outcome(broker.extend_lease, lease.lease_id, by)
        if lease.state in ("consumed", "released"):
            return got, {"consumed": Reason.LEASE_CONSUMED, "released": Reason.LEASE_RELEASED}[
                lease.state
            ]
        if lease.state == "swept" or lease.expires <= now:
            return got, Reason.LEASE_EXPIRED
        bound = min(lease.created + MAX_HOLD_MS, starts[lease.slot])
        lease.expires = max(lease.expires, min(lease.expires + by, bound))
        return attrs(got, "expires_at_ms"), (lease.expires,)

    def pick_booking() -> tuple[str, MBooking] | None:
        return rng.choice(list(model.bookings.items())) if model.bookings else None

    def cancel(now: int) -> tuple[Any, Any]:
        picked = pick_booking()
        if picked is None:
            return None, None
        booking_id, booking = picked
        got = outcome(broker.cancel_booking, booking_id)
        if booking.status == "confirmed":
            if starts[booking.slot] <= now:
                return got, Reason.SLOT_STARTED
            booking.status = "cancelled"
        return attrs(got, "status"), ("cancelled",)

    def reschedule(now: int) -> tuple[Any, Any]:
        picked, s = pick_booking(), rng.randrange(4)
        if picked is None:
            return None, None
        booking_id, booking = picked
        got = outcome(broker.reschedule_booking, booking_id, slots[s].start_ns, None)
        if booking.status == "cancelled":
            return got, Reason.BOOKING_CANCELLED
        if s != booking.slot and starts[booking.slot] <= now:
            return got, Reason.SLOT_STARTED
        if s != booking.slot:
            if starts[s] <= now:
                return got, Reason.START_TIME_PASSED
            if s not in model.inventory:
                return got, Reason.SLOT_NOT_OFFERED
            if model.holds(s, now) + model.booked(s) >= model.inventory[s]:
                return got, Reason.SLOT_FULL
            model.fences[s] = model.fences.get(s, 0) + 1
            booking.slot, booking.fence = s, model.fences[s]
        return attrs(got, "slot", "fence"), (slots[booking.slot], booking.fence)

    def inventory(now: int) -> tuple[Any, Any]:
        if rng.random() < 0.5:
            s, cap = rng.randrange(4), rng.randrange(4)
            previous = broker.set_capacity(slots[s], cap)
            want, model.inventory[s] = model.inventory.get(s), cap
            return previous, want
        listed = rng.sample(range(4), rng.randrange(1, 5))
        model.inventory = {s: rng.randrange(4) for s in listed}
        items = [InventorySlot(slots[s], c) for s, c in model.inventory.items()]
        return broker.replace_inventory(MERCHANT, items), len(items)

    def sweep(now: int) -> tuple[Any, Any]:
        due = [v for v in model.leases.values() if v.state == "held" and v.expires <= now]
        for lease in due:
            lease.state = "swept"
        return broker.sweep_expired(MERCHANT, 1_000), len(due)

    def prune(now: int) -> tuple[Any, Any]:
        gone = [b for b, v in model.bookings.items() if starts[v.slot] < now]
        for booking_id in gone:
            del model.bookings[booking_id]
        fences = [s for s in model.fences if starts[s] < now]
        for s in fences:
            del model.fences[s]
        report = broker.prune(MERCHANT, older_than_ms=0)
        return (report.bookings, report.fences), (len(gone), len(fences))

    ops = [create] * 6 + [consume] * 4 + [release, extend] * 2 + [cancel] + [reschedule] * 3
    ops += [inventory, sweep, prune]
    for step in range(400):
        clock.at(clock.frozen_ms + rng.choice([0, 0, 1, 1, 2, 3, 5]))
        op = rng.choice(ops)
        got, want = op(clock.frozen_ms)
        assert got == want, (seed, step, op.__name__, clock.frozen_ms - t0)
        for s, one in enumerate(slots):
            status = broker.slot_status(one)
            expected = (model.holds(s, clock.frozen_ms), model.booked(s))
            assert (status.holds, status.bookings) == expected, (seed, step, op.__name__, s)
