"""The hot path: a CreateLease is one Redis command (EVALSHA), once the merchant is known."""

from __future__ import annotations

import time

from support import HOUR_NS, booking_request

from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest


def _counted(redis_client, monkeypatch) -> list[str]:
    """The commands the client sends from now on (by name), as the test goes."""
    commands: list[str] = []
    send = redis_client.execute_command

    def counting(*args, **options):
        commands.append(str(args[0]))
        return send(*args, **options)

    monkeypatch.setattr(redis_client, "execute_command", counting)
    return commands


def test_create_lease_is_one_round_trip(broker, redis_client, monkeypatch):
    start = time.time_ns() + HOUR_NS
    broker.create_lease(LeaseRequest(SlotId("m", "s", start, HOUR_NS), "warm-up"))

    commands = _counted(redis_client, monkeypatch)
    lease = broker.create_lease(LeaseRequest(SlotId("m", "s", start + HOUR_NS, HOUR_NS), "r"))
    assert lease.fence == 1
    assert commands == ["EVALSHA"]


def test_a_cancel_or_a_move_reads_the_record_and_runs_its_script_nothing_more(
    broker, redis_client, monkeypatch
):
    start = time.time_ns() + HOUR_NS
    first, second, other = (SlotId("m", "s", start + k * HOUR_NS, HOUR_NS) for k in range(3))
    bookings = [
        broker.create_booking(booking_request(broker.create_lease(LeaseRequest(s, r)).lease_id))
        for s, r in ((other, "warm-up"), (first, "r"))
    ]
    # The first call of each script loads it (SCRIPT LOAD after NOSCRIPT).
    broker.reschedule_booking(bookings[0].booking_id, None, 2 * HOUR_NS)
    broker.cancel_booking(bookings[0].booking_id)
    booking = bookings[1]

    commands = _counted(redis_client, monkeypatch)
    moved = broker.reschedule_booking(booking.booking_id, second.start_ns, None)
    assert commands == ["HGETALL", "EVALSHA"]
    commands.clear()
    cancelled = broker.cancel_booking(booking.booking_id)
    assert commands == ["HGETALL", "EVALSHA"]
    # What they answer without reading again is what a read finds.
    monkeypatch.undo()
    assert moved.slot == second
    assert cancelled == broker.get_booking(booking.booking_id)
    assert (moved.fence, moved.updated_ms) == (cancelled.fence, moved.updated_ms)
    assert cancelled.updated_ms >= moved.updated_ms
