"""Rescheduling: fencing tokens follow the slot, partial updates, retries, and a moving record."""

from __future__ import annotations

import grpc
import pytest
from support import (
    DURATION_NS,
    HOUR_NS,
    grpc_book,
    grpc_lease,
    lease_and_book,
    lease_request,
    outcome,
    refusal,
    slot,
)

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.errors import Reason
from leasebroker.core.outcomes import Outcome
from leasebroker.core.units import NS_PER_MS


def test_reschedule_takes_the_next_token_of_the_new_slot(make_broker):
    broker = make_broker(default_capacity=3)
    here, there = slot(), slot(start_ns=slot().start_ns + HOUR_NS)
    before = broker.create_lease(lease_request(start_ns=there.start_ns, client_reference="x"))
    assert before.fence == 1
    _, booking = lease_and_book(broker, here)
    assert booking.fence == 1

    moved = broker.reschedule_booking(booking.booking_id, there.start_ns, None)
    assert moved.fence == 2  # the new slot's tokens only grow, whoever holds its spots
    after = broker.create_lease(lease_request(start_ns=there.start_ns, client_reference="y"))
    assert after.fence == 3


def test_reschedule_with_only_a_start_keeps_the_duration(broker):
    _, booking = lease_and_book(broker)
    moved = broker.reschedule_booking(booking.booking_id, slot().start_ns + HOUR_NS, None)
    assert moved.slot.duration_ns == DURATION_NS
    assert moved.slot.start_ns == slot().start_ns + HOUR_NS


def test_reschedule_with_only_a_duration_keeps_the_start(broker):
    _, booking = lease_and_book(broker)
    moved = broker.reschedule_booking(booking.booking_id, None, 2 * DURATION_NS)
    assert (moved.slot.start_ns, moved.slot.duration_ns) == (slot().start_ns, 2 * DURATION_NS)


def test_update_booking_with_only_start_time_in_the_mask(broker, stub):
    lease = grpc_lease(stub, slot())
    booking = grpc_book(stub, lease.lease_id)
    request = pb.UpdateBookingRequest(booking=pb.Booking(booking_id=booking.booking_id))
    request.update_mask.paths.append("start_time")
    request.booking.start_time.FromNanoseconds(slot().start_ns + HOUR_NS)
    moved = stub.UpdateBooking(request).booking
    assert moved.duration.ToNanoseconds() == DURATION_NS
    assert moved.start_time.ToNanoseconds() == slot().start_ns + HOUR_NS


# Regression (review finding, fixed): see the commit that removed its xfail.
def test_reschedule_retry_after_the_new_slot_started_returns_the_booking(broker, clock):
    _, booking = lease_and_book(broker)
    soon_ms = clock.now_ms() + 300
    moved = broker.reschedule_booking(booking.booking_id, soon_ms * NS_PER_MS, None)
    assert moved.slot.start_ns == soon_ms * NS_PER_MS
    clock.pass_ms(soon_ms)

    # The reply was lost; the client sends the same UpdateBooking again.
    retry = outcome(broker.reschedule_booking, booking.booking_id, soon_ms * NS_PER_MS, None)
    assert getattr(retry, "slot", retry) == moved.slot


@pytest.mark.parametrize("operation", ["cancel", "reschedule"])
def test_a_record_that_keeps_moving_is_a_conflict(broker, monkeypatch, operation):
    _, booking = lease_and_book(broker)
    real_call = broker._call

    def always_moved(name, keys, args):
        if name in ("cancel_booking", "reschedule_booking"):
            return [int(Outcome.SLOT_MOVED)]
        return real_call(name, keys, args)

    monkeypatch.setattr(broker, "_call", always_moved)
    if operation == "cancel":
        error = refusal(broker.cancel_booking, booking.booking_id)
    else:
        error = refusal(broker.reschedule_booking, booking.booking_id, None, 2 * DURATION_NS)
    assert error.reason is Reason.CONFLICT
    monkeypatch.undo()
    assert broker.get_booking(booking.booking_id).status == "confirmed"


def test_conflict_is_aborted_on_the_wire():
    from leasebroker.core.errors import BrokerError
    from leasebroker.wire.errors import to_status

    status = to_status(BrokerError(Reason.CONFLICT, "moved"))
    assert status.code is grpc.StatusCode.ABORTED
