"""Adversarial review of the lifecycle: retries, exact-millisecond boundaries, cluster slots.

Each test either pins a bug the review found (fixed since; marked "Regression") or is
an attempt to break an invariant that held and that no other test covers.
Exact-millisecond tests freeze the store's clock, so they run on fakeredis only (it is
also the embedded production store); lost-reply tests need a real socket, so they run on
the real Redis only.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from lifecycle_helpers import (
    HOUR_NS,
    MERCHANT,
    Clock,
    booking_request,
    client_bytes,
    events,
    lease_request,
    redis_now_ms,
    refusal,
    slot,
)
from redis.crc import key_slot

from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import BookingRequest, InventorySlot, LeaseRequest
from leasebroker.core.pruning import PruneReport
from leasebroker.core.scripts import BoundScript, load_sources
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import connect

NS_PER_MS = 1_000_000
REAL_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture
def clock(backend, monkeypatch, redis_client):
    return Clock(backend, monkeypatch, redis_client)


class FrozenClock:
    """fakeredis's clock (TIME and key expiry) held at one millisecond until moved."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, client: Any) -> None:
        self.ms = redis_now_ms(client)
        # 0.2 ms into the millisecond, so float rounding never shows the one before.
        monkeypatch.setattr(time, "time", lambda: self.ms / 1000 + 0.0002)
        assert redis_now_ms(client) == self.ms

    def at(self, ms: int) -> None:
        assert ms >= self.ms, "the store's clock only moves forward"
        self.ms = ms


@pytest.fixture
def frozen(monkeypatch, redis_client):
    return FrozenClock(monkeypatch, redis_client)


