"""Bookings: CreateBooking and UpdateBooking over the v0 wire, and the lease/booking/inventory
library operations around them, on fakeredis and the real Redis.

Clock-dependent outcomes are judged on Redis's clock. Holds expire without long sleeps:
150 ms holds, then the store's time is moved on by 0.3 s (see support.Clock). Retries
after a lost reply need a real socket, so they run on the real Redis only.
"""

from __future__ import annotations

import base64
import dataclasses
import time
from typing import Any

import grpc
import pytest
import redis
from support import (
    DURATION_NS,
    HOUR_NS,
    MERCHANT,
    PAST_SHORT_HOLD_S,
    REAL_REDIS_URL,
    SHORT_HOLD,
    START_NS,
    booking_request,
    cancel_request,
    client_bytes,
    client_info,
    create_booking_request,
    events,
    failure,
    grpc_book,
    grpc_lease,
    lease_and_book,
    lease_request,
    outcome,
    pb_lease,
    refusal,
    reschedule_request,
    slot,
)

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import Reason
from leasebroker.core.keys import IdKind, parse_public_id
from leasebroker.core.model import InventorySlot
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import connect
from leasebroker.core.units import NS_PER_MS

# PaymentInformation's fields are unverified (api-v0.md 2.13), so the proto declares none:
# everything a client sends is unknown fields, and must come back byte for byte.
# field 1 varint 2, field 2 "txn-42", field 3 {1: 150, 2: 1}, field 4 fixed64.
PAYMENT_BYTES = (
    b"\x08\x02" + b"\x12\x06txn-42" + b"\x1a\x05\x08\x96\x01\x10\x01" + b"\x21" + bytes(range(8))
)
# Booking.status (field 7, varint) = 4: CANCELED on the v0 wire.
CANCELED_ON_THE_WIRE = b"\x38\x04"


def payment() -> pb.PaymentInformation:
    info = pb.PaymentInformation()
    info.MergeFromString(PAYMENT_BYTES)
    return info


def counts(broker, s) -> tuple[int, int]:
    status = broker.slot_status(s)
    return status.holds, status.bookings


# ================================================================ CreateBooking (gRPC)


def test_create_booking_consumes_a_live_lease(broker, stub):
    s = slot(staff_id="st-1", room_id="rm-2")
    request = pb_lease(s)
    request.availability_tag = "tag-9"
    lease = stub.CreateLease(pb.CreateLeaseRequest(lease=request)).lease
    assert counts(broker, s) == (1, 0)

    booking = stub.CreateBooking(
        create_booking_request(lease.lease_id, client_info(), payment_information=payment())
    ).booking

    parsed = parse_public_id(booking.booking_id, IdKind.BOOKING)
    assert booking.booking_id.startswith("b.")
    assert parsed is not None and parsed.merchant_id == MERCHANT
    assert parsed.token != lease.lease_id.rsplit(".", 1)[1]
    assert (booking.merchant_id, booking.service_id) == (MERCHANT, "haircut")
    assert booking.start_time.ToNanoseconds() == s.start_ns
    assert booking.duration.ToNanoseconds() == s.duration_ns
    assert booking.client_information == client_info()
    assert booking.status == pb.CONFIRMED == 1
    assert booking.HasField("payment_information")
    assert booking.payment_information.SerializeToString() == PAYMENT_BYTES
    # The spot changed from a hold into a booking.
    assert counts(broker, s) == (0, 1)
    stored = broker.get_booking(booking.booking_id)
    assert (stored.status, stored.slot, stored.lease_id) == ("confirmed", s, lease.lease_id)
    assert stored.payment_information == PAYMENT_BYTES
    assert stored.fence == broker.get_lease(lease.lease_id).fence == 1
    assert broker.list_bookings(MERCHANT, s)[0] == stored
    view = broker.get_lease(lease.lease_id)
    assert (view.state, view.booking_id) == ("consumed", booking.booking_id)

    # The lease can never be used again.
    other = failure(stub.CreateBooking, create_booking_request(lease.lease_id, client_info("Bob")))
    assert (other.code, other.reason) == (grpc.StatusCode.ALREADY_EXISTS, "LEASE_ALREADY_BOOKED")
    assert refusal(broker.release_lease, lease.lease_id).reason is Reason.LEASE_CONSUMED
    assert refusal(broker.extend_lease, lease.lease_id, 1000).reason is Reason.LEASE_CONSUMED
    assert counts(broker, s) == (0, 1)
    assert [b.booking_id for b in broker.list_bookings(MERCHANT)] == [booking.booking_id]


def test_every_booking_gets_a_fresh_id(make_broker, make_stub):
    broker = make_broker(default_capacity=3)
    stub = make_stub(broker)
    ids = {
        grpc_book(stub, grpc_lease(stub, slot(), f"ref-{i}").lease_id).booking_id for i in range(3)
    }
    assert len(ids) == 3
    assert counts(broker, slot()) == (0, 3)


def test_booking_without_payment_has_none(broker, stub):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    assert not booking.HasField("payment_information")
    assert broker.get_booking(booking.booking_id).payment_information is None


