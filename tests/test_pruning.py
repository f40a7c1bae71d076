"""Pruning bookings and fencing counters of slots that started long enough ago."""

from __future__ import annotations

import json

import pytest
from support import HOUR_NS, MERCHANT, lease_and_book, lease_request, refusal, slot

from leasebroker.cli.parser import main
from leasebroker.core.errors import Reason
from leasebroker.core.units import NS_PER_MS

SOON_MS = 300


def test_prune_forgets_only_slots_started_before_the_cutoff(make_broker, clock, redis_client):
    broker = make_broker(default_capacity=2)
    soon_ns = (clock.now_ms() + SOON_MS) * NS_PER_MS
    _, past = lease_and_book(broker, slot(start_ns=soon_ns), "past")
    _, future = lease_and_book(broker, slot(), "future")
    clock.pass_ms(soon_ns // NS_PER_MS)

    # Kept while the slot started less than an hour ago.
    assert broker.prune(MERCHANT, older_than_ms=3_600_000).bookings == 0
    report = broker.prune(MERCHANT, older_than_ms=0)
    assert (report.bookings, report.fences) == (1, 1)

    assert broker.get_booking(future.booking_id).status == "confirmed"
    assert [b.booking_id for b in broker.list_bookings(MERCHANT)] == [future.booking_id]
    assert refusal(broker.get_booking, past.booking_id).reason is Reason.BOOKING_NOT_FOUND
    assert not redis_client.exists(broker.keys.slot(past.slot))
    fences = redis_client.hgetall(broker.keys.fences(MERCHANT))
    assert list(fences) == [future.slot.field().encode()]
    # The future slot's counter still grows from where it was.
    again = broker.create_lease(lease_request(start_ns=slot().start_ns, client_reference="x"))
    assert again.fence == 2
    # A second pass finds nothing.
    assert broker.prune(MERCHANT, older_than_ms=0).bookings == 0


def test_prune_never_touches_a_slot_that_has_not_started(broker):
    _, booking = lease_and_book(broker, slot(start_ns=slot().start_ns + HOUR_NS), "later")
    assert broker.prune(MERCHANT, older_than_ms=0).bookings == 0
    assert broker.slot_status(booking.slot).bookings == 1


def test_prune_drops_index_entries_of_vanished_records(broker, clock, redis_client):
    soon_ns = (clock.now_ms() + SOON_MS) * NS_PER_MS
    _, past = lease_and_book(broker, slot(start_ns=soon_ns), "past")
    redis_client.delete(broker.keys.booking(MERCHANT, past.booking_id.rsplit(".", 1)[1]))
    clock.pass_ms(soon_ns // NS_PER_MS)
    assert broker.prune(MERCHANT, older_than_ms=0).bookings == 1
    assert redis_client.zcard(broker.keys.booking_index(MERCHANT)) == 0


@pytest.mark.parametrize("backend", ["real"])
def test_prune_command(broker, clock, store_args, capsys):
    soon_ns = (clock.now_ms() + SOON_MS) * NS_PER_MS
    lease_and_book(broker, slot(start_ns=soon_ns), "past")
    clock.pass_ms(soon_ns // NS_PER_MS)
    assert main(["prune", "--older-than", "0", "--json", *store_args]) == 0
    assert json.loads(capsys.readouterr().out) == {"merchants": 1, "bookings": 1, "fences": 1}
    assert main(["prune", "--older-than", "30d", "--merchant", MERCHANT, *store_args]) == 0
    assert "pruned 0 booking(s) and 0 fencing counter(s) of 1 merchant(s)" in (
        capsys.readouterr().out
    )
    with pytest.raises(SystemExit) as usage:
        main(["prune", "--older-than", "soon", *store_args])
    assert usage.value.code == 2
