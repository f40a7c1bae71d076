"""The merchant event stream and the expiry sweeper, on fakeredis and the real Redis.

Events are read with XRANGE from ``broker.keys.events(merchant)``; their ``at_ms`` is
Redis's clock. The sweeper (``leasebroker.core.sweeper.sweep_once``) reports each expiry
exactly once however many callers run it, and correctness never depends on it.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from support import (
    HOUR_NS,
    MERCHANT,
    PAST_SHORT_HOLD_S,
    SHORT_HOLD,
    START_NS,
    booking_request,
    events,
    lease_request,
    long_expiry,
    race,
    race_in_processes,
    redis_now_ms,
    refusal,
    slot,
    sweep_in_process,
)

from leasebroker.core.errors import Reason
from leasebroker.core.model import BookingStatus, InventorySlot, LeaseState
from leasebroker.core.settings import EVENTS_OFF
from leasebroker.core.sweeper import SweeperThread, sweep_due, sweep_once

SHORT = {"default_hold_ms": 150, "max_hold_ms": 60_000}
# Fields every event of a type carries (besides "type").
EVENT_FIELDS = {
    "lease.created": {"lease_id", "slot", "fence", "expires_ms", "at_ms"},
    "lease.extended": {"lease_id", "slot", "fence", "expires_ms", "at_ms"},
    "lease.released": {"lease_id", "slot", "fence", "at_ms"},
    "lease.consumed": {"lease_id", "slot", "fence", "booking_id", "at_ms"},
    "lease.expired": {"lease_id", "slot", "fence", "expires_ms", "at_ms"},
    "booking.created": {"booking_id", "slot", "lease_id", "fence", "at_ms"},
    "booking.rescheduled": {"booking_id", "from_slot", "slot", "fence", "at_ms"},
    "booking.cancelled": {"booking_id", "slot", "lease_id", "fence", "at_ms"},
    "inventory.loaded": {"slots", "at_ms"},
    "inventory.capacity_set": {"slot", "capacity", "at_ms"},
}


def expired_events(client, broker, merchant: str = MERCHANT) -> list[dict]:
    return [e for e in events(client, broker, merchant) if e["type"] == "lease.expired"]


# ================================================================ the event stream


SCENARIO_SLOTS = tuple(slot(start_ns=START_NS + k * HOUR_NS) for k in range(3))


def scripted_scenario(broker, clock) -> tuple:
    """A change of every kind, each of which writes an event: the leases, the booking
    and the ``extend_lease`` result it made."""
    a, b, c = SCENARIO_SLOTS
    first = broker.create_lease(lease_request(client_reference="a"))
    extended = broker.extend_lease(first.lease_id, 1_000)
    broker.release_lease(first.lease_id)
    second = broker.create_lease(lease_request(client_reference="b", **long_expiry()))
    booking = broker.create_booking(booking_request(second.lease_id))
    broker.reschedule_booking(booking.booking_id, b.start_ns, b.duration_ns)
    broker.cancel_booking(booking.booking_id)
    broker.replace_inventory(
        MERCHANT, [InventorySlot(a, 1), InventorySlot(b, 1), InventorySlot(c, 2)]
    )
    assert broker.set_capacity(c, 5) == 2
    third = broker.create_lease(lease_request(client_reference="c", start_ns=c.start_ns))
    clock.pass_ms(third.expires_at_ms)
    assert sweep_once(broker) == 1
    return first, extended, second, booking, third


def test_scripted_scenario_emits_its_events_in_order(make_broker, redis_client, clock):
    broker = make_broker(**SHORT)
    a, b, c = SCENARIO_SLOTS
    before = clock.now_ms()
    first, extended, second, booking, third = scripted_scenario(broker, clock)
    after = clock.now_ms()

    stream = events(redis_client, broker)
    assert [e["type"] for e in stream] == [
        "lease.created",
        "lease.extended",
        "lease.released",
        "lease.created",
        "lease.consumed",
        "booking.created",
        "booking.rescheduled",
        "booking.cancelled",
        "inventory.loaded",
        "inventory.capacity_set",
        "lease.created",
        "lease.expired",
    ]
    for event in stream:
        assert set(event) - {"type"} == EVENT_FIELDS[event["type"]], event
    at = [int(e["at_ms"]) for e in stream]
    assert before <= at[0] and at == sorted(at) and at[-1] <= after

    def fields(i: int, *names: str) -> tuple:
        return tuple(stream[i][n] for n in names)

    lease_fields = ("lease_id", "slot", "fence", "expires_ms")
    assert fields(0, *lease_fields) == (first.lease_id, a.field(), "1", str(first.expires_at_ms))
    assert fields(1, *lease_fields) == (
        first.lease_id,
        a.field(),
        "1",
        str(extended.expires_at_ms),
    )
    assert extended.expires_at_ms == first.expires_at_ms + 1_000
    assert fields(2, "lease_id", "slot") == (first.lease_id, a.field())
    assert fields(3, *lease_fields) == (second.lease_id, a.field(), "2", str(second.expires_at_ms))
    assert fields(4, "lease_id", "slot", "fence", "booking_id") == (
        second.lease_id,
        a.field(),
        "2",
        booking.booking_id,
    )
    assert fields(5, "booking_id", "slot", "lease_id", "fence") == (
        booking.booking_id,
        a.field(),
        second.lease_id,
        "2",
    )
    assert int(stream[4]["at_ms"]) == int(stream[5]["at_ms"]) == booking.created_ms
    assert fields(6, "booking_id", "from_slot", "slot") == (
        booking.booking_id,
        a.field(),
        b.field(),
    )
    assert fields(7, "booking_id", "slot") == (booking.booking_id, b.field())
    assert stream[8]["slots"] == "3"
    assert fields(9, "slot", "capacity") == (c.field(), "5")
    assert fields(10, *lease_fields) == (third.lease_id, c.field(), "1", str(third.expires_at_ms))
    assert fields(11, *lease_fields) == (third.lease_id, c.field(), "1", str(third.expires_at_ms))
    assert int(stream[11]["at_ms"]) > third.expires_at_ms
    # A second pass finds nothing more to report.
    assert sweep_once(broker) == 0
    assert len(events(redis_client, broker)) == len(stream)


def test_with_the_streams_off_every_change_is_made_and_no_event_written(
    make_broker, redis_client, clock, key_prefix
):
    broker = make_broker(**SHORT, events_retention_ms=EVENTS_OFF)
    a, b, c = SCENARIO_SLOTS
    first, extended, second, booking, third = scripted_scenario(broker, clock)

    assert redis_client.exists(broker.keys.events(MERCHANT)) == 0
    assert not [k for k in redis_client.scan_iter(f"{key_prefix}:*") if k.endswith(b":events")]
    # Every change was made as with the streams on.
    assert extended.expires_at_ms == first.expires_at_ms + 1_000
    assert (first.fence, second.fence, third.fence) == (1, 2, 1)
    assert broker.get_lease(first.lease_id).state is LeaseState.RELEASED
    assert broker.get_lease(third.lease_id).state is LeaseState.EXPIRED
    cancelled = broker.get_booking(booking.booking_id)
    assert (cancelled.status, cancelled.slot) == (BookingStatus.CANCELLED, b)
    assert [broker.slot_status(s).capacity for s in (a, b, c)] == [1, 1, 5]
    assert broker.list_leases(MERCHANT) == []


def test_the_streams_turned_off_keep_what_they_hold(make_broker, redis_client):
    on = make_broker()
    on.create_lease(lease_request(client_reference="a"))
    off = make_broker(events_retention_ms=EVENTS_OFF)
    off.create_lease(lease_request(client_reference="b", start_ns=START_NS + HOUR_NS))
    assert [e["type"] for e in events(redis_client, off)] == ["lease.created"]


def test_changes_that_change_nothing_emit_nothing(make_broker, redis_client):
    broker = make_broker(max_hold_ms=3_600_000)
    lease = broker.create_lease(lease_request())
    broker.release_lease(lease.lease_id)
    again = broker.create_lease(lease_request(client_reference="b"))
    assert broker.create_lease(lease_request(client_reference="b")).replayed
    booking = broker.create_booking(booking_request(again.lease_id))
    broker.create_booking(booking_request(again.lease_id))  # replay
    broker.reschedule_booking(booking.booking_id, START_NS, booking.slot.duration_ns)  # same slot
    broker.cancel_booking(booking.booking_id)
    capped = broker.create_lease(
        lease_request(client_reference="c", start_ns=START_NS + HOUR_NS, **long_expiry())
    )
    view = broker.extend_lease(capped.lease_id, 10**9)  # up to its bound
    count = len(events(redis_client, broker))
    assert broker.extend_lease(capped.lease_id, 1_000) == view  # at the bound already
    broker.release_lease(lease.lease_id)
    broker.cancel_booking(booking.booking_id)
    broker.create_booking(booking_request(again.lease_id))
    assert len(events(redis_client, broker)) == count
    kinds = [e["type"] for e in events(redis_client, broker)]
    assert kinds.count("lease.created") == 3 and kinds.count("booking.created") == 1
    assert kinds.count("lease.extended") == 1


def test_concurrent_duplicates_emit_one_event(broker, redis_client):
    """The same release, booking or cancel from many threads at once: one event each."""
    threads = 8

    def at_once(action) -> list:
        return race(*[action] * threads)

    released = broker.create_lease(lease_request(client_reference="a"))
    assert {v.state for v in at_once(lambda: broker.release_lease(released.lease_id))} == {
        "released"
    }
    lease = broker.create_lease(lease_request(client_reference="b"))
    bookings = at_once(lambda: broker.create_booking(booking_request(lease.lease_id)))
    assert len({b.booking_id for b in bookings}) == 1
    assert sum(not b.replayed for b in bookings) == 1
    booking_id = bookings[0].booking_id
    assert {b.status for b in at_once(lambda: broker.cancel_booking(booking_id))} == {"cancelled"}

    kinds = Counter(e["type"] for e in events(redis_client, broker))
    assert kinds == {
        "lease.created": 2,
        "lease.released": 1,
        "lease.consumed": 1,
        "booking.created": 1,
        "booking.cancelled": 1,
    }


def test_event_streams_are_per_merchant(broker, redis_client):
    broker.create_lease(lease_request())
    other = broker.create_lease(lease_request(merchant_id="merchant-2"))
    assert [e["type"] for e in events(redis_client, broker)] == ["lease.created"]
    theirs = events(redis_client, broker, "merchant-2")
    assert [(e["type"], e["lease_id"]) for e in theirs] == [("lease.created", other.lease_id)]


def test_event_stream_keeps_entries_by_age(make_broker, redis_client, backend, clock):
    """Streams are trimmed by age (MINID), not by count: a burst stays whole while it is
    younger than the retention, and once older it goes at the next append (approximate
    trimming drops whole stream nodes: at most about one node of old entries remains)."""
    broker = make_broker(events_retention_ms=2_000)
    for i in range(150):
        lease = broker.create_lease(lease_request(client_reference=f"r{i}"))
        broker.release_lease(lease.lease_id)
    stream = broker.keys.events(MERCHANT)
    assert redis_client.xlen(stream) == 300  # all younger than the retention
    clock.advance(2.2)
    last = broker.create_lease(lease_request(client_reference="last"))
    node = 100
    if backend == "real":
        node = int(redis_client.config_get("stream-node-max-entries")["stream-node-max-entries"])
    assert 1 <= redis_client.xlen(stream) <= node + 1
    assert events(redis_client, broker)[-1]["lease_id"] == last.lease_id


# ================================================================ the sweeper


def test_sweep_marks_only_expired_leases_and_cleans_the_index(make_broker, redis_client, clock):
    broker = make_broker(default_capacity=10, **SHORT)
    short = [broker.create_lease(lease_request(client_reference=f"s{i}")) for i in range(4)]
    live = [
        broker.create_lease(lease_request(client_reference=f"l{i}", **long_expiry()))
        for i in range(3)
    ]
    clock.pass_ms(max(lease.expires_at_ms for lease in short))
    index = broker.keys.lease_index(MERCHANT)
    assert redis_client.zcard(index) == 7

    assert sweep_once(broker) == 4
    assert {e["lease_id"] for e in expired_events(redis_client, broker)} == {
        lease.lease_id for lease in short
    }
    assert {m.decode() for m in redis_client.zrange(index, 0, -1)} == {
        lease.lease_id for lease in live
    }
    for lease in short:
        assert redis_client.hget(broker.keys.lease(MERCHANT, lease.lease_id.split(".")[2]),
                                 "state") == b"expired"  # fmt: skip
        assert broker.get_lease(lease.lease_id).state == "expired"
    # Live leases are left alone, still holding their spots.
    assert [broker.get_lease(lease.lease_id).state for lease in live] == ["held"] * 3
    assert broker.slot_status(slot()).holds == 3
    assert {v.lease_id for v in broker.list_leases(MERCHANT)} == {x.lease_id for x in live}
    assert sweep_once(broker) == 0
    assert len(expired_events(redis_client, broker)) == 4


def test_sweep_leaves_extended_leases_alone(make_broker, redis_client, clock):
    broker = make_broker(**SHORT)
    lease = broker.create_lease(lease_request())
    extended = broker.extend_lease(lease.lease_id, 30_000)
    clock.pass_ms(lease.expires_at_ms)  # past the original expiry, not the extended one
    assert sweep_once(broker) == 0
    assert expired_events(redis_client, broker) == []
    view = broker.get_lease(lease.lease_id)
    assert (view.state, view.expires_at_ms) == ("held", extended.expires_at_ms)
    index = broker.keys.lease_index(MERCHANT)
    assert redis_client.zscore(index, lease.lease_id) == extended.expires_at_ms


def test_sweep_ignores_leases_that_ended_otherwise(make_broker, redis_client, clock):
    broker = make_broker(default_capacity=3, **SHORT)
    released = broker.create_lease(lease_request(client_reference="r"))
    broker.release_lease(released.lease_id)
    consumed = broker.create_lease(lease_request(client_reference="c"))
    broker.create_booking(booking_request(consumed.lease_id))
    clock.pass_ms(max(released.expires_at_ms, consumed.expires_at_ms))
    assert sweep_once(broker) == 0
    assert expired_events(redis_client, broker) == []
    assert broker.get_lease(released.lease_id).state == "released"
    assert broker.get_lease(consumed.lease_id).state == "consumed"
    assert redis_client.zcard(broker.keys.lease_index(MERCHANT)) == 0


def test_sweep_drops_an_index_entry_whose_record_is_gone(make_broker, redis_client, clock):
    broker = make_broker(default_capacity=2, **SHORT)
    gone = broker.create_lease(lease_request(client_reference="gone"))
    kept = broker.create_lease(lease_request(client_reference="kept"))
    redis_client.delete(broker.keys.lease(MERCHANT, gone.lease_id.split(".")[2]))
    clock.pass_ms(max(gone.expires_at_ms, kept.expires_at_ms))
    assert sweep_once(broker) == 1
    assert [e["lease_id"] for e in expired_events(redis_client, broker)] == [kept.lease_id]
    assert redis_client.zcard(broker.keys.lease_index(MERCHANT)) == 0
    assert refusal(broker.get_lease, gone.lease_id).reason is Reason.LEASE_NOT_FOUND


def test_sweep_respects_the_batch_size(make_broker, redis_client, clock):
    broker = make_broker(default_capacity=12, **SHORT)
    leases = [broker.create_lease(lease_request(client_reference=f"r{i}")) for i in range(12)]
    clock.pass_ms(max(lease.expires_at_ms for lease in leases))
    assert [sweep_once(broker, batch=5) for _ in range(4)] == [5, 5, 2, 0]
    assert len(expired_events(redis_client, broker)) == 12


def test_sweep_walks_every_registered_merchant(make_broker, redis_client, clock):
    broker = make_broker(**SHORT)
    ours = broker.create_lease(lease_request())
    theirs = broker.create_lease(lease_request(merchant_id="merchant-2"))
    assert {MERCHANT, "merchant-2"} <= set(broker.merchants())
    clock.pass_ms(max(ours.expires_at_ms, theirs.expires_at_ms))
    assert sweep_once(broker) == 2
    assert [e["lease_id"] for e in expired_events(redis_client, broker)] == [ours.lease_id]
    assert [e["lease_id"] for e in expired_events(redis_client, broker, "merchant-2")] == [
        theirs.lease_id
    ]


def test_correct_without_the_sweeper(make_broker, redis_client, clock):
    """An expired hold stops counting at its expiry even if it is never swept."""
    broker = make_broker(**SHORT)
    old = broker.create_lease(lease_request(client_reference="old"))
    clock.pass_ms(old.expires_at_ms)
    assert broker.slot_status(slot()).holds == 0
    assert broker.get_lease(old.lease_id).state == "expired"
    assert refusal(broker.create_booking, booking_request(old.lease_id)).reason is (
        Reason.LEASE_EXPIRED
    )
    new = broker.create_lease(lease_request(client_reference="new", **long_expiry()))
    assert new.fence == 2
    assert broker.create_booking(booking_request(new.lease_id)).status == "confirmed"
    assert broker.slot_status(slot()).bookings == 1
    # Never swept: no event and the stale index entry is still there, harmlessly.
    assert expired_events(redis_client, broker) == []
    assert redis_client.zscore(broker.keys.lease_index(MERCHANT), old.lease_id) is not None
    # A late sweep still reports it, once, and leaves the booking alone.
    assert sweep_once(broker) == 1
    assert [e["lease_id"] for e in expired_events(redis_client, broker)] == [old.lease_id]
    assert broker.slot_status(slot()).bookings == 1


EXPIRING = 30


def test_concurrent_sweeps_report_each_expiry_once(make_broker, redis_client, clock):
    broker = make_broker(default_capacity=EXPIRING, **SHORT)
    leases = [broker.create_lease(lease_request(client_reference=f"r{i}")) for i in range(EXPIRING)]
    clock.pass_ms(max(lease.expires_at_ms for lease in leases))
    threads = 8

    def sweeper() -> int:
        # Each thread its own broker, as separate serve processes would have.
        own = type(broker)(broker.client, broker.config)
        return sum(sweep_once(own, batch=7) for _ in range(6))

    total = sum(race(*[sweeper] * threads))
    assert total == EXPIRING
    reported = [e["lease_id"] for e in expired_events(redis_client, broker)]
    assert sorted(reported) == sorted(lease.lease_id for lease in leases)
    assert redis_client.zcard(broker.keys.lease_index(MERCHANT)) == 0


@pytest.mark.parametrize("backend", ["real"])
def test_two_sweeping_processes_report_each_expiry_once(redis_client, key_prefix, make_broker):
    broker = make_broker(default_capacity=EXPIRING, **SHORT)
    leases = [broker.create_lease(lease_request(client_reference=f"r{i}")) for i in range(EXPIRING)]
    while redis_now_ms(redis_client) <= max(lease.expires_at_ms for lease in leases):
        time.sleep(0.05)
    totals = race_in_processes(sweep_in_process, [(key_prefix, 4), (key_prefix, 4)])
    assert sum(totals) == EXPIRING
    reported = [e["lease_id"] for e in expired_events(redis_client, broker)]
    assert sorted(reported) == sorted(lease.lease_id for lease in leases)
    assert redis_client.zcard(broker.keys.lease_index(MERCHANT)) == 0


def test_sweeper_thread_reports_expiries(make_broker, redis_client, clock):
    broker = make_broker(**SHORT)
    lease = broker.create_lease(lease_request())
    clock.pass_ms(lease.expires_at_ms)
    thread = SweeperThread(broker, interval_s=0.02)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not expired_events(redis_client, broker) and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        thread.stop()
    assert not thread.is_alive()
    assert [e["lease_id"] for e in expired_events(redis_client, broker)] == [lease.lease_id]


# ================================================================ the due index


def counting(broker) -> Counter:
    """Count the Redis commands the broker's client sends from now on."""
    sent: Counter = Counter()
    original = broker.client.execute_command

    def execute(*args, **kwargs):
        sent[str(args[0]).upper()] += 1
        return original(*args, **kwargs)

    broker.client.execute_command = execute
    return sent