def test_library_create_booking_returns_what_is_stored(broker):
    lease = broker.create_lease(lease_request(availability_tag="t"))
    booking = broker.create_booking(
        booking_request(lease.lease_id, payment_information=b"\x08\x01")
    )
    assert not booking.replayed
    assert booking == broker.get_booking(booking.booking_id)
    assert (booking.slot, booking.fence, booking.status) == (slot(), lease.fence, "confirmed")
    assert booking.created_ms == booking.updated_ms


def test_retry_with_the_same_client_returns_the_same_booking(broker, stub):
    lease = grpc_lease(stub, slot())
    request = create_booking_request(lease.lease_id, client_info(), payment_information=payment())
    first = stub.CreateBooking(request).booking
    again = stub.CreateBooking(request).booking
    assert again == first
    assert again.payment_information.SerializeToString() == PAYMENT_BYTES
    assert counts(broker, slot()) == (0, 1)
    assert len(broker.list_bookings(MERCHANT)) == 1
    replay = broker.create_booking(booking_request(lease.lease_id))
    assert (replay.booking_id, replay.replayed) == (first.booking_id, True)


def test_retry_with_another_client_is_already_exists(broker, stub):
    lease = grpc_lease(stub, slot())
    first = grpc_book(stub, lease.lease_id, "Ada")
    error = failure(stub.CreateBooking, create_booking_request(lease.lease_id, client_info("Bob")))
    assert (error.code, error.domain, error.reason) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "leasebroker",
        "LEASE_ALREADY_BOOKED",
    )
    # A different telephone alone is a different client too.
    other_phone = client_info("Ada", telephone="+1 650 555 0199")
    error = failure(stub.CreateBooking, create_booking_request(lease.lease_id, other_phone))
    assert error.code is grpc.StatusCode.ALREADY_EXISTS
    stored = broker.get_booking(first.booking_id)
    assert stored.client_information == client_bytes("Ada")
    assert counts(broker, slot()) == (0, 1)


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
    again = outcome(broker.create_booking, booking_request(replay.lease_id))
    assert getattr(again, "booking_id", again) == booking.booking_id


@pytest.mark.parametrize(
    ("client", "bad_field"),
    [
        (None, "client_information"),
        (client_info(telephone=""), "client_information.telephone"),
        (pb.ClientInformation(given_name="Ada"), "client_information.telephone"),
        (client_info(name="A" * 4097), "client_information.given_name"),
        (client_info(telephone="1" * 4097), "client_information.telephone"),
        (pb.ClientInformation(), "client_information.telephone"),
    ],
    ids=["missing", "empty-telephone", "no-telephone", "long-name", "long-telephone", "empty"],
)
def test_invalid_client_information_is_invalid_argument(broker, stub, client, bad_field):
    lease = grpc_lease(stub, slot())
    error = failure(stub.CreateBooking, create_booking_request(lease.lease_id, client))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert bad_field in error.violations
    # Nothing was consumed: the lease still books.
    assert broker.get_lease(lease.lease_id).state == "held"
    assert counts(broker, slot()) == (1, 0)
    assert grpc_book(stub, lease.lease_id).status == pb.CONFIRMED


def test_client_information_as_real_people_type_it_is_booked_and_kept(broker, stub):
    """The broker never puts client data in a key: multi-line addresses, long
    non-Latin names, emoji and tabs are stored and echoed byte for byte."""
    client = pb.ClientInformation(
        given_name="Maximilian-Alexander 🌼", family_name="สมชาย ใจดี" * 40,
        telephone="+66 2 123 4567\text. 12", email="a.b+tag@例え.jp",
    )  # fmt: skip
    client.address.street_address = "Flat 3\n12 Long Road\r\nBuilding\tB"
    client.address.address_locality = "Zürich"
    lease = grpc_lease(stub, slot())
    booking = stub.CreateBooking(create_booking_request(lease.lease_id, client)).booking
    assert booking.client_information == client
    assert broker.get_booking(booking.booking_id).client_information == client.SerializeToString(
        deterministic=True
    )


def _swap_merchant(lease_id: str) -> str:
    kind, _merchant, token = lease_id.split(".")
    other = base64.urlsafe_b64encode(b"merchant-2").rstrip(b"=").decode()
    return f"{kind}.{other}.{token}"


def _pad_merchant(lease_id: str) -> str:
    kind, merchant, token = lease_id.split(".")
    return f"{kind}.{merchant}==.{token}"


BAD_LEASE_IDS = {
    "x": lambda real: "x",
    "empty": lambda real: "",
    "dots": lambda real: "l..",
    "forged-merchant": _swap_merchant,
    "non-canonical-merchant": _pad_merchant,
    "unknown-token": lambda real: real[:-22] + "A" * 22,
    "other-kind": lambda real: {"l": "b", "b": "l"}[real[0]] + real[1:],
    "trailing-space": lambda real: real + " ",
    "truncated": lambda real: real[:-1],
}


