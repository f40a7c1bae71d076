"""Rescheduling: fencing tokens follow the slot, partial updates, and a moving record."""

from __future__ import annotations

import grpc
import pytest
from lifecycle_helpers import (
    DURATION_NS,
    HOUR_NS,
    booking_request,
    client_info,
    create_booking_request,
    grpc_lease,
    lease_request,
    refusal,
    slot,
)

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.errors import Reason
from leasebroker.core.outcomes import Outcome


def book(broker, s, ref="ref-1"):
    lease = broker.create_lease(lease_request(start_ns=s.start_ns, client_reference=ref))
    return broker.create_booking(booking_request(lease.lease_id))


def test_reschedule_takes_the_next_token_of_the_new_slot(make_broker):
    broker = make_broker(default_capacity=3)
    here, there = slot(), slot(start_ns=slot().start_ns + HOUR_NS)
    before = broker.create_lease(lease_request(start_ns=there.start_ns, client_reference="x"))
    assert before.fence == 1
    booking = book(broker, here)
    assert booking.fence == 1

    moved = broker.reschedule_booking(booking.booking_id, there.start_ns, None)
    assert moved.fence == 2  # the new slot's tokens only grow, whoever holds its spots
    after = broker.create_lease(lease_request(start_ns=there.start_ns, client_reference="y"))
    assert after.fence == 3


def test_reschedule_with_only_a_start_keeps_the_duration(broker):
    booking = book(broker, slot())
    moved = broker.reschedule_booking(booking.booking_id, slot().start_ns + HOUR_NS, None)
    assert moved.slot.duration_ns == DURATION_NS
    assert moved.slot.start_ns == slot().start_ns + HOUR_NS


def test_reschedule_with_only_a_duration_keeps_the_start(broker):
    booking = book(broker, slot())
    moved = broker.reschedule_booking(booking.booking_id, None, 2 * DURATION_NS)
    assert (moved.slot.start_ns, moved.slot.duration_ns) == (slot().start_ns, 2 * DURATION_NS)


def test_update_booking_with_only_start_time_in_the_mask(broker, stub):
    lease = grpc_lease(stub, slot())
    booking = stub.CreateBooking(create_booking_request(lease.lease_id, client_info())).booking
    request = pb.UpdateBookingRequest(booking=pb.Booking(booking_id=booking.booking_id))
    request.update_mask.paths.append("start_time")
    request.booking.start_time.FromNanoseconds(slot().start_ns + HOUR_NS)
    moved = stub.UpdateBooking(request).booking
    assert moved.duration.ToNanoseconds() == DURATION_NS
    assert moved.start_time.ToNanoseconds() == slot().start_ns + HOUR_NS


@pytest.mark.parametrize("operation", ["cancel", "reschedule"])
def test_a_record_that_keeps_moving_is_a_conflict(broker, monkeypatch, operation):
    booking = book(broker, slot())
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