def reason(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The call's result, or the BrokerError's reason."""
    try:
        return fn(*args, **kwargs)
    except BrokerError as error:
        return error.reason


def attrs(got: Any, *names: str) -> Any:
    """Those attributes of a result, or the refusal's reason as it is."""
    return got if isinstance(got, Reason) else tuple(getattr(got, n) for n in names)


# ================================================================ confirmed bugs


@pytest.mark.parametrize("backend", ["fake"])  # needs a minute of store time
# Regression (review finding, fixed): see the commit that removed its xfail.
def test_replayed_booked_lease_can_be_booked_again_by_the_same_client(make_broker, clock):
    broker = make_broker(record_retention_ms=60_000, default_hold_ms=600_000)
    request = lease_request()
    lease = broker.create_lease(request)
    booking = broker.create_booking(booking_request(lease.lease_id))
    clock.advance(90)  # past the retention, well within the 10-minute hold

    replay = broker.create_lease(request)  # a late CreateLease retry
    assert (replay.lease_id, replay.replayed) == (lease.lease_id, True)
    # docs/semantics.md: "If the client then retries CreateBooking with it, it gets its
    # booking back."
    again = reason(broker.create_booking, booking_request(replay.lease_id))
    assert getattr(again, "booking_id", again) == booking.booking_id


# Regression (review finding, fixed): see the commit that removed its xfail.
def test_reschedule_retry_after_the_new_slot_started_returns_the_booking(broker, clock):
    lease = broker.create_lease(lease_request())
    booking = broker.create_booking(booking_request(lease.lease_id))
    soon_ms = clock.now_ms() + 300
    moved = broker.reschedule_booking(booking.booking_id, soon_ms * NS_PER_MS, None)
    assert moved.slot.start_ns == soon_ms * NS_PER_MS
    clock.pass_ms(soon_ms)

    # The reply was lost; the client sends the same UpdateBooking again.
    retry = reason(broker.reschedule_booking, booking.booking_id, soon_ms * NS_PER_MS, None)
    assert getattr(retry, "slot", retry) == moved.slot


def lose_first_reply(monkeypatch: pytest.MonkeyPatch, sha: str) -> list[int]:
    """Make redis-py lose the reply of the next EVALSHA of ``sha`` after Redis ran it (a
    socket timeout after the script executed); returns a list counting the runs."""
    runs: list[int] = []
    original = redis.Redis._send_command_parse_response

    def flaky(self: Any, conn: Any, command_name: Any, *args: Any, **options: Any) -> Any:
        reply = original(self, conn, command_name, *args, **options)
        if command_name == "EVALSHA" and args[1] == sha:
            runs.append(1)
            if len(runs) == 1:
                raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return reply

    monkeypatch.setattr(redis.Redis, "_send_command_parse_response", flaky)
    return runs


@pytest.fixture
def served_broker(redis_client, key_prefix):
    """A broker on the client `leasebroker serve` builds (store.connect: 2 retries)."""
    store = connect(REAL_URL, pool_size=4)
    yield LeaseBroker(store.client, BrokerConfig(key_prefix=key_prefix))
    store.client.close()


@pytest.mark.parametrize("backend", ["real"])
# Regression (review finding, fixed): see the commit that removed its xfail.
def test_extend_with_a_lost_reply_extends_once(served_broker, monkeypatch):
    lease = served_broker.create_lease(lease_request())
    runs = lose_first_reply(monkeypatch, served_broker.scripts["extend_lease"]._script.sha)
    view = served_broker.extend_lease(lease.lease_id, 1_000)
    assert len(runs) == 2  # premise: redis-py ran the script again after the timeout
    assert view.expires_at_ms == lease.expires_at_ms + 1_000


@pytest.mark.parametrize("backend", ["real"])
def test_set_capacity_with_a_lost_reply_changes_it_once(served_broker, monkeypatch, redis_client):
    """The retry finds the capacity already set: no second write, no second event (it
    reports the capacity as it found it, the new one)."""
    assert served_broker.set_capacity(slot(), 2) is None
    runs = lose_first_reply(monkeypatch, served_broker.scripts["set_capacity"]._script.sha)
    previous = served_broker.set_capacity(slot(), 5)
    assert len(runs) == 2
    kinds = [e["type"] for e in events(redis_client, served_broker)]
    assert (previous, kinds.count("inventory.capacity_set")) == (5, 2)  # one per call
    assert served_broker.slot_status(slot()).capacity == 5


# ================================================================ held: exact milliseconds


@pytest.mark.parametrize("backend", ["fake"])
def test_every_operation_agrees_a_hold_ends_at_its_expiry_millisecond(make_broker, frozen):
    """At expiry - 1 the hold counts everywhere; at expiry it counts nowhere."""
    broker = make_broker(default_capacity=1)
    here, there = slot(), slot(start_ns=slot().start_ns + HOUR_NS)
    expiry = frozen.ms + 100
    request = lease_request(requested_expiry_ns=expiry * NS_PER_MS)
    lease = broker.create_lease(request)
    assert lease.expires_at_ms == expiry
    mover = broker.create_lease(lease_request(start_ns=there.start_ns, client_reference="m"))
    booking = broker.create_booking(booking_request(mover.lease_id))

    frozen.at(expiry - 1)
    other = lease_request(client_reference="other")
    assert refusal(broker.create_lease, other).reason is Reason.SLOT_FULL
    moving = reason(broker.reschedule_booking, booking.booking_id, here.start_ns, None)
    assert moving is Reason.SLOT_FULL
    assert broker.create_lease(request).replayed
    assert broker.slot_status(here).holds == 1
    assert broker.sweep_expired(MERCHANT, 100) == 0

    frozen.at(expiry)
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
def test_slot_start_millisecond_for_leases_bookings_and_prune(make_broker, frozen, redis_client):
    """A hold is capped at the start; at the start nothing may change; prune waits until
    the start is strictly before its cutoff, and never resets a counter still in use."""
    broker = make_broker(default_capacity=3)
    start = frozen.ms + 100
    soon = slot(start_ns=start * NS_PER_MS)
    first = broker.create_lease(lease_request(start_ns=soon.start_ns))
    assert first.expires_at_ms == start
    booking = broker.create_booking(booking_request(first.lease_id))

    frozen.at(start - 1)
    assert broker.prune(MERCHANT, older_than_ms=0).bookings == 0
    late = broker.create_lease(lease_request(start_ns=soon.start_ns, client_reference="late"))
    assert (late.expires_at_ms, late.fence) == (start, 2)  # counter not reset
    fences = broker.keys.fences(MERCHANT)

    frozen.at(start)
    assert refusal(broker.create_booking, booking_request(late.lease_id, "Bo")).reason is (
        Reason.LEASE_EXPIRED
    )
    again = lease_request(start_ns=soon.start_ns, client_reference="again")
    assert refusal(broker.create_lease, again).reason is Reason.START_TIME_PASSED
    assert refusal(broker.cancel_booking, booking.booking_id).reason is Reason.SLOT_STARTED
    move = reason(broker.reschedule_booking, booking.booking_id, slot().start_ns, None)
    assert move is Reason.SLOT_STARTED
    assert broker.prune(MERCHANT, older_than_ms=0) == PruneReport(0, 0)
    assert redis_client.hget(fences, soon.field()) == b"2"

    frozen.at(start + 1)
    report = broker.prune(MERCHANT, older_than_ms=0)
    assert (report.bookings, report.fences) == (1, 1)
    assert refusal(broker.get_booking, booking.booking_id).reason is Reason.BOOKING_NOT_FOUND


# ================================================================ held: cluster slots


def hash_tag(key: str) -> str:
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


@pytest.fixture
def recorded_calls(monkeypatch):
    calls: list[tuple[str, list[str]]] = []
    original = BoundScript.__call__

    def spy(self: BoundScript, keys: Any, args: Any) -> Any:
        calls.append((self.name, list(keys)))
        return original(self, keys, args)

    monkeypatch.setattr(BoundScript, "__call__", spy)
    return calls


def test_every_script_of_the_lifecycle_stays_in_one_cluster_slot(
    make_broker, redis_client, key_prefix, recorded_calls, clock
):
    """test_keys covers create_lease and replace_inventory; this drives every script,
    including the sweep and prune paths for records that are already gone."""
    broker = make_broker(default_capacity=3)
    merchants = ["{", "}{", "a{b}c", "%7B", "😀"]
    for m in merchants:
        soon_ms = clock.now_ms() + 400
        later = slot(merchant_id=m, service_id="s{1}", staff_id="}x")
        other = slot(merchant_id=m, service_id="s{1}", staff_id="}x", start_ns=later.start_ns + 1)
        soon = slot(merchant_id=m, start_ns=soon_ms * NS_PER_MS)

        def lease(s: SlotId, ref: str, expiry_ms: int | None = None) -> str:
            expiry = None if expiry_ms is None else expiry_ms * NS_PER_MS
            return broker.create_lease(LeaseRequest(s, ref, "t", expiry)).lease_id

        def book(lease_id: str) -> str:
            return broker.create_booking(BookingRequest(lease_id, client_bytes())).booking_id

        broker.extend_lease(lease(later, "{a}"), 1_000)
        broker.release_lease(lease(later, "b}"))
        booked = book(lease(later, "c"))
        broker.reschedule_booking(booked, other.start_ns, None)
        broker.cancel_booking(booked)
        lease(later, "swept", soon_ms - 200)
        gone_lease = lease(later, "gone", soon_ms - 200)
        redis_client.delete(broker.keys.lease(m, gone_lease.rsplit(".", 1)[1]))
        book(lease(soon, "past"))
        gone_booking = book(lease(soon, "past-gone"))
        redis_client.delete(broker.keys.booking(m, gone_booking.rsplit(".", 1)[1]))
        broker.slot_status(later)
        broker.replace_inventory(m, [InventorySlot(later, 3), InventorySlot(other, 3)])
        broker.set_capacity(soon, 3)
    clock.pass_ms(soon_ms)
    for m in merchants:
        assert broker.sweep_expired(m, 100) == 1
        assert (broker.prune(m, 0).bookings, broker.prune(m, 0).bookings) == (2, 0)

    assert {name for name, _ in recorded_calls} == set(load_sources())
    for name, keys in recorded_calls:
        tags = {hash_tag(key) for key in keys}
        assert len(tags) == 1, (name, keys)
        assert {key_slot(key.encode()) for key in keys} == {key_slot(tags.pop().encode())}
    passed = {key for _, keys in recorded_calls for key in keys}
    stored = {k.decode() for k in redis_client.scan_iter(match=f"{key_prefix}:*", count=1000)}
    assert {key for key in stored if "{" in key} <= passed


# ================================================================ held: a model of the docs


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
def test_random_interleavings_match_the_documented_semantics(make_broker, frozen, seed):
    """One thread, a frozen clock moved in 0-5 ms steps (so expiries, slot starts and
    the capacity checks are hit at their exact millisecond), and random lease, booking,
    inventory, sweep and prune calls; every reply and every slot's holds and bookings
    must be what the documented semantics give."""
    rng = random.Random(seed)
    broker = make_broker(default_hold_ms=HOLD_MS, max_hold_ms=MAX_HOLD_MS)
    t0 = frozen.ms
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
        got = reason(broker.create_lease, request)
        fp = (s, ref, exp)
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
        got = reason(broker.create_booking, booking_request(lease.lease_id, name))
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
        got = reason(broker.release_lease, lease.lease_id)
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
        got = reason(broker.extend_lease, lease.lease_id, by)
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
        got = reason(broker.cancel_booking, booking_id)
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
        got = reason(broker.reschedule_booking, booking_id, slots[s].start_ns, None)
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
        frozen.at(frozen.ms + rng.choice([0, 0, 1, 1, 2, 3, 5]))
        op = rng.choice(ops)
        got, want = op(frozen.ms)
        assert got == want, (seed, step, op.__name__, frozen.ms - t0)
        for s, one in enumerate(slots):
            status = broker.slot_status(one)
            expected = (model.holds(s, frozen.ms), model.booked(s))
            assert (status.holds, status.bookings) == expected, (seed, step, op.__name__, s)
