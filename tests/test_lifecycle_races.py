"""Races in the lease/booking lifecycle: every contested operation has exactly one outcome,
and no slot ever holds more bookings plus live holds than its capacity.

Clock outcomes are judged on Redis's clock (the booking's created_ms is the consume
script's TIME), never on the test's. Thread races run on both backends; process races
on the real Redis only (processes cannot share a fakeredis in memory).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import grpc
import pytest
from support import (
    HOUR_NS,
    MERCHANT,
    START_NS,
    Clock,
    StatusDetails,
    booked_slots,
    booking_request,
    client_info,
    consume_in_process,
    create_booking_request,
    events,
    lease_request,
    long_expiry,
    occupancy,
    outcome,
    pb_lease,
    race,
    race_in_processes,
    redis_now_ms,
    reply_or_status,
    slot,
)

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.errors import Reason
from leasebroker.core.sweeper import sweep_once
from leasebroker.wire.errors import STATUS_FOR_REASON


def assert_within_capacity(broker, s, capacity: int) -> None:
    status = broker.slot_status(s)
    assert status.holds + status.bookings <= capacity, status


def at_targets(
    backend: str, clock: Clock, targets: list[int], attempt: Callable[[int], Any]
) -> list[Any]:
    """``attempt(i)`` when Redis's clock reads about ``targets[i]`` (ms); the results.

    Real Redis: one thread per attempt sleeps to its target (the test shares the host's
    clock with Redis), so neighbouring attempts overlap. fakeredis: the clock is moved
    to each target in turn, attempts in time order.
    """
    if backend == "real":
        skew_ms = clock.now_ms() - time.time() * 1000

        def at_target(i: int) -> Any:
            time.sleep(max(0.0, (targets[i] - skew_ms) / 1000 - time.time()))
            return attempt(i)

        with ThreadPoolExecutor(max_workers=len(targets)) as pool:
            return list(pool.map(at_target, range(len(targets))))
    results: list[Any] = [None] * len(targets)
    for i in sorted(range(len(targets)), key=targets.__getitem__):
        clock.reach_ms(targets[i])
        results[i] = attempt(i)
    return results


# ================================================================ CreateBooking vs expiry

LEASES = 40
# Attempts land between 40 ms before and 40 ms after each lease's expiry (Redis clock).
SPREAD_MS = 40


def test_create_booking_races_lease_expiry(make_broker, make_stub, clock, backend):
    broker = make_broker(default_capacity=LEASES, default_hold_ms=120, max_hold_ms=120)
    stub = make_stub(broker)
    leases = [broker.create_lease(lease_request(client_reference=f"r{i}")) for i in range(LEASES)]
    offsets = [-SPREAD_MS + (2 * SPREAD_MS * i) // (LEASES - 1) for i in range(LEASES)]
    random.Random(7).shuffle(offsets)
    targets = [lease.expires_at_ms + off for lease, off in zip(leases, offsets, strict=True)]

    def attempt(i: int) -> Any:
        request = create_booking_request(leases[i].lease_id, client_info())
        return reply_or_status(stub.CreateBooking, request)

    results = at_targets(backend, clock, targets, attempt)

    booked = {}
    for lease, result in zip(leases, results, strict=True):
        view = broker.get_lease(lease.lease_id)
        if isinstance(result, StatusDetails):
            # Refused: the lease's hold had ended on Redis's clock, and nothing was booked.
            assert (result.code, result.reason) == (grpc.StatusCode.NOT_FOUND, "LEASE_EXPIRED")
            assert (view.state, view.booking_id) == ("expired", None)
        else:
            booking = broker.get_booking(result.booking.booking_id)
            # Booked: the consume ran while the hold was live, on Redis's clock.
            assert booking.created_ms < lease.expires_at_ms
            assert (view.state, view.booking_id) == ("consumed", booking.booking_id)
            assert booking.lease_id == lease.lease_id and booking.status == "confirmed"
            booked[booking.booking_id] = lease.lease_id
    # Never both: the store holds exactly the bookings that were granted, each taking a spot.
    stored = broker.list_bookings(MERCHANT)
    assert {b.booking_id: b.lease_id for b in stored} == booked
    members = occupancy(broker.client, broker, slot())
    assert {m for m, score in members.items() if score == float("inf")} == set(booked)
    assert broker.slot_status(slot()).bookings == len(booked)
    # Retrying each attempt keeps its outcome.
    for lease, result in zip(leases, results, strict=True):
        request = create_booking_request(lease.lease_id, client_info())
        again = reply_or_status(stub.CreateBooking, request)
        if isinstance(result, StatusDetails):
            assert isinstance(again, StatusDetails) and again.reason == "LEASE_EXPIRED"
        else:
            assert again.booking.booking_id == result.booking.booking_id


# ================================================================ double consume, two processes

ROUNDS = 15


@pytest.mark.parametrize("backend", ["real"])
@pytest.mark.parametrize("clients", [("A", "B"), ("A", "A")], ids=["other-client", "same-client"])
def test_two_processes_consume_one_lease(redis_client, key_prefix, make_broker, clients):
    # One lease per slot (capacity 1, the default the racing processes use too).
    broker = make_broker()
    slots = [slot(start_ns=START_NS + i * HOUR_NS) for i in range(ROUNDS)]
    ids = [
        broker.create_lease(lease_request(client_reference=f"r{i}", start_ns=s.start_ns)).lease_id
        for i, s in enumerate(slots)
    ]
    reports = race_in_processes(consume_in_process, [(key_prefix, ids, name) for name in clients])
    first, second = (dict(report) for report in reports)
    assert set(first) == set(second) == set(ids)

    winners = Counter()
    for lease_id in ids:
        outcomes = [first[lease_id], second[lease_id]]
        booked = [o for o in outcomes if isinstance(o, str)]
        if clients[0] == clients[1]:
            # The same client: both get the one booking.
            assert len(booked) == 2 and booked[0] == booked[1], outcomes
        else:
            # Exactly one books; the other is told the lease is taken.
            assert len(booked) == 1, outcomes
            refused = [o for o in outcomes if not isinstance(o, str)]
            assert refused == [("ALREADY_EXISTS", "LEASE_ALREADY_BOOKED")]
            winners[outcomes.index(booked[0])] += 1
        booking = broker.get_booking(booked[0])
        view = broker.get_lease(lease_id)
        assert (view.state, view.booking_id) == ("consumed", booked[0])
        assert booking.lease_id == lease_id
    stored = broker.list_bookings(MERCHANT)
    assert len(stored) == ROUNDS
    assert {b.lease_id for b in stored} == set(ids)
    assert [broker.slot_status(s).bookings for s in slots] == [1] * ROUNDS
    # Each booking carries the winning process's client.
    for booking in stored:
        assert booking.client_information in {
            client_info(name).SerializeToString(deterministic=True) for name in clients
        }
    assert STATUS_FOR_REASON[Reason.LEASE_ALREADY_BOOKED] is grpc.StatusCode.ALREADY_EXISTS


def test_threads_consume_one_lease_exactly_once(make_broker):
    broker = make_broker(default_capacity=ROUNDS)
    for i in range(ROUNDS):
        lease = broker.create_lease(lease_request(client_reference=f"r{i}"))
        names = ["A", "B", "A", "C"]
        results = race(
            *(
                (
                    lambda n=n, lease=lease: outcome(
                        broker.create_booking, booking_request(lease.lease_id, n)
                    )
                )
                for n in names
            )
        )
        booked = {r.booking_id for r in results if not isinstance(r, Reason)}
        assert len(booked) == 1
        winner = broker.get_booking(booked.pop())
        for name, result in zip(names, results, strict=True):
            same = client_info(name).SerializeToString(deterministic=True)
            if same == winner.client_information:
                assert result.booking_id == winner.booking_id
            else:
                assert result is Reason.LEASE_ALREADY_BOOKED
    assert broker.slot_status(slot()).bookings == ROUNDS
    assert len(broker.list_bookings(MERCHANT)) == ROUNDS


# ================================================================ cancel vs reschedule

RACE_ROUNDS = 20
OPERATION_SETS = {
    "cancel-reschedule": ("cancel", "to-b"),
    "reschedule-reschedule": ("to-b", "to-c"),
    "cancel-reschedule-reschedule": ("cancel", "to-b", "to-c"),
    "cancel-cancel-reschedule": ("cancel", "cancel", "to-b"),
}


@pytest.mark.parametrize("ops", OPERATION_SETS.values(), ids=OPERATION_SETS.keys())
def test_cancel_and_reschedule_race_on_one_booking(broker, ops):
    for r in range(RACE_ROUNDS):
        base = START_NS + r * 10 * HOUR_NS
        a, b, c = (slot(start_ns=base + k * HOUR_NS) for k in range(3))
        lease = broker.create_lease(lease_request(client_reference=f"r{r}", start_ns=a.start_ns))
        booking_id = broker.create_booking(booking_request(lease.lease_id)).booking_id
        target = {"to-b": b, "to-c": c}

        def op(name: str, booking_id: str = booking_id, target: dict = target) -> Any:
            if name == "cancel":
                return outcome(broker.cancel_booking, booking_id)
            s = target[name]
            return outcome(broker.reschedule_booking, booking_id, s.start_ns, s.duration_ns)

        results = dict(enumerate(race(*(lambda n=n: op(n) for n in ops))))
        final = broker.get_booking(booking_id)
        holding = booked_slots(broker.client, broker, booking_id, [a, b, c])
        # The index lists the booking at the time its record says.
        index_ms = broker.client.zscore(broker.keys.booking_index(MERCHANT), booking_id)
        assert index_ms == final.slot.start_ns // 1_000_000

        for i, name in enumerate(ops):
            result = results[i]
            if name == "cancel":
                # A cancel always succeeds (moves are re-read, never reported).
                assert not isinstance(result, Reason), result
                assert result.status == "cancelled"
            else:
                assert not isinstance(result, Reason) or result is Reason.BOOKING_CANCELLED
        if "cancel" in ops:
            assert final.status == "cancelled"
            assert holding == []  # no occupancy anywhere
            moved = [
                target[ops[i]]
                for i, result in results.items()
                if ops[i] != "cancel" and not isinstance(result, Reason)
            ]
            # The record stays where the last successful move put it (a, if none did).
            assert final.slot in (moved or [a])
        else:
            assert final.status == "confirmed"
            assert holding == [final.slot]  # in exactly one slot: the record's
            assert all(not isinstance(res, Reason) for res in results.values())
            assert final.slot in (b, c)
        for s in (a, b, c):
            assert_within_capacity(broker, s, 1)


def test_reschedule_races_new_leases_for_the_last_spot(broker):
    """A booking moving into a capacity-1 slot and CreateLease calls for it: one wins."""
    for r in range(RACE_ROUNDS):
        base = START_NS + r * 10 * HOUR_NS
        a, b = slot(start_ns=base), slot(start_ns=base + HOUR_NS)
        lease = broker.create_lease(lease_request(client_reference=f"r{r}", start_ns=a.start_ns))
        booking_id = broker.create_booking(booking_request(lease.lease_id)).booking_id
        move = partial(outcome, broker.reschedule_booking, booking_id, b.start_ns, b.duration_ns)
        grabs = [
            partial(
                outcome,
                broker.create_lease,
                lease_request(client_reference=f"g{r}-{i}", start_ns=b.start_ns),
            )
            for i in range(4)
        ]
        moved, *leased = race(move, *grabs)
        winners = [x for x in [moved, *leased] if not isinstance(x, Reason)]
        assert len(winners) == 1, [moved, *leased]
        assert all(x is Reason.SLOT_FULL for x in [moved, *leased] if isinstance(x, Reason))
        final = broker.get_booking(booking_id)
        if isinstance(moved, Reason):
            assert final.slot == a
            assert booked_slots(broker.client, broker, booking_id, [a, b]) == [a]
        else:
            assert final.slot == b
            assert booked_slots(broker.client, broker, booking_id, [a, b]) == [b]
        for s in (a, b):
            assert_within_capacity(broker, s, 1)


def test_every_lease_ends_exactly_one_way(make_broker, clock, backend):
    """Bookings and releases land around each lease's expiry while sweepers run: every
    lease ends exactly one way (consumed, released or expired), its record, the call's
    outcome and the event stream agree, and lease.expired is never sent for a lease
    that was booked or released."""
    broker = make_broker(default_capacity=LEASES, default_hold_ms=120, max_hold_ms=120)
    leases = [broker.create_lease(lease_request(client_reference=f"r{i}")) for i in range(LEASES)]
    offsets = [-SPREAD_MS + (2 * SPREAD_MS * (i // 2)) // (LEASES // 2 - 1) for i in range(LEASES)]
    targets = [lease.expires_at_ms + off for lease, off in zip(leases, offsets, strict=True)]

    def attempt(i: int) -> Any:
        lease_id = leases[i].lease_id
        if i % 2 == 0:
            return outcome(broker.create_booking, booking_request(lease_id))
        return outcome(broker.release_lease, lease_id)

    stop = threading.Event()

    def sweep_until_stopped() -> None:
        own = type(broker)(broker.client, broker.config)
        while not stop.is_set():
            sweep_once(own)

    sweepers = [threading.Thread(target=sweep_until_stopped) for _ in range(2)]
    for thread in sweepers:
        thread.start()
    try:
        results = at_targets(backend, clock, targets, attempt)
    finally:
        stop.set()
        for thread in sweepers:
            thread.join(timeout=30)
    clock.pass_ms(max(lease.expires_at_ms for lease in leases))
    sweep_once(broker)

    ended = Counter()
    for entry in events(broker.client, broker):
        if entry["type"] in ("lease.consumed", "lease.released", "lease.expired"):
            ended[entry["lease_id"], entry["type"].split(".")[1]] += 1
    for i, (lease, result) in enumerate(zip(leases, results, strict=True)):
        state = broker.get_lease(lease.lease_id).state
        ways = {way: n for (lease_id, way), n in ended.items() if lease_id == lease.lease_id}
        assert ways == {state: 1}, (lease.lease_id, ways, state, result)
        if i % 2 == 0:
            assert state == ("expired" if result is Reason.LEASE_EXPIRED else "consumed")
            if state == "consumed":
                assert result.created_ms < lease.expires_at_ms
        else:
            assert not isinstance(result, Reason)
            assert result.state == state in ("released", "expired")
            if state == "released":
                assert result.ended_ms < lease.expires_at_ms
    assert broker.client.zcard(broker.keys.lease_index(MERCHANT)) == 0
    status = broker.slot_status(slot())
    assert status.holds == 0
    assert status.bookings == sum(
        1 for i, r in enumerate(results) if i % 2 == 0 and not isinstance(r, Reason)
    )


# ================================================================ release / extend / fence races


def test_release_after_consume_is_lease_consumed(broker):
    lease = broker.create_lease(lease_request())
    booking = broker.create_booking(booking_request(lease.lease_id))
    assert outcome(broker.release_lease, lease.lease_id) is Reason.LEASE_CONSUMED
    assert broker.get_booking(booking.booking_id).status == "confirmed"
    assert broker.slot_status(slot()).bookings == 1
    view = broker.get_lease(lease.lease_id)
    assert (view.state, view.booking_id) == ("consumed", booking.booking_id)


def test_release_and_consume_race_exactly_one_wins(broker):
    for r in range(RACE_ROUNDS):
        s = slot(start_ns=START_NS + r * HOUR_NS)
        lease = broker.create_lease(lease_request(client_reference=f"r{r}", start_ns=s.start_ns))
        released, booked = race(
            lambda lease=lease: outcome(broker.release_lease, lease.lease_id),
            lambda lease=lease: outcome(broker.create_booking, booking_request(lease.lease_id)),
        )
        view = broker.get_lease(lease.lease_id)
        status = broker.slot_status(s)
        if isinstance(booked, Reason):
            assert booked is Reason.LEASE_RELEASED
            assert released.state == "released" and view.state == "released"
            assert (status.holds, status.bookings) == (0, 0)
        else:
            assert released is Reason.LEASE_CONSUMED
            assert (view.state, view.booking_id) == ("consumed", booked.booking_id)
            assert (status.holds, status.bookings) == (0, 1)


def test_extend_after_expiry_is_refused(make_broker, clock):
    broker = make_broker(default_hold_ms=150, max_hold_ms=60_000)
    lease = broker.create_lease(lease_request())
    clock.pass_ms(lease.expires_at_ms)
    assert outcome(broker.extend_lease, lease.lease_id, 10_000) is Reason.LEASE_EXPIRED
    view = broker.get_lease(lease.lease_id)
    assert (view.state, view.expires_at_ms) == ("expired", lease.expires_at_ms)
    # Nothing was resurrected: the spot (capacity 1) is free for someone else.
    assert broker.create_lease(lease_request(client_reference="other")).fence == 2


def test_extend_races_expiry_without_resurrecting(make_broker, clock, backend):
    broker = make_broker(default_capacity=LEASES, default_hold_ms=120, max_hold_ms=60_000)
    leases = [broker.create_lease(lease_request(client_reference=f"r{i}")) for i in range(LEASES)]
    offsets = [-SPREAD_MS + (2 * SPREAD_MS * i) // (LEASES - 1) for i in range(LEASES)]
    targets = [lease.expires_at_ms + off for lease, off in zip(leases, offsets, strict=True)]

    def attempt(i: int) -> Any:
        return outcome(broker.extend_lease, leases[i].lease_id, 30_000)

    results = at_targets(backend, clock, targets, attempt)

    now = redis_now_ms(broker.client)
    live = 0
    for lease, result in zip(leases, results, strict=True):
        view = broker.get_lease(lease.lease_id)
        if isinstance(result, Reason):
            assert result is Reason.LEASE_EXPIRED
            assert (view.state, view.expires_at_ms) == ("expired", lease.expires_at_ms)
        else:
            assert result.expires_at_ms == lease.expires_at_ms + 30_000
            assert view.state == ("held" if view.expires_at_ms > now else "expired")
            live += view.state == "held"
    # Only extended leases still hold a spot.
    assert broker.slot_status(slot()).holds == live


def test_stale_fencing_token_loses_to_the_new_holder(make_broker, clock):
    broker = make_broker(default_hold_ms=150, max_hold_ms=60_000)
    old = broker.create_lease(lease_request(client_reference="old"))
    clock.pass_ms(old.expires_at_ms)  # the old holder "pauses" past its expiry
    new = broker.create_lease(lease_request(client_reference="new", **long_expiry()))
    assert (old.fence, new.fence) == (1, 2)
    results = race(
        lambda: outcome(broker.create_booking, booking_request(old.lease_id, expected_fence=1)),
        lambda: outcome(broker.extend_lease, old.lease_id, 1000, expected_fence=1),
        lambda: outcome(
            broker.create_booking, booking_request(new.lease_id, "Eve", expected_fence=1)
        ),
        lambda: outcome(broker.extend_lease, new.lease_id, 1000, expected_fence=1),
        lambda: outcome(broker.create_booking, booking_request(new.lease_id, expected_fence=2)),
    )
    assert results[0] is Reason.LEASE_EXPIRED
    assert results[1] is Reason.LEASE_EXPIRED
    assert results[2] in (Reason.FENCING_TOKEN_STALE, Reason.LEASE_ALREADY_BOOKED)
    assert results[3] in (Reason.FENCING_TOKEN_STALE, Reason.LEASE_CONSUMED)
    assert results[4].fence == 2 and results[4].status == "confirmed"
    assert [b.booking_id for b in broker.list_bookings(MERCHANT)] == [results[4].booking_id]
    assert broker.slot_status(slot()).bookings == 1


# ================================================================ lease + book storms

PAIRS = 50


@pytest.mark.parametrize("servers", [1, 2])
def test_concurrent_lease_and_book_pairs_book_exactly_capacity(make_broker, make_stub, servers):
    broker = make_broker(default_capacity=3)
    stubs = [make_stub(make_broker(default_capacity=3)) for _ in range(servers)]
    barrier = threading.Barrier(PAIRS)

    def pair(i: int) -> Any:
        stub = stubs[i % servers]
        request = pb.CreateLeaseRequest(lease=pb_lease(slot(), f"ref-{i}"))
        barrier.wait(timeout=60)
        lease = reply_or_status(stub.CreateLease, request)
        if isinstance(lease, StatusDetails):
            return ("lease", lease.code, lease.reason)
        booking = reply_or_status(
            stub.CreateBooking, create_booking_request(lease.lease.lease_id, client_info(f"c{i}"))
        )
        if isinstance(booking, StatusDetails):
            return ("booking", booking.code, booking.reason)
        return booking.booking.booking_id

    with ThreadPoolExecutor(max_workers=PAIRS) as pool:
        results = list(pool.map(pair, range(PAIRS)))
    booked = [r for r in results if isinstance(r, str)]
    refused = Counter(r for r in results if not isinstance(r, str))
    assert len(set(booked)) == len(booked) == 3
    assert refused == {("lease", grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOT_FULL"): PAIRS - 3}
    status = broker.slot_status(slot())
    assert (status.holds, status.bookings) == (0, 3)
    assert sorted(b.booking_id for b in broker.list_bookings(MERCHANT)) == sorted(booked)


def test_churn_never_exceeds_capacity(make_broker):
    """Threads lease, book, cancel and release on one capacity-3 slot while a watcher
    samples it: bookings plus live holds never exceed 3."""
    capacity, workers, steps = 3, 12, 25
    broker = make_broker(default_capacity=capacity)
    stop = threading.Event()
    samples: list[tuple[int, int]] = []

    def watch() -> None:
        while not stop.is_set():
            status = broker.slot_status(slot())
            samples.append((status.holds, status.bookings))

    def work(w: int) -> Counter:
        rng = random.Random(w)
        seen: Counter = Counter()
        for step in range(steps):
            lease = outcome(broker.create_lease, lease_request(client_reference=f"w{w}-{step}"))
            if isinstance(lease, Reason):
                seen[lease.value] += 1
                continue
            if rng.random() < 0.3:
                broker.release_lease(lease.lease_id)
                seen["released"] += 1
                continue
            booking = outcome(broker.create_booking, booking_request(lease.lease_id, f"w{w}"))
            assert not isinstance(booking, Reason), booking
            seen["booked"] += 1
            broker.cancel_booking(booking.booking_id)
        return seen

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            totals = sum(pool.map(work, range(workers)), Counter())
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert set(totals) <= {"booked", "released", "SLOT_FULL"}
    assert samples and all(holds + bookings <= capacity for holds, bookings in samples)
    status = broker.slot_status(slot())
    assert (status.holds, status.bookings) == (0, 0)
    assert sum(b.status == "confirmed" for b in broker.list_bookings(MERCHANT)) == 0
    assert len(broker.list_bookings(MERCHANT)) == totals["booked"]
