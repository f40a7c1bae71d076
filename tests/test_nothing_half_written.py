"""Nothing half-written: Redis does not roll a script back when a command fails half-way.

Every value is checked before a script runs (in the library API too), every script
checks its own arguments before its first write, and a refused request writes
nothing at all. Each test compares a dump of every key before and after.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from support import MERCHANT, client_bytes

from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import BookingRequest, InventorySlot, LeaseRequest
from leasebroker.core.outcomes import Outcome
from leasebroker.core.scripts import BoundScript, load_sources
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.sweeper import sweep_due
from leasebroker.core.units import NS_PER_MS, NS_PER_S

CLIENT = client_bytes()
# Values no script may take where it expects a whole number.
BAD_NUMBERS = ["90000.5", "x", "-", "1e3", "0x10", " 1", "9" * 21]
_DIGITS_RE = re.compile(r"-?[0-9]+")
# Scripts whose arguments are all text (their check is of another kind).
TAKES_NO_NUMBER = {"check_permissions"}


def store_dump(client: Any, prefix: str) -> dict[bytes, tuple[bytes, bool]]:
    """Every key under ``prefix`` (and the shared registry): its DUMP and whether it expires."""
    keys = sorted(client.scan_iter(match=f"{prefix}:*", count=1000))
    return {key: (client.dump(key), client.pttl(key) >= 0) for key in keys}


def slot_at(start_ns: int, service: str = "haircut") -> SlotId:
    return SlotId(MERCHANT, service, start_ns, 1800 * NS_PER_S)


@pytest.fixture
def recorded(monkeypatch) -> list[tuple[BoundScript, list[str], list[Any]]]:
    calls: list[tuple[BoundScript, list[str], list[Any]]] = []
    original = BoundScript.__call__

    def spy(self: BoundScript, keys: Any, args: Any) -> Any:
        calls.append((self, list(keys), list(args)))
        return original(self, keys, args)

    monkeypatch.setattr(BoundScript, "__call__", spy)
    return calls


def drive_every_script(broker: Any) -> None:
    """One valid call of every script, on a store left with leases, bookings and inventory."""
    now_ns = time.time_ns()
    later = slot_at((now_ns // NS_PER_S + 86_400) * NS_PER_S)
    other = slot_at(later.start_ns + 3600 * NS_PER_S)
    soon = slot_at((now_ns // NS_PER_MS + 600) * NS_PER_MS, service="soon")
    broker.extend_lease(broker.create_lease(LeaseRequest(later, "a")).lease_id, 1_000)
    broker.release_lease(broker.create_lease(LeaseRequest(later, "b")).lease_id)
    lease = broker.create_lease(LeaseRequest(later, "c"))
    booking = broker.create_booking(BookingRequest(lease.lease_id, CLIENT))
    broker.reschedule_booking(booking.booking_id, other.start_ns, None)
    broker.cancel_booking(booking.booking_id)
    expiry_ns = (now_ns // NS_PER_MS + 300) * NS_PER_MS
    broker.create_lease(LeaseRequest(later, "d", requested_expiry_ns=expiry_ns))
    broker.create_booking(
        BookingRequest(broker.create_lease(LeaseRequest(soon, "e")).lease_id, CLIENT)
    )
    broker.slot_status(later)
    time.sleep(0.7)  # the short lease expires, the soon slot starts
    assert sweep_due(broker) == 1  # the due index's compare-and-set runs too
    assert broker.prune(MERCHANT, 0).bookings == 1
    broker.replace_inventory(MERCHANT, [InventorySlot(later, 2), InventorySlot(other, 2)])
    broker.set_capacity(other, 3)
    broker.load_inventories(
        {MERCHANT: [InventorySlot(later, 2)]}, generation=1_800_000_000, nonce=7
    )
    assert broker.denied_commands() == []


def test_every_script_refuses_every_malformed_number_before_writing(
    make_broker, redis_client, key_prefix, recorded
):
    broker = make_broker(default_capacity=2)
    drive_every_script(broker)
    assert {script.name for script, _, _ in recorded} == set(load_sources())
    seen: set[str] = set()
    tried = 0
    for script, keys, args in recorded:
        if script.name in seen:
            continue
        seen.add(script.name)
        numeric = [i for i, a in enumerate(args) if _DIGITS_RE.fullmatch(_text(a))]
        assert numeric or script.name in TAKES_NO_NUMBER, f"{script.name} takes no number?"
        for index in numeric:
            for bad in BAD_NUMBERS:
                before = store_dump(redis_client, key_prefix)
                reply = script(keys, [*args[:index], bad, *args[index + 1 :]])
                assert (Outcome(int(reply[0])), int(reply[1])) == (
                    Outcome.BAD_ARGUMENT,
                    index + 1,
                ), (script.name, index + 1, bad, reply)
                assert store_dump(redis_client, key_prefix) == before, (script.name, index, bad)
                tried += 1
    assert tried > 100


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def test_a_script_refusing_an_argument_is_internal_in_the_library(make_broker, monkeypatch):
    """Defence in depth: if a bad value ever slipped past the checks, the caller gets
    INTERNAL and the store has nothing half-written."""
    broker = make_broker()
    original = BoundScript.__call__

    def corrupt(self: BoundScript, keys: Any, args: Any) -> Any:
        return original(self, keys, [*args[:6], "600000.5", *args[7:]])

    monkeypatch.setattr(BoundScript, "__call__", corrupt)
    start = (time.time_ns() // NS_PER_S + 86_400) * NS_PER_S
    with pytest.raises(BrokerError) as refused:
        broker.create_lease(LeaseRequest(slot_at(start), "ref-1"))
    assert refused.value.reason is Reason.INTERNAL


@pytest.mark.parametrize(
    "settings",
    [
        {"default_hold_ms": 90_000.5},
        {"max_hold_ms": 1e6},
        {"default_capacity": 1.0},
        {"default_capacity": True},
        {"default_capacity": 2**31},
        {"record_retention_ms": "1h"},
        {"events_retention_ms": 500},
        {"events_retention_ms": -1},
    ],
    ids=lambda s: "-".join(f"{k}={v!r}" for k, v in s.items()),
)
def test_settings_that_no_script_could_take_are_refused(settings):
    with pytest.raises(ValueError):
        BrokerConfig(**settings)


def test_library_calls_with_malformed_numbers_write_nothing(make_broker, redis_client, key_prefix):
    broker = make_broker()
    start = (time.time_ns() // NS_PER_S + 86_400) * NS_PER_S
    lease = broker.create_lease(LeaseRequest(slot_at(start), "ref-1"))
    before = store_dump(redis_client, key_prefix)
    attempts = [
        lambda: broker.extend_lease(lease.lease_id, 1000.5),
        lambda: broker.extend_lease(lease.lease_id, 1000, expected_fence=1.5),
        lambda: broker.extend_lease(lease.lease_id, True),
        lambda: broker.create_lease(LeaseRequest(slot_at(start + 0.5), "ref-2")),
        lambda: broker.create_lease(
            LeaseRequest(slot_at(start), "ref-3", requested_expiry_ns=float(start))
        ),
        lambda: broker.create_lease(LeaseRequest(SlotId(MERCHANT, 7, start, NS_PER_S), "r")),
        lambda: broker.create_booking(BookingRequest(lease.lease_id, CLIENT, expected_fence="1")),
        lambda: broker.create_booking(BookingRequest(lease.lease_id, "not bytes")),
        lambda: broker.set_capacity(slot_at(start), 2.5),
        lambda: broker.set_capacity(slot_at(start), 2**31),
        lambda: broker.replace_inventory(MERCHANT, [InventorySlot(slot_at(start), 10**20)]),
        lambda: broker.prune(MERCHANT, 0.5),
        lambda: broker.sweep_expired(MERCHANT, 0),
        lambda: broker.list_leases(MERCHANT, None, 1.5),
        lambda: broker.day_status(MERCHANT, "today"),
    ]
    for attempt in attempts:
        with pytest.raises(BrokerError) as refused:
            attempt()
        assert refused.value.reason is Reason.INVALID_FIELD
    assert store_dump(redis_client, key_prefix) == before


def test_a_refused_create_lease_writes_nothing_not_even_the_registry(
    make_broker, redis_client, key_prefix
):
    broker = make_broker(default_capacity=0)
    start = (time.time_ns() // NS_PER_S + 86_400) * NS_PER_S
    before = store_dump(redis_client, key_prefix)
    for request in (
        LeaseRequest(slot_at(start), "ref-1"),  # SLOT_NOT_OFFERED: no default capacity
        LeaseRequest(slot_at(NS_PER_S), "ref-2"),  # START_TIME_PASSED
    ):
        with pytest.raises(BrokerError):
            broker.create_lease(request)
    assert store_dump(redis_client, key_prefix) == before
    assert not redis_client.sismember(broker.keys.merchants(), MERCHANT)