@pytest.mark.parametrize("make_id", BAD_LEASE_IDS.values(), ids=BAD_LEASE_IDS.keys())
def test_unknown_or_malformed_lease_is_not_found(broker, stub, make_id):
    real = grpc_lease(stub, slot()).lease_id
    error = failure(stub.CreateBooking, create_booking_request(make_id(real), client_info()))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "LEASE_NOT_FOUND")
    assert broker.get_lease(real).state == "held"
    assert broker.list_bookings(MERCHANT) == []


def test_expired_lease_is_not_found(make_broker, make_stub, clock):
    broker = make_broker(**SHORT_HOLD)
    stub = make_stub(broker)
    lease = grpc_lease(stub, slot())
    clock.pass_ms(broker.get_lease(lease.lease_id).expires_at_ms)
    error = failure(stub.CreateBooking, create_booking_request(lease.lease_id, client_info()))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "LEASE_EXPIRED")
    assert broker.get_lease(lease.lease_id).state == "expired"
    assert counts(broker, slot()) == (0, 0)
    assert broker.list_bookings(MERCHANT) == []


def test_released_lease_is_not_found(broker, stub):
    lease = grpc_lease(stub, slot())
    broker.release_lease(lease.lease_id)
    error = failure(stub.CreateBooking, create_booking_request(lease.lease_id, client_info()))
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "LEASE_RELEASED")
    assert counts(broker, slot()) == (0, 0)


def test_capacity_lowered_to_zero_after_the_lease_is_resource_exhausted(broker, stub):
    broker.set_capacity(slot(), 1)
    lease = grpc_lease(stub, slot())
    broker.set_capacity(slot(), 0)
    error = failure(stub.CreateBooking, create_booking_request(lease.lease_id, client_info()))
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOT_FULL")
    assert broker.list_bookings(MERCHANT) == []
    assert counts(broker, slot()) == (1, 0)  # the hold itself is not cancelled


def test_capacity_lowered_below_the_leases_books_only_up_to_it(broker, stub):
    broker.set_capacity(slot(), 2)
    first, second = (grpc_lease(stub, slot(), f"ref-{i}") for i in range(2))
    broker.set_capacity(slot(), 1)
    assert grpc_book(stub, first.lease_id).status == pb.CONFIRMED
    error = failure(stub.CreateBooking, create_booking_request(second.lease_id, client_info("B")))
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOT_FULL")
    assert counts(broker, slot()) == (1, 1)


# ================================================================ UpdateBooking (gRPC)


def test_cancel_frees_the_spot_at_once(broker, stub):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    assert failure(
        stub.CreateLease, pb.CreateLeaseRequest(lease=pb_lease(slot(), "ref-2"))
    ).code is (grpc.StatusCode.RESOURCE_EXHAUSTED)

    reply = stub.UpdateBooking(cancel_request(booking.booking_id))
    assert reply.booking.status == pb.CANCELED == 4
    assert CANCELED_ON_THE_WIRE in reply.booking.SerializeToString()
    assert reply.booking.booking_id == booking.booking_id
    assert reply.booking.client_information == client_info()
    assert counts(broker, slot()) == (0, 0)
    assert broker.get_booking(booking.booking_id).status == "cancelled"
    # The spot is free now, without waiting for anything.
    assert grpc_lease(stub, slot(), "ref-2").lease_id


def test_cancelling_twice_returns_it_unchanged(broker, stub):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    first = stub.UpdateBooking(cancel_request(booking.booking_id)).booking
    before = broker.get_booking(booking.booking_id)
    again = stub.UpdateBooking(cancel_request(booking.booking_id)).booking
    assert again == first
    assert again.status == 4
    assert broker.get_booking(booking.booking_id) == before
    assert counts(broker, slot()) == (0, 0)


def test_reschedule_moves_the_booking(broker, stub):
    old, new = slot(), slot(start_ns=START_NS + HOUR_NS, duration_ns=2700 * 10**9)
    booking = grpc_book(stub, grpc_lease(stub, old).lease_id)
    reply = stub.UpdateBooking(
        reschedule_request(booking.booking_id, new.start_ns, new.duration_ns)
    ).booking
    assert reply.booking_id == booking.booking_id
    assert reply.status == pb.CONFIRMED
    assert reply.start_time.ToNanoseconds() == new.start_ns
    assert reply.duration.ToNanoseconds() == new.duration_ns
    assert reply.client_information == client_info()
    assert counts(broker, old) == (0, 0)
    assert counts(broker, new) == (0, 1)
    stored = broker.get_booking(booking.booking_id)
    assert (stored.slot, stored.status) == (new, "confirmed")
    assert [b.booking_id for b in broker.list_bookings(MERCHANT, new)] == [booking.booking_id]
    assert broker.list_bookings(MERCHANT, old) == []
    # The old spot is free again.
    assert grpc_lease(stub, old, "ref-2").lease_id


def test_reschedule_to_the_same_slot_changes_nothing(broker, stub):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    before = broker.get_booking(booking.booking_id)
    reply = stub.UpdateBooking(reschedule_request(booking.booking_id, START_NS, DURATION_NS))
    assert reply.booking == booking
    assert broker.get_booking(booking.booking_id) == before


