"""CreateLease through the library (LeaseBroker.create_lease), on fakeredis and real Redis.

Times: slot start and requested expiry in ns since the epoch, lease expiry in ms.
Clock-dependent tests compare against Redis's own clock (TIME), never the wall
clock of the test. Holds expire without long sleeps: on fakeredis the test moves
``time.time`` (fakeredis derives TIME and key expiry from it); on real Redis the
holds last 150 ms and the test sleeps 0.3 s.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter

import pytest
import redis
from support import (
    PAST_SHORT_HOLD_S,
    SHORT_HOLD,
    SLOT_FIELDS,
    START_NS,
    booking_request,
    lease_in_process,
    lease_request,
    race,
    race_in_processes,
    redis_now_ms,
    refusal,
    slot,
    stored_keys,
)

from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import IdKind, parse_public_id
from leasebroker.core.model import InventorySlot, Lease, LeaseRequest
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.units import NS_PER_MS, NS_PER_S
from leasebroker.core.validation import MAX_INSTANT_NS, MAX_SLOT_DURATION_NS, MIN_INSTANT_NS

# ---------------------------------------------------------------- capacity


@pytest.mark.parametrize("capacity", [1, 3])
def test_capacity_grants_k_leases_with_fences_1_to_k(make_broker, capacity):
    broker = make_broker(default_capacity=capacity)
    leases = [
        broker.create_lease(lease_request(client_reference=f"ref-{i}")) for i in range(capacity)
    ]
    assert [lease.fence for lease in leases] == list(range(1, capacity + 1))
    assert len({lease.lease_id for lease in leases}) == capacity
    for i, lease in enumerate(leases):
        assert not lease.replayed
        assert lease.slot == slot()
        assert lease.client_reference == f"ref-{i}"
        parsed = parse_public_id(lease.lease_id, IdKind.LEASE)
        assert parsed is not None and parsed.merchant_id == "merchant-1"
    error = refusal(broker.create_lease, lease_request(client_reference="one-too-many"))
    assert error.reason is Reason.SLOT_FULL


def test_lease_echoes_the_request(broker):
    req = lease_request(staff_id="st-1", room_id="rm-1", availability_tag="tag-7")
    lease = broker.create_lease(req)
    assert isinstance(lease, Lease)
    assert (lease.slot, lease.client_reference, lease.availability_tag) == (
        req.slot,
        "ref-1",
        "tag-7",
    )
    assert lease.expires_at_ns == lease.expires_at_ms * NS_PER_MS


@pytest.mark.parametrize(
    "change",
    [
        {"merchant_id": "merchant-2"},
        {"service_id": "colour"},
        {"start_ns": START_NS + 1800 * NS_PER_S},
        {"start_ns": START_NS + 1},
        {"duration_ns": 3600 * NS_PER_S},
        {"duration_ns": 1800 * NS_PER_S + 1},
        {"staff_id": "anna"},
        {"room_id": "room-2"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_slots_differing_in_one_field_are_independent(broker, change):
    broker.create_lease(lease_request())
    assert (
        refusal(broker.create_lease, lease_request(client_reference="ref-2")).reason
        is Reason.SLOT_FULL
    )
    other = broker.create_lease(lease_request(client_reference="ref-2", **change))
    assert other.fence == 1
    assert (
        refusal(broker.create_lease, lease_request(client_reference="ref-3", **change)).reason
        is Reason.SLOT_FULL
    )


def test_without_inventory_or_default_capacity_the_merchant_is_unknown(make_broker):
    broker = make_broker(default_capacity=0)
    error = refusal(broker.create_lease, lease_request())
    assert error.reason is Reason.UNKNOWN_MERCHANT
    assert [v.field for v in error.violations] == ["merchant_id"]


def test_a_known_service_s_unlisted_slot_is_not_offered_an_unknown_service_is_unknown(
    make_broker,
):
    broker = make_broker(default_capacity=0)
    broker.replace_inventory("merchant-1", [InventorySlot(slot(service_id="cut"), 1)])
    other_time = lease_request(service_id="cut", start_ns=START_NS + 3600 * NS_PER_S)
    assert refusal(broker.create_lease, other_time).reason is Reason.SLOT_NOT_OFFERED
    other_staff = lease_request(service_id="cut", staff_id="bob")
    assert refusal(broker.create_lease, other_staff).reason is Reason.SLOT_NOT_OFFERED
    unknown = refusal(broker.create_lease, lease_request(service_id="colour"))
    assert unknown.reason is Reason.UNKNOWN_SERVICE
    assert [v.field for v in unknown.violations] == ["service_id"]
    # set_capacity makes a service known too.
    broker.set_capacity(slot(service_id="colour", start_ns=START_NS + 1), 1)
    again = refusal(broker.create_lease, lease_request(service_id="colour"))
    assert again.reason is Reason.SLOT_NOT_OFFERED


def test_a_withdrawn_merchant_offers_nothing_it_is_not_unknown(make_broker):
    broker = make_broker(default_capacity=0)
    broker.replace_inventory("merchant-1", [])
    assert refusal(broker.create_lease, lease_request()).reason is Reason.SLOT_NOT_OFFERED


def test_inventory_decides_capacity_for_its_merchant(make_broker):
    broker = make_broker(default_capacity=1)
    listed, empty = slot(service_id="listed"), slot(service_id="empty")
    assert (
        broker.replace_inventory("merchant-1", [InventorySlot(listed, 2), InventorySlot(empty, 0)])
        == 2
    )

    assert broker.create_lease(lease_request(service_id="listed", client_reference="a")).fence == 1
    assert broker.create_lease(lease_request(service_id="listed", client_reference="b")).fence == 2
    full = refusal(broker.create_lease, lease_request(service_id="listed", client_reference="c"))
    assert full.reason is Reason.SLOT_FULL
    assert (
        refusal(broker.create_lease, lease_request(service_id="empty")).reason is Reason.SLOT_FULL
    )
    unlisted = refusal(broker.create_lease, lease_request(service_id="unlisted"))
    assert unlisted.reason is Reason.UNKNOWN_SERVICE
    # The same slot but another staff member is another, unlisted slot.
    assert (
        refusal(broker.create_lease, lease_request(service_id="listed", staff_id="x")).reason
        is Reason.SLOT_NOT_OFFERED
    )

    # Another merchant keeps the default capacity of 1.
    broker.create_lease(lease_request(merchant_id="merchant-2", service_id="unlisted"))
    other_full = refusal(
        broker.create_lease,
        lease_request(merchant_id="merchant-2", service_id="unlisted", client_reference="z"),
    )
    assert other_full.reason is Reason.SLOT_FULL


def test_inventory_offers_slots_when_default_capacity_is_zero(make_broker):
    broker = make_broker(default_capacity=0)
    broker.replace_inventory("merchant-1", [InventorySlot(slot(), 1)])
    assert broker.create_lease(lease_request()).fence == 1
    assert (
        refusal(broker.create_lease, lease_request(merchant_id="merchant-2")).reason
        is Reason.UNKNOWN_MERCHANT
    )


def test_replacing_inventory_drops_old_slots(make_broker):
    broker = make_broker(default_capacity=5)
    old, new = slot(service_id="old"), slot(service_id="new")
    broker.replace_inventory("merchant-1", [InventorySlot(old, 1)])
    assert broker.replace_inventory("merchant-1", [InventorySlot(new, 1)]) == 1
    assert (
        refusal(broker.create_lease, lease_request(service_id="old")).reason
        is Reason.UNKNOWN_SERVICE
    )
    assert broker.create_lease(lease_request(service_id="new")).fence == 1


def test_lower_inventory_capacity_counts_existing_holds(make_broker):
    broker = make_broker(default_capacity=0)
    broker.replace_inventory("merchant-1", [InventorySlot(slot(), 3)])
    broker.create_lease(lease_request(client_reference="a"))
    broker.create_lease(lease_request(client_reference="b"))
    broker.replace_inventory("merchant-1", [InventorySlot(slot(), 2)])
    assert (
        refusal(broker.create_lease, lease_request(client_reference="c")).reason is Reason.SLOT_FULL
    )


# ---------------------------------------------------------------- idempotency


def test_replay_returns_the_same_lease_without_a_second_hold(make_broker):
    broker = make_broker(default_capacity=2)
    first = broker.create_lease(lease_request())
    again = broker.create_lease(lease_request())
    assert not first.replayed and again.replayed
    assert (again.lease_id, again.expires_at_ms, again.fence) == (
        first.lease_id,
        first.expires_at_ms,
        first.fence,
    )
    # The replay did not take the second spot.
    assert broker.create_lease(lease_request(client_reference="ref-2")).fence == 2
    assert (
        refusal(broker.create_lease, lease_request(client_reference="ref-3")).reason
        is Reason.SLOT_FULL
    )
    # A replay still answers once the slot is full.
    assert broker.create_lease(lease_request()).lease_id == first.lease_id


def test_replay_with_a_requested_expiry(broker):
    req = lease_request(requested_expiry_ns=time.time_ns() + 60 * NS_PER_S)
    first = broker.create_lease(req)
    again = broker.create_lease(req)
    assert again.replayed and again.lease_id == first.lease_id
    assert again.expires_at_ms == first.expires_at_ms


@pytest.mark.parametrize(
    "change",
    [
        {"service_id": "colour"},
        {"start_ns": START_NS + 1800 * NS_PER_S},
        {"start_ns": START_NS + 1},
        {"duration_ns": 3600 * NS_PER_S},
        {"staff_id": "anna"},
        {"room_id": "room-2"},
        {"availability_tag": "other-tag"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_same_reference_for_another_request_is_in_use(make_broker, change):
    broker = make_broker(default_capacity=5)
    first = broker.create_lease(lease_request())
    assert (
        refusal(broker.create_lease, lease_request(**change)).reason
        is Reason.CLIENT_REFERENCE_IN_USE
    )
    # Nothing was held for the refused request, and the original still replays.
    assert broker.create_lease(lease_request()).lease_id == first.lease_id
    assert broker.create_lease(lease_request(client_reference="ref-2")).fence == 2


@pytest.mark.parametrize("later_ns", [1, 60 * NS_PER_S], ids=["1ns", "1min"])
def test_a_retry_with_another_requested_expiry_returns_the_original_lease(make_broker, later_ns):
    """Google recomputes lease_expiration_time on a retry: same slot and reference, so
    the same lease, with its original expiry (nothing more is held)."""
    broker = make_broker(default_capacity=5)
    expiry = time.time_ns() + 60 * NS_PER_S
    first = broker.create_lease(lease_request(requested_expiry_ns=expiry))
    for requested in (expiry + later_ns, None):
        again = broker.create_lease(lease_request(requested_expiry_ns=requested))
        assert again.replayed and again.lease_id == first.lease_id
        assert again.expires_at_ms == first.expires_at_ms
    assert broker.create_lease(lease_request(client_reference="ref-2")).fence == 2


def test_reference_is_free_again_after_expiry(make_broker, clock):
    broker = make_broker(default_capacity=2, **SHORT_HOLD)
    first = broker.create_lease(lease_request())
    broker.create_lease(lease_request(client_reference="ref-2"))
    clock.advance(PAST_SHORT_HOLD_S)
    # The same request is now a new lease, not a replay.
    again = broker.create_lease(lease_request())
    assert not again.replayed and again.lease_id != first.lease_id
    assert again.fence == 3
    # And the other reference may now be used for a different request.
    other = broker.create_lease(lease_request(client_reference="ref-2", staff_id="anna"))
    assert not other.replayed


# ---------------------------------------------------------------- expiry rules


def test_default_hold(make_broker, redis_client):
    broker = make_broker(default_hold_ms=60_000, max_hold_ms=120_000)
    before = redis_now_ms(redis_client)
    lease = broker.create_lease(lease_request())
    after = redis_now_ms(redis_client)
    assert before + 60_000 <= lease.expires_at_ms <= after + 60_000


def test_requested_expiry_within_max_is_honoured_to_the_ms(make_broker):
    broker = make_broker(default_hold_ms=60_000, max_hold_ms=600_000)
    requested = time.time_ns() + 90 * NS_PER_S + 123_456_789
    lease = broker.create_lease(lease_request(requested_expiry_ns=requested))
    assert lease.expires_at_ms == requested // NS_PER_MS


def test_requested_expiry_shorter_than_default_is_honoured(make_broker):
    broker = make_broker(default_hold_ms=600_000, max_hold_ms=600_000)
    requested = time.time_ns() + 30 * NS_PER_S + 999_999
    lease = broker.create_lease(lease_request(requested_expiry_ns=requested))
    assert lease.expires_at_ms == requested // NS_PER_MS


def test_requested_expiry_beyond_max_is_shortened(make_broker, redis_client):
    broker = make_broker(default_hold_ms=60_000, max_hold_ms=120_000)
    before = redis_now_ms(redis_client)
    lease = broker.create_lease(lease_request(requested_expiry_ns=time.time_ns() + 3600 * NS_PER_S))
    after = redis_now_ms(redis_client)
    assert before + 120_000 <= lease.expires_at_ms <= after + 120_000


@pytest.mark.parametrize("requested", [None, "after-start"])
def test_hold_never_ends_after_the_slot_starts(make_broker, requested):
    broker = make_broker(default_hold_ms=600_000, max_hold_ms=1_200_000)
    start = time.time_ns() + 60 * NS_PER_S + 700_001  # not on a whole ms
    expiry = None if requested is None else start + 300 * NS_PER_S
    lease = broker.create_lease(lease_request(start_ns=start, requested_expiry_ns=expiry))
    assert lease.expires_at_ms == start // NS_PER_MS


@pytest.mark.parametrize("ago_ns", [1 * NS_PER_S, 3600 * NS_PER_S, time.time_ns()])
def test_requested_expiry_in_the_past_is_refused(broker, ago_ns):
    error = refusal(broker.create_lease, lease_request(requested_expiry_ns=time.time_ns() - ago_ns))
    assert error.reason is Reason.EXPIRY_NOT_IN_FUTURE
    # Nothing was held: the single spot is still free.
    assert broker.create_lease(lease_request(client_reference="ref-2")).fence == 1


@pytest.mark.parametrize(
    "start_ns",
    [time.time_ns() - NS_PER_S, time.time_ns() - 86_400 * NS_PER_S, 0],
    ids=["1s-ago", "yesterday", "epoch"],
)
def test_start_in_the_past_is_refused(broker, start_ns):
    error = refusal(broker.create_lease, lease_request(start_ns=start_ns))
    assert error.reason is Reason.START_TIME_PASSED


@pytest.mark.parametrize("start_ns", [-1, -(2**63)], ids=["before-epoch", "int64-min"])
def test_start_before_1970_is_an_invalid_field(broker, start_ns):
    error = refusal(broker.create_lease, lease_request(start_ns=start_ns))
    assert error.reason is Reason.INVALID_FIELD
    assert [v.field for v in error.violations] == ["start_time"]


def test_far_future_start_is_accepted(broker):
    start = 2**63 - 1  # the latest instant int64 nanoseconds can hold (year 2262)
    assert broker.create_lease(lease_request(start_ns=start)).slot.start_ns == start


# Regression: instants outside int64 nanoseconds once escaped as a raw OverflowError.


def test_earliest_valid_start_is_refused_as_passed(broker):
    error = refusal(broker.create_lease, lease_request(start_ns=MIN_INSTANT_NS))
    assert error.reason in (Reason.START_TIME_PASSED, Reason.INVALID_FIELD)


def test_latest_valid_start_gives_a_lease_or_a_broker_error(broker):
    try:
        assert (
            broker.create_lease(lease_request(start_ns=MAX_INSTANT_NS)).slot.start_ns
            == MAX_INSTANT_NS
        )
    except BrokerError as exc:
        assert exc.reason is Reason.INVALID_FIELD


def test_latest_valid_expiry_gives_a_lease_or_a_broker_error(broker):
    try:
        lease = broker.create_lease(lease_request(requested_expiry_ns=MAX_INSTANT_NS))
    except BrokerError as exc:
        assert exc.reason is Reason.INVALID_FIELD
    else:
        assert lease.expires_at_ms <= START_NS // NS_PER_MS


# ---------------------------------------------------------------- expiry frees the spot


def test_expired_hold_frees_the_spot(make_broker, clock):
    broker = make_broker(default_capacity=1, **SHORT_HOLD)
    broker.create_lease(lease_request(client_reference="a"))
    assert (
        refusal(broker.create_lease, lease_request(client_reference="b")).reason is Reason.SLOT_FULL
    )
    clock.advance(PAST_SHORT_HOLD_S)
    later = broker.create_lease(lease_request(client_reference="b"))
    assert later.fence == 2  # fencing tokens keep growing across expiries


def test_expired_hold_does_not_count_while_its_key_exists(make_broker, redis_client, clock):
    """A short hold sits in the same occupancy key as a long one, which keeps the key alive."""
    broker = make_broker(default_capacity=2, default_hold_ms=150, max_hold_ms=60_000)
    short = broker.create_lease(lease_request(client_reference="short"))
    broker.create_lease(
        lease_request(client_reference="long", requested_expiry_ns=time.time_ns() + 30 * NS_PER_S)
    )
    clock.advance(PAST_SHORT_HOLD_S)
    occupancy = broker.keys.slot(slot())
    assert redis_client.zscore(occupancy, short.lease_id) is not None, "premise: key still there"
    assert broker.create_lease(lease_request(client_reference="c")).fence == 3
    assert (
        refusal(broker.create_lease, lease_request(client_reference="d")).reason is Reason.SLOT_FULL
    )


def test_stale_member_in_a_persistent_key_does_not_count(broker, redis_client):
    occupancy = broker.keys.slot(slot())
    now = redis_now_ms(redis_client)
    redis_client.zadd(occupancy, {"l.stale.hold": now - 1})
    assert redis_client.ttl(occupancy) == -1  # no TTL: only the score says it has expired
    broker.create_lease(lease_request())
    # A live member written the same way does count: the check above is not vacuous.
    other = slot(service_id="other")
    redis_client.zadd(broker.keys.slot(other), {"l.live.hold": now + 60_000})
    error = refusal(
        broker.create_lease, lease_request(service_id="other", client_reference="ref-2")
    )
    assert error.reason is Reason.SLOT_FULL


# ---------------------------------------------------------------- validation

ID_FIELDS = {
    "merchant_id": "merchant_id",
    "service_id": "service_id",
    "client_reference": "client_reference",
    "staff_id": "staff_id",
    "room_id": "room_id",
    "availability_tag": "availability_tag",
}
REQUIRED_IDS = {"merchant_id", "service_id", "client_reference"}
BAD_IDS = {
    "257-ascii": "x" * 257,
    "257-bytes-2-byte-chars": "é" * 128 + "x",
    "257-bytes-3-byte-chars": "x" + "日" * 85 + "x",
    "257-bytes-emoji": "😀" * 64 + "x",
    "nul": "a\x00b",
    "newline": "a\nb",
    "carriage-return": "a\r",
    "tab": "\t",
    "escape": "\x1b[0m",
    "del": "a\x7f",
    "c1-control": "a\x85",
    "lone-surrogate": "a\ud800",
}
GOOD_IDS = {
    "256-ascii": "x" * 256,
    "256-bytes-2-byte-chars": "é" * 128,
    "256-bytes-3-byte-chars": "x" + "日" * 85,
    "256-bytes-emoji": "😀" * 64,
    "hostile-punctuation": "{a}:b%2A* ?[x]",
    "one-space": " ",
}
assert all(len(v.encode("utf-8", "surrogatepass")) == 257 for v in list(BAD_IDS.values())[:4])
assert all(len(v.encode()) == 256 for v in list(GOOD_IDS.values())[:4])


def assert_invalid(broker: LeaseBroker, req: LeaseRequest, *fields_named: str) -> None:
    error = refusal(broker.create_lease, req)
    assert error.reason is Reason.INVALID_FIELD
    assert {v.field for v in error.violations} == set(fields_named)


@pytest.mark.parametrize("value", BAD_IDS.values(), ids=BAD_IDS.keys())
@pytest.mark.parametrize("name", ID_FIELDS)
def test_bad_ids_are_invalid(broker, redis_client, key_prefix, name, value):
    assert_invalid(broker, lease_request(**{name: value}), ID_FIELDS[name])
    assert stored_keys(redis_client, key_prefix) == []


@pytest.mark.parametrize("name", sorted(REQUIRED_IDS))
def test_required_ids_must_not_be_empty(broker, redis_client, key_prefix, name):
    assert_invalid(broker, lease_request(**{name: ""}), ID_FIELDS[name])
    assert stored_keys(redis_client, key_prefix) == []


@pytest.mark.parametrize("name", sorted(set(ID_FIELDS) - REQUIRED_IDS))
def test_optional_ids_may_be_empty(broker, name):
    assert broker.create_lease(lease_request(**{name: ""})).fence == 1


@pytest.mark.parametrize("value", GOOD_IDS.values(), ids=GOOD_IDS.keys())
@pytest.mark.parametrize("name", ID_FIELDS)
def test_ids_at_the_limit_are_accepted(broker, name, value):
    lease = broker.create_lease(lease_request(**{name: value}))
    assert lease.fence == 1
    echoed = getattr(lease.slot, name) if name in SLOT_FIELDS else getattr(lease, name)
    assert echoed == value
    assert broker.create_lease(lease_request(**{name: value})).replayed


@pytest.mark.parametrize(
    "duration_ns",
    [0, -1, -1800 * NS_PER_S, MAX_SLOT_DURATION_NS + 1, 10**30],
    ids=["zero", "minus-1ns", "negative", "31d+1ns", "huge"],
)
def test_bad_durations_are_invalid(broker, duration_ns):
    assert_invalid(broker, lease_request(duration_ns=duration_ns), "duration")


def test_31_day_duration_is_accepted(broker):
    assert broker.create_lease(lease_request(duration_ns=MAX_SLOT_DURATION_NS)).fence == 1


@pytest.mark.parametrize("start_ns", [MIN_INSTANT_NS - 1, MAX_INSTANT_NS + 1, -(10**30), 10**30])
def test_out_of_range_start_is_invalid(broker, start_ns):
    assert_invalid(broker, lease_request(start_ns=start_ns), "start_time")


@pytest.mark.parametrize("expiry_ns", [MIN_INSTANT_NS - 1, MAX_INSTANT_NS + 1])
def test_out_of_range_expiry_is_invalid(broker, expiry_ns):
    assert_invalid(broker, lease_request(requested_expiry_ns=expiry_ns), "requested_expiry")


def test_every_bad_field_is_named(broker):
    req = lease_request(
        merchant_id="",
        service_id="x" * 257,
        client_reference="a\nb",
        staff_id="\x00",
        room_id="\x7f",
        availability_tag="😀" * 65,
        start_ns=MAX_INSTANT_NS + 1,
        duration_ns=0,
        requested_expiry_ns=MIN_INSTANT_NS - 1,
    )
    assert_invalid(
        broker,
        req,
        *ID_FIELDS.values(),
        "start_time",
        "duration",
        "requested_expiry",
    )


# ---------------------------------------------------------------- store unavailable


def test_unreachable_store_is_store_unavailable(unreachable_broker):
    error = refusal(unreachable_broker.create_lease, lease_request())
    assert error.reason is Reason.STORE_UNAVAILABLE
    assert isinstance(error.__cause__, redis.ConnectionError)


def test_invalid_request_is_refused_before_touching_the_store(unreachable_broker):
    error = refusal(unreachable_broker.create_lease, lease_request(merchant_id=""))
    assert error.reason is Reason.INVALID_FIELD


def test_refused_replace_inventory_writes_nothing(broker, redis_client, key_prefix):
    with pytest.raises(ValueError):
        broker.replace_inventory("merchant-1", [InventorySlot(slot(merchant_id="merchant-2"), 1)])
    assert stored_keys(redis_client, key_prefix) == []


# ---------------------------------------------------------------- concurrency


def _outcome(broker: LeaseBroker, req: LeaseRequest) -> tuple[str, Lease | None]:
    try:
        return "ok", broker.create_lease(req)
    except BrokerError as exc:
        return exc.reason.value, None


@pytest.mark.parametrize("capacity", [1, 3])
def test_threads_racing_for_one_slot(make_broker, capacity):
    broker = make_broker(default_capacity=capacity)
    threads = 50
    results = race(
        *(
            (lambda i=i: _outcome(broker, lease_request(client_reference=f"ref-{i}")))
            for i in range(threads)
        )
    )
    counts = Counter(kind for kind, _ in results)
    assert counts == {"ok": capacity, "SLOT_FULL": threads - capacity}
    assert sorted(lease.fence for _, lease in results if lease) == list(range(1, capacity + 1))


def test_threads_retrying_one_request_hold_one_spot(make_broker):
    broker = make_broker(default_capacity=3)
    threads = 20

    def attempt() -> tuple[str, Lease | None]:
        return _outcome(broker, lease_request())

    leases = [lease for _, lease in race(*[attempt] * threads)]
    assert all(leases)
    assert len({lease.lease_id for lease in leases}) == 1
    assert sum(not lease.replayed for lease in leases) == 1
    assert broker.create_lease(lease_request(client_reference="ref-2")).fence == 2
    assert broker.create_lease(lease_request(client_reference="ref-3")).fence == 3


@pytest.mark.parametrize("backend", ["real"])
@pytest.mark.parametrize("capacity", [1, 3])
def test_processes_racing_for_one_slot(redis_client, key_prefix, capacity):
    processes, total = 4, 50
    shares = [[f"ref-{i}" for i in range(p, total, processes)] for p in range(processes)]
    reports = race_in_processes(
        lease_in_process, [(key_prefix, capacity, START_NS, share) for share in shares]
    )
    outcomes = [item for report in reports for item in report]
    assert len(outcomes) == total
    assert Counter(kind for kind, _ in outcomes) == {"ok": capacity, "SLOT_FULL": total - capacity}
    assert sorted(fence for kind, fence in outcomes if kind == "ok") == list(range(1, capacity + 1))
    # The store agrees: exactly `capacity` holds on the slot.
    broker = LeaseBroker(redis_client, BrokerConfig(key_prefix=key_prefix))
    assert redis_client.zcard(broker.keys.slot(slot())) == capacity


def test_the_script_caps_the_default_hold_by_the_maximum_hold(broker, monkeypatch):
    """Defence in depth: even handed a default hold longer than the maximum (a settings
    reload between two reads could once do that), the script grants at most the maximum."""
    config = broker.config
    capped = dataclasses.replace(config, default_hold_ms=60_000, max_hold_ms=60_000)
    monkeypatch.setattr(broker, "config", capped)
    object.__setattr__(broker.config, "default_hold_ms", 600_000)  # bypass the check
    lease = broker.create_lease(lease_request())
    assert lease.expires_at_ms - broker.now_ms() <= 60_000


def test_the_slot_key_expires_with_its_longest_hold_and_never_while_booked(
    make_broker, redis_client
):
    broker = make_broker(default_capacity=5, max_hold_ms=600_000)
    occupancy = broker.keys.slot(slot())
    soon = time.time_ns() + 60 * NS_PER_S

    def hold(reference: str, seconds: int) -> int:
        request = lease_request(
            client_reference=reference, requested_expiry_ns=soon + seconds * NS_PER_S
        )
        return broker.create_lease(request).expires_at_ms

    first = hold("first", 0)  # a fresh key: the hold sets its TTL
    assert redis_client.pexpiretime(occupancy) == first
    hold("shorter", -30)  # a shorter hold leaves it
    assert redis_client.pexpiretime(occupancy) == first
    longer = hold("longer", 30)  # a longer one moves it
    assert redis_client.pexpiretime(occupancy) == longer
    lease = broker.create_lease(lease_request(client_reference="booked"))
    broker.create_booking(booking_request(lease.lease_id))
    assert redis_client.pexpiretime(occupancy) == -1  # a booking: no TTL
    hold("after", 60)
    assert redis_client.pexpiretime(occupancy) == -1