def test_an_idle_sweeper_pass_costs_two_calls_whatever_the_merchants(make_broker):
    broker = make_broker()
    for i in range(300):
        broker.register_merchant(f"m-{i}")
    sent = counting(broker)
    assert sweep_due(broker) == 0
    assert sum(sent.values()) == 2, sent  # TIME and ZRANGEBYSCORE of the due index


def test_the_due_index_leads_the_sweeper_to_expired_leases(make_broker, redis_client, clock):
    broker = make_broker(default_hold_ms=150, max_hold_ms=60_000)
    for i in range(3):
        broker.create_lease(lease_request(merchant_id=f"m-{i}", client_reference="r"))
    long = broker.create_lease(lease_request(merchant_id="m-long", **long_expiry()))
    assert sweep_due(broker) == 0  # nothing is due yet
    clock.advance(PAST_SHORT_HOLD_S)
    assert sweep_due(broker) == 3
    assert sweep_due(broker) == 0
    # Swept merchants left the index; the one with a live lease waits at its expiry.
    due = dict(redis_client.zrange(broker.keys.due(), 0, -1, withscores=True))
    assert due == {b"m-long": float(long.expires_at_ms)}


def test_the_full_pass_finds_what_a_lost_index_write_left_behind(make_broker, redis_client, clock):
    broker = make_broker(**SHORT_HOLD)
    broker.create_lease(lease_request(client_reference="r"))
    redis_client.delete(broker.keys.due())  # as if the ZADD after the script were lost
    clock.advance(PAST_SHORT_HOLD_S)
    assert sweep_due(broker) == 0
    assert sweep_once(broker) == 1  # serve runs one at start and every FULL_PASS_S


def test_serve_s_sweeper_thread_makes_full_passes_too(make_broker, redis_client, clock):
    broker = make_broker(**SHORT_HOLD)
    broker.create_lease(lease_request(client_reference="r"))
    redis_client.delete(broker.keys.due())
    clock.advance(PAST_SHORT_HOLD_S)
    thread = SweeperThread(broker, interval_s=0.05, full_pass_s=0.2)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not [e for e in events(redis_client, broker) if e["type"] == "lease.expired"]:
            assert time.monotonic() < deadline, "no full pass swept the lease"
            time.sleep(0.05)
    finally:
        thread.stop()