def test_reschedule_with_only_start_time_keeps_the_duration(broker, stub):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    request = pb.UpdateBookingRequest(booking=pb.Booking(booking_id=booking.booking_id))
    request.booking.start_time.FromNanoseconds(START_NS + HOUR_NS)
    request.update_mask.paths.append("start_time")
    reply = stub.UpdateBooking(request).booking
    assert reply.start_time.ToNanoseconds() == START_NS + HOUR_NS
    assert reply.duration.ToNanoseconds() == DURATION_NS
    assert counts(broker, slot(start_ns=START_NS + HOUR_NS)) == (0, 1)


def test_reschedule_is_not_blocked_by_an_expired_hold(make_broker, make_stub, clock):
    broker = make_broker(default_hold_ms=150, max_hold_ms=60_000)
    stub = make_stub(broker)
    old, new = slot(), slot(start_ns=START_NS + HOUR_NS)
    booking = grpc_book(stub, grpc_lease(stub, old).lease_id)
    stale = broker.create_lease(lease_request(client_reference="stale", start_ns=new.start_ns))
    clock.pass_ms(stale.expires_at_ms)  # never swept: still in the slot's ZSET
    reply = stub.UpdateBooking(reschedule_request(booking.booking_id, new.start_ns, DURATION_NS))
    assert reply.booking.start_time.ToNanoseconds() == new.start_ns
    assert counts(broker, new) == (0, 1)
    assert counts(broker, old) == (0, 0)


@pytest.mark.parametrize("taken_by", ["lease", "booking"])
def test_reschedule_to_a_full_slot_is_resource_exhausted(broker, stub, taken_by):
    old, new = slot(), slot(start_ns=START_NS + HOUR_NS)
    booking = grpc_book(stub, grpc_lease(stub, old).lease_id)
    other = grpc_lease(stub, new, "ref-2")
    if taken_by == "booking":
        grpc_book(stub, other.lease_id, "Bob")
    before = broker.get_booking(booking.booking_id)
    error = failure(
        stub.UpdateBooking, reschedule_request(booking.booking_id, new.start_ns, new.duration_ns)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOT_FULL")
    assert broker.get_booking(booking.booking_id) == before
    assert counts(broker, old) == (0, 1)
    assert sum(counts(broker, new)) == 1


def test_reschedule_to_a_slot_not_offered_is_resource_exhausted(broker, stub):
    old = slot()
    broker.replace_inventory(MERCHANT, [InventorySlot(old, 1)])
    booking = grpc_book(stub, grpc_lease(stub, old).lease_id)
    before = broker.get_booking(booking.booking_id)
    error = failure(
        stub.UpdateBooking,
        reschedule_request(booking.booking_id, START_NS + HOUR_NS, DURATION_NS),
    )
    assert (error.code, error.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOT_NOT_OFFERED")
    assert broker.get_booking(booking.booking_id) == before
    assert counts(broker, old) == (0, 1)


@pytest.mark.parametrize("make_id", BAD_LEASE_IDS.values(), ids=BAD_LEASE_IDS.keys())
@pytest.mark.parametrize("update", ["cancel", "reschedule"])
def test_unknown_or_malformed_booking_is_not_found(broker, stub, make_id, update):
    real = grpc_book(stub, grpc_lease(stub, slot()).lease_id).booking_id
    # The same manglings as for leases, applied to a booking id.
    bad = make_id(real)
    request = (
        cancel_request(bad)
        if update == "cancel"
        else reschedule_request(bad, START_NS + HOUR_NS, DURATION_NS)
    )
    error = failure(stub.UpdateBooking, request)
    assert (error.code, error.reason) == (grpc.StatusCode.NOT_FOUND, "BOOKING_NOT_FOUND")
    assert broker.get_booking(real).status == "confirmed"
    assert counts(broker, slot()) == (0, 1)


def _mask(booking_id: str, paths: list[str], **fields) -> pb.UpdateBookingRequest:
    request = pb.UpdateBookingRequest(booking=pb.Booking(booking_id=booking_id, **fields))
    request.update_mask.paths.extend(paths)
    return request


def _with_times(request: pb.UpdateBookingRequest, start: bool, duration: bool):
    if start:
        request.booking.start_time.FromNanoseconds(START_NS + HOUR_NS)
    if duration:
        request.booking.duration.FromNanoseconds(DURATION_NS)
    return request


BAD_UPDATES = {
    "empty-mask": (lambda b: _mask(b, [], status=pb.CANCELED), "update_mask"),
    "unknown-path": (
        lambda b: _mask(b, ["client_information"], status=pb.CANCELED),
        "update_mask",
    ),
    "unknown-path-with-status": (
        lambda b: _mask(b, ["status", "merchant_id"], status=pb.CANCELED),
        "update_mask",
    ),
    "status-confirmed": (lambda b: _mask(b, ["status"], status=pb.CONFIRMED), "booking.status"),
    "status-unset": (lambda b: _mask(b, ["status"]), "booking.status"),
    # 3 is CANCELED in v2/v3, not in v0.
    "status-3": (lambda b: _mask(b, ["status"], status=3), "booking.status"),
    "status-and-start": (
        lambda b: _with_times(_mask(b, ["status", "start_time"], status=pb.CANCELED), True, False),
        "update_mask",
    ),
    "start-in-mask-unset": (
        lambda b: _with_times(_mask(b, ["start_time", "duration"]), False, True),
        "booking.start_time",
    ),
    "duration-in-mask-unset": (
        lambda b: _with_times(_mask(b, ["start_time", "duration"]), True, False),
        "booking.duration",
    ),
    "zero-duration": (
        lambda b: _zero_duration(_with_times(_mask(b, ["start_time", "duration"]), True, False)),
        "booking.duration",
    ),
    "negative-duration": (
        lambda b: _set(_mask(b, ["start_time", "duration"]), START_NS + HOUR_NS, -DURATION_NS),
        "booking.duration",
    ),
    "duration-over-31-days": (
        lambda b: _set(_mask(b, ["duration"]), START_NS, 32 * 86_400 * 10**9),
        "booking.duration",
    ),
    "start-nanos-out-of-range": (
        lambda b: _bad_nanos(_with_times(_mask(b, ["start_time", "duration"]), True, True)),
        "booking.start_time",
    ),
}


def _set(request: pb.UpdateBookingRequest, start_ns: int, duration_ns: int):
    request.booking.start_time.FromNanoseconds(start_ns)
    request.booking.duration.FromNanoseconds(duration_ns)
    return request


def _bad_nanos(request: pb.UpdateBookingRequest) -> pb.UpdateBookingRequest:
    request.booking.start_time.nanos = -1
    return request


def _zero_duration(request: pb.UpdateBookingRequest) -> pb.UpdateBookingRequest:
    request.booking.duration.SetInParent()
    return request


@pytest.mark.parametrize(
    ("make_request", "bad_field"), BAD_UPDATES.values(), ids=BAD_UPDATES.keys()
)
def test_bad_update_is_invalid_argument(broker, stub, make_request, bad_field):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    before = broker.get_booking(booking.booking_id)
    error = failure(stub.UpdateBooking, make_request(booking.booking_id))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD")
    assert bad_field in error.violations, error.violations
    assert broker.get_booking(booking.booking_id) == before
    assert counts(broker, slot()) == (0, 1)


def test_reschedule_to_a_start_in_the_past_is_invalid_argument(broker, stub, clock):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    past_ns = (clock.now_ms() - 60_000) * NS_PER_MS
    error = failure(
        stub.UpdateBooking, reschedule_request(booking.booking_id, past_ns, DURATION_NS)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "START_TIME_PASSED")
    assert "booking.start_time" in error.violations
    assert broker.get_booking(booking.booking_id).slot == slot()
    assert counts(broker, slot()) == (0, 1)


@pytest.mark.parametrize("seconds", [-62_135_596_800, -1, 0], ids=["year-1", "1969", "epoch"])
def test_reschedule_to_a_long_gone_start_is_invalid_argument(broker, stub, seconds):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    request = reschedule_request(booking.booking_id, 0, DURATION_NS)
    request.booking.start_time.seconds = seconds
    error = failure(stub.UpdateBooking, request)
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason in ("START_TIME_PASSED", "INVALID_FIELD")
    assert "booking.start_time" in error.violations
    assert broker.get_booking(booking.booking_id).slot == slot()


def test_rescheduling_a_cancelled_booking_is_invalid_argument(broker, stub):
    booking = grpc_book(stub, grpc_lease(stub, slot()).lease_id)
    stub.UpdateBooking(cancel_request(booking.booking_id))
    new = slot(start_ns=START_NS + HOUR_NS)
    error = failure(
        stub.UpdateBooking, reschedule_request(booking.booking_id, new.start_ns, new.duration_ns)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "BOOKING_CANCELLED")
    assert "booking.start_time" in error.violations
    stored = broker.get_booking(booking.booking_id)
    assert (stored.status, stored.slot) == ("cancelled", slot())
    assert counts(broker, new) == (0, 0)
    assert counts(broker, slot()) == (0, 0)


def test_cancel_and_reschedule_after_the_slot_started_are_invalid_argument(broker, stub, clock):
    # A slot starting ~300 ms from now (Redis's clock), booked at once.
    soon = slot(start_ns=(clock.now_ms() + 300) * NS_PER_MS)
    booking = grpc_book(stub, grpc_lease(stub, soon).lease_id)
    clock.pass_ms(soon.start_ns // NS_PER_MS)

    error = failure(stub.UpdateBooking, cancel_request(booking.booking_id))
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SLOT_STARTED")
    assert "booking.status" in error.violations
    error = failure(
        stub.UpdateBooking, reschedule_request(booking.booking_id, START_NS, DURATION_NS)
    )
    assert (error.code, error.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SLOT_STARTED")
    assert "booking.start_time" in error.violations
    stored = broker.get_booking(booking.booking_id)
    assert (stored.status, stored.slot) == ("confirmed", soon)
    assert counts(broker, soon) == (0, 1)
    assert counts(broker, slot()) == (0, 0)


# ================================================================ leases (library)


def test_release_is_idempotent_and_frees_the_spot_and_reference(broker):
    lease = broker.create_lease(lease_request())
    view = broker.release_lease(lease.lease_id)
    assert view.state == "released" and view.ended_ms is not None
    assert counts(broker, slot()) == (0, 0)
    again = broker.release_lease(lease.lease_id)
    assert again == view
    # The spot (capacity 1) and the client_reference are free at once: the same
    # reference may ask for another slot, or the same one, and gets a new lease.
    elsewhere = broker.create_lease(lease_request(start_ns=START_NS + HOUR_NS))
    broker.release_lease(elsewhere.lease_id)
    same = broker.create_lease(lease_request())
    assert not same.replayed and same.lease_id != lease.lease_id
    assert same.fence == 2
    assert refusal(broker.release_lease, "l.x.y").reason is Reason.LEASE_NOT_FOUND


def test_release_of_an_expired_lease_changes_nothing(make_broker, clock):
    broker = make_broker(**SHORT_HOLD)
    lease = broker.create_lease(lease_request())
    clock.advance(PAST_SHORT_HOLD_S)
    view = broker.release_lease(lease.lease_id)
    assert view.state == "expired" and view.ended_ms is None


def test_extend_is_bounded_by_the_maximum_hold(make_broker):
    broker = make_broker(default_hold_ms=1_000, max_hold_ms=5_000)
    lease = broker.create_lease(lease_request())
    created = broker.get_lease(lease.lease_id).created_ms
    assert lease.expires_at_ms == created + 1_000
    assert broker.extend_lease(lease.lease_id, 2_000).expires_at_ms == created + 3_000
    assert broker.extend_lease(lease.lease_id, 100_000).expires_at_ms == created + 5_000
    assert broker.extend_lease(lease.lease_id, 1).expires_at_ms == created + 5_000
    assert refusal(broker.extend_lease, lease.lease_id, 0).reason is Reason.INVALID_FIELD


def test_extend_is_bounded_by_the_slot_start(make_broker, clock):
    broker = make_broker(default_hold_ms=1_000, max_hold_ms=3_600_000)
    start_ns = (clock.now_ms() + 10_000) * NS_PER_MS + 123_456  # not on a whole ms
    lease = broker.create_lease(lease_request(start_ns=start_ns))
    view = broker.extend_lease(lease.lease_id, 3_600_000)
    assert view.expires_at_ms == start_ns // NS_PER_MS


def test_extend_refuses_leases_that_ended(make_broker, clock):
    broker = make_broker(default_hold_ms=150, max_hold_ms=60_000)
    expired = broker.create_lease(lease_request(client_reference="a"))
    released = broker.create_lease(lease_request(client_reference="b", start_ns=START_NS + HOUR_NS))
    broker.release_lease(released.lease_id)
    consumed = broker.create_lease(
        lease_request(
            client_reference="c",
            start_ns=START_NS + 2 * HOUR_NS,
            requested_expiry_ns=time.time_ns() + 30 * 10**9,
        )
    )
    broker.create_booking(booking_request(consumed.lease_id))
    clock.pass_ms(expired.expires_at_ms)
    assert refusal(broker.extend_lease, expired.lease_id, 1000).reason is Reason.LEASE_EXPIRED
    assert refusal(broker.extend_lease, released.lease_id, 1000).reason is Reason.LEASE_RELEASED
    assert refusal(broker.extend_lease, consumed.lease_id, 1000).reason is Reason.LEASE_CONSUMED
    assert refusal(broker.extend_lease, "l.x.y", 1000).reason is Reason.LEASE_NOT_FOUND
    assert broker.get_lease(expired.lease_id).state == "expired"


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
    store = connect(REAL_REDIS_URL, pool_size=4)
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


def test_stale_fencing_token_is_refused_by_extend_and_consume(broker):
    first = broker.create_lease(lease_request(client_reference="a"))
    broker.release_lease(first.lease_id)
    second = broker.create_lease(lease_request(client_reference="b"))
    assert (first.fence, second.fence) == (1, 2)
    before = broker.get_lease(second.lease_id)

    error = refusal(broker.extend_lease, second.lease_id, 1000, expected_fence=first.fence)
    assert error.reason is Reason.FENCING_TOKEN_STALE
    assert broker.get_lease(second.lease_id) == before
    error = refusal(
        broker.create_booking, booking_request(second.lease_id, expected_fence=first.fence)
    )
    assert error.reason is Reason.FENCING_TOKEN_STALE
    assert broker.list_bookings(MERCHANT) == []
    assert counts(broker, slot()) == (1, 0)

    extended = broker.extend_lease(second.lease_id, 1000, expected_fence=second.fence)
    assert extended.expires_at_ms == before.expires_at_ms + 1000
    booking = broker.create_booking(booking_request(second.lease_id, expected_fence=second.fence))
    assert booking.fence == second.fence
    assert counts(broker, slot()) == (0, 1)


def test_fencing_tokens_grow_per_slot_across_leases(make_broker, clock):
    broker = make_broker(default_hold_ms=150, max_hold_ms=60_000)
    fences = []
    released = broker.create_lease(lease_request(client_reference="a"))
    broker.release_lease(released.lease_id)
    fences.append(released.fence)
    expired = broker.create_lease(lease_request(client_reference="b"))
    fences.append(expired.fence)
    clock.pass_ms(expired.expires_at_ms)
    consumed = broker.create_lease(
        lease_request(client_reference="c", requested_expiry_ns=time.time_ns() + 30 * 10**9)
    )
    fences.append(consumed.fence)
    booking = broker.create_booking(booking_request(consumed.lease_id))
    broker.cancel_booking(booking.booking_id)
    fences.append(broker.create_lease(lease_request(client_reference="d")).fence)
    assert fences == [1, 2, 3, 4]
    assert booking.fence == 3
    # Each slot counts on its own.
    other = broker.create_lease(lease_request(client_reference="e", start_ns=START_NS + HOUR_NS))
    assert other.fence == 1


def test_list_leases_by_merchant_slot_and_time_range(make_broker):
    broker = make_broker(default_capacity=2)
    slots = [slot(start_ns=START_NS + i * HOUR_NS) for i in range(3)]
    leases = [
        broker.create_lease(lease_request(client_reference=f"ref-{i}", **dataclasses.asdict(s)))
        for i, s in enumerate(slots)
    ]
    foreign = broker.create_lease(lease_request(merchant_id="merchant-2"))
    ids = [lease.lease_id for lease in leases]

    assert [v.lease_id for v in broker.list_leases(MERCHANT)] == ids
    assert [v.lease_id for v in broker.list_leases("merchant-2")] == [foreign.lease_id]
    assert broker.list_leases("merchant-3") == []
    assert [v.lease_id for v in broker.list_leases(MERCHANT, slots[1])] == [ids[1]]
    ranged = broker.list_leases(MERCHANT, None, START_NS + HOUR_NS, START_NS + 2 * HOUR_NS)
    assert [v.lease_id for v in ranged] == [ids[1]]
    assert [v.lease_id for v in broker.list_leases(MERCHANT, None, START_NS + 1)] == ids[1:]
    assert [v.lease_id for v in broker.list_leases(MERCHANT, None, None, START_NS + 1)] == ids[:1]
    view = broker.list_leases(MERCHANT, slots[2])[0]
    assert (view.state, view.slot, view.client_reference) == ("held", slots[2], "ref-2")
    # Leases that ended other than by expiry leave the list.
    broker.release_lease(ids[0])
    broker.create_booking(booking_request(ids[1]))
    assert [v.lease_id for v in broker.list_leases(MERCHANT)] == ids[2:]


def test_list_bookings_by_merchant_slot_and_time_range(make_broker):
    broker = make_broker(default_capacity=2)
    slots = [slot(start_ns=START_NS + i * HOUR_NS) for i in range(3)]
    bookings = [lease_and_book(broker, s, f"ref-{i}")[1] for i, s in enumerate(slots)]
    _, foreign = lease_and_book(broker, slot(merchant_id="merchant-2"))
    ids = [b.booking_id for b in bookings]

    assert [b.booking_id for b in broker.list_bookings(MERCHANT)] == ids
    assert [b.booking_id for b in broker.list_bookings("merchant-2")] == [foreign.booking_id]
    assert broker.list_bookings("merchant-3") == []
    assert [b.booking_id for b in broker.list_bookings(MERCHANT, slots[1])] == [ids[1]]
    ranged = broker.list_bookings(MERCHANT, None, START_NS + HOUR_NS, START_NS + 2 * HOUR_NS)
    assert [b.booking_id for b in ranged] == [ids[1]]
    # (Bounds on whole milliseconds; finer bounds: see the next test.)
    after_first = START_NS + NS_PER_MS
    assert [b.booking_id for b in broker.list_bookings(MERCHANT, None, after_first)] == ids[1:]
    assert [b.booking_id for b in broker.list_bookings(MERCHANT, None, None, after_first)] == [
        ids[0]
    ]
    # Cancelled bookings stay listed; a rescheduled one is found at its new time.
    broker.cancel_booking(ids[0])
    assert broker.list_bookings(MERCHANT, slots[0])[0].status == "cancelled"
    later = START_NS + 5 * HOUR_NS
    broker.reschedule_booking(ids[1], later, DURATION_NS)
    assert [b.booking_id for b in broker.list_bookings(MERCHANT, None, later)] == [ids[1]]
    assert broker.list_bookings(MERCHANT, slots[1]) == []
    assert [b.booking_id for b in broker.list_bookings(MERCHANT)] == [ids[0], ids[2], ids[1]]


@pytest.mark.parametrize("offset_ns", [0, 500_000], ids=["whole-second-start", "sub-ms-start"])
def test_list_bookings_time_range_is_exact_to_the_nanosecond(broker, offset_ns):
    """Regression: list_bookings filtered [from, before) only on the booking index's
    whole-millisecond scores, so from = X + 1 ns still listed a booking starting at X."""
    s = slot(start_ns=START_NS + offset_ns)
    lease_and_book(broker, s, "ref-a")
    broker.create_lease(lease_request(client_reference="ref-b", start_ns=s.start_ns, staff_id="x"))
    # Reference behaviour: list_leases takes [from, before) to the nanosecond.
    assert broker.list_leases(MERCHANT, None, s.start_ns + 1) == []
    assert broker.list_leases(MERCHANT, None, None, s.start_ns) == []
    assert len(broker.list_leases(MERCHANT, None, s.start_ns, s.start_ns + 1)) == 1
    assert len(broker.list_bookings(MERCHANT, None, s.start_ns, s.start_ns + 1)) == 1
    # A booking starting at X is not in [X + 1 ns, ...) nor in [..., X).
    assert broker.list_bookings(MERCHANT, None, s.start_ns + 1) == []
    assert broker.list_bookings(MERCHANT, None, None, s.start_ns) == []


def test_get_lease_states(make_broker, clock):
    broker = make_broker(default_hold_ms=150, max_hold_ms=60_000)
    long = {"requested_expiry_ns": time.time_ns() + 30 * 10**9}
    held = broker.create_lease(lease_request(client_reference="held", **long))
    expiring = broker.create_lease(lease_request(client_reference="exp", start_ns=START_NS + 1))
    released = broker.create_lease(lease_request(client_reference="rel", start_ns=START_NS + 2))
    consumed = broker.create_lease(
        lease_request(client_reference="con", start_ns=START_NS + 3, **long)
    )
    broker.release_lease(released.lease_id)
    booking = broker.create_booking(booking_request(consumed.lease_id))
    clock.pass_ms(expiring.expires_at_ms)

    view = broker.get_lease(held.lease_id)
    assert (view.state, view.booking_id, view.ended_ms) == ("held", None, None)
    assert (view.fence, view.expires_at_ms, view.slot) == (1, held.expires_at_ms, slot())
    assert view.created_ms < view.expires_at_ms
    view = broker.get_lease(expiring.lease_id)
    assert (view.state, view.booking_id) == ("expired", None)
    assert view.expires_at_ms == expiring.expires_at_ms
    view = broker.get_lease(released.lease_id)
    assert (view.state, view.booking_id) == ("released", None)
    assert view.ended_ms is not None and view.ended_ms < view.expires_at_ms
    view = broker.get_lease(consumed.lease_id)
    assert (view.state, view.booking_id) == ("consumed", booking.booking_id)
    assert view.ended_ms is not None
    assert refusal(broker.get_lease, "l.x.y").reason is Reason.LEASE_NOT_FOUND
    assert refusal(broker.get_booking, "b.x.y").reason is Reason.BOOKING_NOT_FOUND


# ================================================================ inventory


def test_reload_without_a_slot_keeps_its_lease_and_booking(make_broker):
    broker = make_broker(default_capacity=0)
    kept, dropped = slot(start_ns=START_NS + HOUR_NS), slot()
    broker.replace_inventory(MERCHANT, [InventorySlot(dropped, 3), InventorySlot(kept, 1)])
    _, booking = lease_and_book(broker, dropped, "ref-a")
    live = broker.create_lease(lease_request(client_reference="ref-b"))
    assert counts(broker, dropped) == (1, 1)

    # The complete feed no longer lists the slot.
    assert broker.replace_inventory(MERCHANT, [InventorySlot(kept, 1)]) == 1
    assert refusal(broker.create_lease, lease_request(client_reference="ref-c")).reason is (
        Reason.SLOT_NOT_OFFERED
    )
    status = broker.slot_status(dropped)
    assert (status.source, status.capacity, status.holds, status.bookings) == ("unlisted", 0, 1, 1)
    # What was already granted is honoured: the booking stays, the lease still books.
    assert broker.get_booking(booking.booking_id).status == "confirmed"
    late = broker.create_booking(booking_request(live.lease_id, "Bob"))
    assert late.status == "confirmed"
    assert counts(broker, dropped) == (0, 2)
    assert broker.create_lease(lease_request(client_reference="ref-d", **dataclasses.asdict(kept)))


def test_lowering_capacity_cancels_nothing(broker):
    broker.set_capacity(slot(), 3)
    _, booking = lease_and_book(broker, None, "ref-a")
    leases = [broker.create_lease(lease_request(client_reference=f"ref-{i}")) for i in range(2)]
    assert broker.set_capacity(slot(), 0) == 3
    assert counts(broker, slot()) == (2, 1)
    assert broker.get_booking(booking.booking_id).status == "confirmed"
    assert [broker.get_lease(lease.lease_id).state for lease in leases] == ["held", "held"]
    assert broker.slot_status(slot()).free == 0
    assert refusal(broker.create_lease, lease_request(client_reference="x")).reason is (
        Reason.SLOT_FULL
    )
    # Raised again to 2: one more lease books, the other still does not fit, and stays held.
    broker.set_capacity(slot(), 2)
    assert broker.create_booking(booking_request(leases[0].lease_id)).status == "confirmed"
    error = refusal(broker.create_booking, booking_request(leases[1].lease_id, "Bob"))
    assert error.reason is Reason.SLOT_FULL
    assert broker.get_lease(leases[1].lease_id).state == "held"
    assert counts(broker, slot()) == (1, 2)


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
