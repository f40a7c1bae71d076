"""The operators' LeaseAdmin service (leasebroker.v1) through a real gRPC server and client.

Runs on fakeredis and on the real Redis. Covers every RPC's success path, its
error codes with their ErrorInfo reason and BadRequest field paths, an
end-to-end operator flow, the admin server's health and reflection services,
and ``leasebroker serve`` starting the admin server on its own port.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support import (
    HOUR_NS,
    MERCHANT,
    START_NS,
    START_S,
    ServeProcess,
    assert_status,
    availability_feed,
    book,
    call_status,
    client_info,
    feed_entry,
    hold,
    run_cli,
    slot,
    unknown_id,
)

from leasebroker.api.v0 import booking_service_pb2 as v0
from leasebroker.api.v0 import booking_service_pb2_grpc as v0_grpc
from leasebroker.api.v1 import admin_pb2 as pb
from leasebroker.api.v1 import admin_pb2_grpc as pb_grpc
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import IdKind, SlotId
from leasebroker.core.model import InventorySlot
from leasebroker.core.units import NS_PER_MS, NS_PER_S
from leasebroker.wire.server import start_admin_server, start_server

MINUTE_MS = 60_000
HOUR_S = 3600
SLOT = slot()
LATER_SLOT = slot(start_ns=START_NS + HOUR_NS)
# The client book() books for (see support.client_info).
CLIENT = client_info()
ADMIN_LISTENING_RE = re.compile(r"admin listening on (?P<host>\S+):(?P<port>\d+)")


# --- Fixtures and helpers.


@pytest.fixture
def start_admin(channel_to: Callable[..., grpc.Channel]) -> Callable[..., pb_grpc.LeaseAdminStub]:
    """``start_admin(broker, **options)``: an admin server on an ephemeral port, and a stub."""

    def start(broker: LeaseBroker, **options: Any) -> pb_grpc.LeaseAdminStub:
        return pb_grpc.LeaseAdminStub(
            channel_to(start_admin_server(broker, "127.0.0.1", 0, **options))
        )

    return start


@pytest.fixture
def admin(broker: LeaseBroker, start_admin: Callable[..., Any]) -> pb_grpc.LeaseAdminStub:
    return start_admin(broker)


def slot_pb(slot: SlotId) -> pb.Slot:
    message = pb.Slot(
        merchant_id=slot.merchant_id,
        service_id=slot.service_id,
        staff_id=slot.staff_id,
        room_id=slot.room_id,
    )
    message.start_time.FromNanoseconds(slot.start_ns)
    message.duration.FromNanoseconds(slot.duration_ns)
    return message


def extension(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * NS_PER_S))
    return d


def expect(
    call: Any, request: Any, code: grpc.StatusCode, reason: str, fields: set[str] | None = None
) -> dict[str, str]:
    """The call fails with ``code`` and ErrorInfo ``reason`` (domain leasebroker), and its
    BadRequest names exactly ``fields``; returns the violations."""
    return assert_status(call_status(call, request, timeout=10), code, reason, fields)


def invalid(call: Any, request: Any, *fields: str) -> dict[str, str]:
    return expect(call, request, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", set(fields))


def feed(*entries: dict[str, Any]) -> bytes:
    return json.dumps(availability_feed(*entries)).encode()


def inventory(broker: LeaseBroker, *items: tuple[SlotId, int]) -> None:
    broker.replace_inventory(MERCHANT, [InventorySlot(slot, capacity) for slot, capacity in items])


# --- GetLease.


def test_get_lease_returns_every_field_of_a_held_lease(broker, admin):
    granted = hold(broker, dataclasses.replace(SLOT, staff_id="s1"), availability_tag="tag-7")
    info = admin.GetLease(pb.GetLeaseRequest(lease_id=granted.lease_id))
    assert info.lease_id == granted.lease_id
    assert info.slot == slot_pb(granted.slot)
    assert (info.client_reference, info.availability_tag) == ("ref-1", "tag-7")
    assert info.state == pb.HELD
    assert info.fencing_token == granted.fence >= 1
    assert info.expire_time.ToMilliseconds() == granted.expires_at_ms
    create_ms = info.create_time.ToMilliseconds()
    assert create_ms + broker.config.default_hold_ms == granted.expires_at_ms
    assert not info.HasField("end_time")
    assert info.booking_id == ""


def test_get_lease_of_a_consumed_lease_names_its_booking(broker, admin):
    granted = hold(broker)
    booking = book(broker, granted.lease_id)
    info = admin.GetLease(pb.GetLeaseRequest(lease_id=granted.lease_id))
    assert info.state == pb.CONSUMED
    assert info.booking_id == booking.booking_id
    assert info.HasField("end_time")


@pytest.mark.parametrize(
    "lease_id",
    [unknown_id(IdKind.LEASE), "not-a-lease-id", unknown_id(IdKind.BOOKING)],
    ids=["unknown", "malformed", "a-booking-id"],
)
def test_get_lease_unknown_or_malformed_is_not_found(admin, lease_id):
    expect(
        admin.GetLease,
        pb.GetLeaseRequest(lease_id=lease_id),
        grpc.StatusCode.NOT_FOUND,
        "LEASE_NOT_FOUND",
    )


def test_get_lease_without_an_id_is_invalid(admin):
    invalid(admin.GetLease, pb.GetLeaseRequest(), "lease_id")


# --- GetBooking.


def test_get_booking_returns_every_field_and_follows_a_cancel(broker, admin):
    granted = hold(broker)
    booking = book(broker, granted.lease_id)
    info = admin.GetBooking(pb.GetBookingRequest(booking_id=booking.booking_id))
    assert info.booking_id == booking.booking_id
    assert info.lease_id == granted.lease_id
    assert info.slot == slot_pb(SLOT)
    assert info.state == pb.CONFIRMED
    assert info.fencing_token == granted.fence
    assert info.client_information == CLIENT
    assert info.create_time.ToMilliseconds() == booking.created_ms
    assert info.update_time == info.create_time

    broker.cancel_booking(booking.booking_id)
    cancelled = admin.GetBooking(pb.GetBookingRequest(booking_id=booking.booking_id))
    assert cancelled.state == pb.CANCELLED
    assert cancelled.update_time.ToMilliseconds() >= info.create_time.ToMilliseconds()


@pytest.mark.parametrize(
    "booking_id",
    [unknown_id(IdKind.BOOKING), "garbage", unknown_id(IdKind.LEASE)],
    ids=["unknown", "malformed", "a-lease-id"],
)
def test_get_booking_unknown_or_malformed_is_not_found(admin, booking_id):
    expect(
        admin.GetBooking,
        pb.GetBookingRequest(booking_id=booking_id),
        grpc.StatusCode.NOT_FOUND,
        "BOOKING_NOT_FOUND",
    )


def test_get_booking_without_an_id_is_invalid(admin):
    invalid(admin.GetBooking, pb.GetBookingRequest(), "booking_id")


# --- ListLeases.


def test_list_leases_filters_by_slot_and_start_range(make_broker, start_admin):
    broker = make_broker(default_capacity=5)
    admin = start_admin(broker)
    first = hold(broker, SLOT, "a")
    second = hold(broker, SLOT, "b")
    later = hold(broker, LATER_SLOT, "c")

    def ids(**fields: Any) -> list[set[str]]:
        """The listed ids grouped by slot start, in order (leases of one slot created
        within the same millisecond have no defined order)."""
        reply = admin.ListLeases(pb.ListLeasesRequest(merchant_id=MERCHANT, **fields))
        groups: dict[int, set[str]] = {}
        for info in reply.leases:
            groups.setdefault(info.slot.start_time.ToNanoseconds(), set()).add(info.lease_id)
        return list(groups.values())

    both = {first.lease_id, second.lease_id}
    assert ids() == [both, {later.lease_id}]
    assert ids(slot=slot_pb(LATER_SLOT)) == [{later.lease_id}]
    # The slot filter's merchant may be left empty: it is the request's.
    no_merchant = slot_pb(SLOT)
    no_merchant.merchant_id = ""
    assert ids(slot=no_merchant) == [both]
    boundary = pb.ListLeasesRequest()
    boundary.start_time_from.FromNanoseconds(LATER_SLOT.start_ns)
    assert ids(start_time_from=boundary.start_time_from) == [{later.lease_id}]
    assert ids(start_time_before=boundary.start_time_from) == [both]
    reply = admin.ListLeases(pb.ListLeasesRequest(merchant_id=MERCHANT))
    tokens = {info.lease_id: info.fencing_token for info in reply.leases}
    assert tokens == {first.lease_id: first.fence, second.lease_id: second.fence,
                      later.lease_id: later.fence}  # fmt: skip
    assert all(info.state == pb.HELD for info in reply.leases)


def test_list_leases_of_an_unknown_merchant_is_empty(admin):
    assert list(admin.ListLeases(pb.ListLeasesRequest(merchant_id="nobody")).leases) == []


def test_list_leases_leaves_out_released_leases(broker, admin):
    granted = hold(broker)
    broker.release_lease(granted.lease_id)
    assert list(admin.ListLeases(pb.ListLeasesRequest(merchant_id=MERCHANT)).leases) == []


def test_list_leases_rejects_bad_filters(admin):
    call = admin.ListLeases
    invalid(call, pb.ListLeasesRequest(), "merchant_id")
    invalid(call, pb.ListLeasesRequest(merchant_id="m\x00"), "merchant_id")
    other = slot_pb(SLOT)
    other.merchant_id = "someone-else"
    invalid(call, pb.ListLeasesRequest(merchant_id=MERCHANT, slot=other), "slot.merchant_id")
    incomplete = pb.Slot(merchant_id=MERCHANT)
    invalid(
        call,
        pb.ListLeasesRequest(merchant_id=MERCHANT, slot=incomplete),
        "slot.service_id",
        "slot.start_time",
        "slot.duration",
    )
    request = pb.ListLeasesRequest(merchant_id=MERCHANT)
    request.start_time_from.FromNanoseconds(START_NS)
    request.start_time_before.FromNanoseconds(START_NS)
    invalid(call, request, "start_time_before")
    request = pb.ListLeasesRequest(merchant_id=MERCHANT)
    request.start_time_from.nanos = -1
    invalid(call, request, "start_time_from")


# --- ListBookings.


def test_list_bookings_lists_cancelled_ones_too_and_filters(broker, admin):
    first = book(broker, hold(broker, SLOT, "a").lease_id)
    later = book(broker, hold(broker, LATER_SLOT, "b").lease_id)
    broker.cancel_booking(first.booking_id)

    def bookings(**fields: Any) -> list[tuple[str, int]]:
        reply = admin.ListBookings(pb.ListBookingsRequest(merchant_id=MERCHANT, **fields))
        return [(info.booking_id, info.state) for info in reply.bookings]

    assert bookings() == [(first.booking_id, pb.CANCELLED), (later.booking_id, pb.CONFIRMED)]
    assert bookings(slot=slot_pb(LATER_SLOT)) == [(later.booking_id, pb.CONFIRMED)]
    # Bounds finer than a millisecond are honoured exactly.
    just_after = pb.ListBookingsRequest()
    just_after.start_time_from.FromNanoseconds(START_NS + 1)
    assert bookings(start_time_from=just_after.start_time_from) == [
        (later.booking_id, pb.CONFIRMED)
    ]
    assert bookings(start_time_before=just_after.start_time_from) == [
        (first.booking_id, pb.CANCELLED)
    ]
    reply = admin.ListBookings(pb.ListBookingsRequest(merchant_id=MERCHANT))
    assert all(info.client_information == CLIENT for info in reply.bookings)


def test_list_bookings_rejects_bad_filters(admin):
    invalid(admin.ListBookings, pb.ListBookingsRequest(), "merchant_id")
    request = pb.ListBookingsRequest(merchant_id=MERCHANT)
    request.start_time_before.seconds = 300_000_000_000  # past year 9999
    invalid(admin.ListBookings, request, "start_time_before")


# --- ReleaseLease.


def test_release_lease_frees_the_spot_and_is_idempotent(broker, admin):
    granted = hold(broker)
    assert broker.slot_status(SLOT).holds == 1
    info = admin.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=granted.lease_id))
    assert info.state == pb.RELEASED
    assert info.HasField("end_time")
    assert broker.slot_status(SLOT).holds == 0
    again = admin.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=granted.lease_id))
    assert again == info


def test_release_lease_errors(broker, admin):
    consumed = hold(broker)
    book(broker, consumed.lease_id)
    call = admin.ReleaseLease
    expect(
        call,
        pb.ReleaseLeaseRequest(lease_id=consumed.lease_id),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LEASE_CONSUMED",
    )
    for lease_id in (unknown_id(IdKind.LEASE), "malformed"):
        expect(
            call,
            pb.ReleaseLeaseRequest(lease_id=lease_id),
            grpc.StatusCode.NOT_FOUND,
            "LEASE_NOT_FOUND",
        )
    invalid(call, pb.ReleaseLeaseRequest(), "lease_id")


# --- ExtendLease.


def test_extend_lease_moves_the_expiry_and_checks_the_fencing_token(broker, admin):
    granted = hold(broker)
    request = pb.ExtendLeaseRequest(
        lease_id=granted.lease_id, extension=extension(60), expected_fencing_token=granted.fence
    )
    info = admin.ExtendLease(request)
    assert info.state == pb.HELD
    assert info.expire_time.ToMilliseconds() == granted.expires_at_ms + MINUTE_MS
    # Without a token the check is skipped; a sub-millisecond extension still extends by 1 ms.
    tiny = admin.ExtendLease(
        pb.ExtendLeaseRequest(lease_id=granted.lease_id, extension=Duration(nanos=1))
    )
    assert tiny.expire_time.ToMilliseconds() == granted.expires_at_ms + MINUTE_MS + 1


def test_extend_lease_is_capped_at_the_maximum_hold(make_broker, start_admin):
    broker = make_broker(default_hold_ms=MINUTE_MS, max_hold_ms=5 * MINUTE_MS)
    admin = start_admin(broker)
    granted = hold(broker)
    info = admin.ExtendLease(
        pb.ExtendLeaseRequest(lease_id=granted.lease_id, extension=extension(3 * HOUR_S))
    )
    assert info.expire_time.ToMilliseconds() == info.create_time.ToMilliseconds() + 5 * MINUTE_MS


def test_extend_lease_with_a_stale_fencing_token_fails_precondition(broker, admin):
    granted = hold(broker)
    for token in (granted.fence - 1, granted.fence + 1):
        expect(
            admin.ExtendLease,
            pb.ExtendLeaseRequest(
                lease_id=granted.lease_id, extension=extension(60), expected_fencing_token=token
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "FENCING_TOKEN_STALE",
        )
    info = admin.GetLease(pb.GetLeaseRequest(lease_id=granted.lease_id))
    assert info.expire_time.ToMilliseconds() == granted.expires_at_ms  # not extended


def test_extend_lease_of_a_consumed_lease_fails_precondition(broker, admin):
    granted = hold(broker)
    book(broker, granted.lease_id)
    expect(
        admin.ExtendLease,
        pb.ExtendLeaseRequest(lease_id=granted.lease_id, extension=extension(60)),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LEASE_CONSUMED",
    )


def test_extend_lease_of_an_ended_or_unknown_lease_is_not_found(broker, admin):
    released = hold(broker, ref="released")
    broker.release_lease(released.lease_id)
    short = hold(broker, LATER_SLOT, "short", requested_expiry_ns=time.time_ns() + 300 * NS_PER_MS)
    # Wait (bounded) until the short lease's hold has ended on the store's clock.
    deadline = time.monotonic() + 10
    while admin.GetLease(pb.GetLeaseRequest(lease_id=short.lease_id)).state != pb.EXPIRED:
        assert time.monotonic() < deadline, "the short lease never expired"
        time.sleep(0.05)
    cases = [
        (released.lease_id, "LEASE_RELEASED"),
        (short.lease_id, "LEASE_EXPIRED"),
        (unknown_id(IdKind.LEASE), "LEASE_NOT_FOUND"),
        ("malformed", "LEASE_NOT_FOUND"),
    ]
    for lease_id, reason in cases:
        expect(
            admin.ExtendLease,
            pb.ExtendLeaseRequest(lease_id=lease_id, extension=extension(60)),
            grpc.StatusCode.NOT_FOUND,
            reason,
        )


@pytest.mark.parametrize(
    ("fields", "bad"),
    [
        ({"extension": Duration(seconds=60)}, {"lease_id"}),
        ({"lease_id": "x"}, {"extension"}),
        ({"lease_id": "x", "extension": Duration()}, {"extension"}),
        ({"lease_id": "x", "extension": Duration(seconds=-5)}, {"extension"}),
        ({"lease_id": "x", "extension": Duration(seconds=1, nanos=-1)}, {"extension"}),
        ({"extension": Duration()}, {"lease_id", "extension"}),
    ],
)
def test_extend_lease_rejects_bad_requests(admin, fields, bad):
    invalid(admin.ExtendLease, pb.ExtendLeaseRequest(**fields), *bad)


# --- GetSlotAvailability.


def test_slot_availability_counts_holds_and_bookings(make_broker, start_admin):
    broker = make_broker(default_capacity=3)
    admin = start_admin(broker)
    request = pb.GetSlotAvailabilityRequest(slot=slot_pb(SLOT))
    empty = admin.GetSlotAvailability(request)
    assert empty.slot == slot_pb(SLOT)
    assert (empty.capacity, empty.capacity_source) == (3, pb.DEFAULT)
    assert (empty.holds, empty.bookings, empty.free) == (0, 0, 3)
    hold(broker, ref="a")
    book(broker, hold(broker, ref="b").lease_id)
    used = admin.GetSlotAvailability(request)
    assert (used.holds, used.bookings, used.free) == (1, 1, 1)


def test_slot_availability_tells_inventory_from_unlisted(broker, admin):
    inventory(broker, (SLOT, 2))
    listed = admin.GetSlotAvailability(pb.GetSlotAvailabilityRequest(slot=slot_pb(SLOT)))
    assert (listed.capacity, listed.capacity_source, listed.free) == (2, pb.INVENTORY, 2)
    unlisted = admin.GetSlotAvailability(pb.GetSlotAvailabilityRequest(slot=slot_pb(LATER_SLOT)))
    assert (unlisted.capacity, unlisted.capacity_source, unlisted.free) == (0, pb.UNLISTED, 0)


def bad_slot(**changes: Any) -> pb.Slot:
    slot = slot_pb(SLOT)
    for name, value in changes.items():
        if value is None:
            slot.ClearField(name)
        elif name in ("start_time", "duration"):
            getattr(slot, name).CopyFrom(value)
        else:
            setattr(slot, name, value)
    return slot


BAD_SLOTS = [
    ({"merchant_id": ""}, "slot.merchant_id"),
    ({"service_id": ""}, "slot.service_id"),
    ({"service_id": "x" * 300}, "slot.service_id"),
    ({"staff_id": "a\nb"}, "slot.staff_id"),
    ({"room_id": "\x07"}, "slot.room_id"),
    ({"start_time": None}, "slot.start_time"),
    ({"duration": None}, "slot.duration"),
    ({"duration": Duration(seconds=-60)}, "slot.duration"),
    ({"duration": Duration(seconds=32 * 86_400)}, "slot.duration"),
    ({"duration": Duration(seconds=1, nanos=-5)}, "slot.duration"),
]


@pytest.mark.parametrize(("changes", "field"), BAD_SLOTS, ids=[f for _, f in BAD_SLOTS])
def test_slot_availability_rejects_a_bad_slot(admin, changes, field):
    invalid(
        admin.GetSlotAvailability, pb.GetSlotAvailabilityRequest(slot=bad_slot(**changes)), field
    )


def test_slot_availability_rejects_bad_start_times_and_names_every_bad_field(admin):
    call = admin.GetSlotAvailability
    invalid(call, pb.GetSlotAvailabilityRequest(), "slot")
    slot = slot_pb(SLOT)
    slot.start_time.nanos = 1_000_000_000
    invalid(call, pb.GetSlotAvailabilityRequest(slot=slot), "slot.start_time")
    slot = slot_pb(SLOT)
    slot.start_time.seconds = -1  # before 1970: slot starts are kept as int64 ns since then
    invalid(call, pb.GetSlotAvailabilityRequest(slot=slot), "slot.start_time")
    violations = invalid(
        call,
        pb.GetSlotAvailabilityRequest(slot=pb.Slot()),
        "slot.merchant_id",
        "slot.service_id",
        "slot.start_time",
        "slot.duration",
    )
    assert violations["slot.start_time"] == "is required"


# --- ListSlotAvailability.


def test_list_slot_availability_covers_one_day_of_inventory_and_leases(broker, admin):
    next_day = SlotId(MERCHANT, "haircut", START_NS + 25 * HOUR_S * NS_PER_S, SLOT.duration_ns)
    inventory(broker, (SLOT, 2), (LATER_SLOT, 1), (next_day, 1))
    hold(broker, LATER_SLOT)
    request = pb.ListSlotAvailabilityRequest(merchant_id=MERCHANT)
    request.day_start.FromNanoseconds(START_NS)
    reply = admin.ListSlotAvailability(request)
    summary = [
        (s.slot.start_time.ToNanoseconds(), s.capacity, s.holds, s.free) for s in reply.slots
    ]
    assert summary == [(SLOT.start_ns, 2, 0, 2), (LATER_SLOT.start_ns, 1, 1, 0)]
    assert all(s.capacity_source == pb.INVENTORY for s in reply.slots)


def test_list_slot_availability_includes_leased_slots_without_inventory(broker, admin):
    hold(broker)
    request = pb.ListSlotAvailabilityRequest(merchant_id=MERCHANT)
    request.day_start.FromNanoseconds(START_NS - HOUR_S * NS_PER_S)
    (only,) = admin.ListSlotAvailability(request).slots
    assert only.slot == slot_pb(SLOT)
    assert (only.capacity_source, only.holds, only.free) == (pb.DEFAULT, 1, 0)


def test_list_slot_availability_rejects_bad_requests(admin):
    call = admin.ListSlotAvailability
    invalid(call, pb.ListSlotAvailabilityRequest(), "merchant_id", "day_start")
    request = pb.ListSlotAvailabilityRequest(merchant_id=MERCHANT)
    request.day_start.nanos = -3
    invalid(call, request, "day_start")


# --- LoadInventory and GetInventory.


def test_load_inventory_replaces_each_merchants_inventory(broker, admin):
    inventory(broker, (LATER_SLOT, 9))  # replaced by the feed, not merged with it
    document = feed(
        feed_entry(spots_open=2),
        feed_entry(start_sec=START_S + HOUR_S, spots_open=0, resources={"staff_id": "s1"}),
        feed_entry(merchant_id="merchant-2", spots_open=4),
    )
    reply = admin.LoadInventory(pb.LoadInventoryRequest(feed_json=document))
    assert (reply.merchants, reply.slots) == (2, 3)

    listed = admin.GetInventory(pb.GetInventoryRequest(merchant_id=MERCHANT)).slots
    staffed = SlotId(MERCHANT, "haircut", LATER_SLOT.start_ns, SLOT.duration_ns, staff_id="s1")
    assert [(s.slot, s.capacity) for s in listed] == [(slot_pb(SLOT), 2), (slot_pb(staffed), 0)]
    other = admin.GetInventory(pb.GetInventoryRequest(merchant_id="merchant-2")).slots
    assert [s.capacity for s in other] == [4]


def test_complete_load_inventory_withdraws_omitted_merchants(broker, admin):
    inventory(broker, (LATER_SLOT, 9))  # MERCHANT has an inventory; the feed omits it
    document = feed(feed_entry(merchant_id="merchant-2", spots_open=4))
    plain = admin.LoadInventory(pb.LoadInventoryRequest(feed_json=document))
    assert list(plain.withdrawn_merchants) == []
    assert len(admin.GetInventory(pb.GetInventoryRequest(merchant_id=MERCHANT)).slots) == 1

    reply = admin.LoadInventory(pb.LoadInventoryRequest(feed_json=document, complete=True))
    assert (reply.merchants, reply.slots, list(reply.withdrawn_merchants)) == (1, 1, [MERCHANT])
    withdrawn = admin.GetInventory(pb.GetInventoryRequest(merchant_id=MERCHANT))
    assert (list(withdrawn.slots), withdrawn.state) == ([], pb.WITHDRAWN)
    loaded = admin.GetInventory(pb.GetInventoryRequest(merchant_id="merchant-2"))
    assert (len(loaded.slots), loaded.state) == (1, pb.LOADED)


def test_load_inventory_takes_a_bare_array_feed(admin):
    document = json.dumps([feed_entry(spots_open=3)]).encode()
    reply = admin.LoadInventory(pb.LoadInventoryRequest(feed_json=document))
    assert (reply.merchants, reply.slots) == (1, 1)


BAD_FEEDS = {
    "empty": b"",
    "not-json": b"{nope",
    "not-utf8": b'["\xff\xfe"]',
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "no-entries": b"[]",
    "wrong-shape": b'{"feeds": []}',
    "negative-spots": json.dumps([feed_entry(spots_open=-1)]).encode(),
    "missing-start": json.dumps([feed_entry(start_sec=None)]).encode(),
    "listed-twice": json.dumps([feed_entry(), feed_entry()]).encode(),
    "restricted": json.dumps(
        {
            "service_availability": [
                {"merchant_id_restrict": MERCHANT, "availability": [feed_entry()]}
            ]
        }
    ).encode(),
}


@pytest.mark.parametrize("document", BAD_FEEDS.values(), ids=BAD_FEEDS.keys())
def test_load_inventory_rejects_a_bad_feed_and_loads_nothing(admin, document):
    violations = invalid(
        admin.LoadInventory, pb.LoadInventoryRequest(feed_json=document), "feed_json"
    )
    assert violations["feed_json"]
    assert list(admin.GetInventory(pb.GetInventoryRequest(merchant_id=MERCHANT)).slots) == []


def test_load_inventory_larger_than_the_message_limit_is_resource_exhausted(broker, start_admin):
    admin = start_admin(broker, max_message_bytes=64 * 1024)
    padded = json.dumps([feed_entry(availability_tag="x" * 100_000)]).encode()
    details = call_status(
        admin.LoadInventory, pb.LoadInventoryRequest(feed_json=padded), timeout=10
    )
    assert details is not None and details.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert list(admin.GetInventory(pb.GetInventoryRequest(merchant_id=MERCHANT)).slots) == []


def test_get_inventory_of_a_merchant_without_one_is_empty(admin):
    reply = admin.GetInventory(pb.GetInventoryRequest(merchant_id="nobody"))
    assert (list(reply.slots), reply.state) == ([], pb.NO_INVENTORY)


def test_get_inventory_rejects_a_bad_merchant_id(admin):
    invalid(admin.GetInventory, pb.GetInventoryRequest(), "merchant_id")
    invalid(admin.GetInventory, pb.GetInventoryRequest(merchant_id="m" * 257), "merchant_id")


# --- SetSlotCapacity.


def test_set_slot_capacity_reports_the_previous_capacity(broker, admin):
    request = pb.SetSlotCapacityRequest(slot=slot_pb(SLOT), capacity=3)
    first = admin.SetSlotCapacity(request)
    assert not first.HasField("previous_capacity")  # it was not listed
    request.capacity = 0
    second = admin.SetSlotCapacity(request)
    assert second.HasField("previous_capacity") and second.previous_capacity == 3
    status = admin.GetSlotAvailability(pb.GetSlotAvailabilityRequest(slot=slot_pb(SLOT)))
    assert (status.capacity, status.capacity_source) == (0, pb.INVENTORY)
    listed = admin.GetInventory(pb.GetInventoryRequest(merchant_id=MERCHANT)).slots
    assert [(s.slot, s.capacity) for s in listed] == [(slot_pb(SLOT), 0)]


def test_lowering_capacity_keeps_existing_holds_and_refuses_new_ones(broker, admin):
    hold(broker, ref="a")
    admin.SetSlotCapacity(pb.SetSlotCapacityRequest(slot=slot_pb(SLOT), capacity=1))
    status = admin.GetSlotAvailability(pb.GetSlotAvailabilityRequest(slot=slot_pb(SLOT)))
    assert (status.holds, status.free) == (1, 0)
    with pytest.raises(BrokerError) as refused:
        hold(broker, ref="b")
    assert refused.value.reason is Reason.SLOT_FULL


def test_set_slot_capacity_rejects_bad_requests(admin):
    call = admin.SetSlotCapacity
    invalid(call, pb.SetSlotCapacityRequest(slot=slot_pb(SLOT), capacity=-1), "capacity")
    invalid(call, pb.SetSlotCapacityRequest(slot=slot_pb(SLOT), capacity=2**31), "capacity")
    invalid(call, pb.SetSlotCapacityRequest(capacity=1), "slot")
    invalid(
        call,
        pb.SetSlotCapacityRequest(slot=bad_slot(duration=None), capacity=-2),
        "slot.duration",
        "capacity",
    )


# --- An operator's session, end to end.


def test_operator_flow_load_inspect_extend_release(make_broker, start_admin):
    broker = make_broker(default_hold_ms=2 * MINUTE_MS, max_hold_ms=10 * MINUTE_MS)
    admin = start_admin(broker)
    loaded = admin.LoadInventory(pb.LoadInventoryRequest(feed_json=feed(feed_entry(spots_open=1))))
    assert (loaded.merchants, loaded.slots) == (1, 1)

    granted = hold(broker)  # as CreateLease would, through the broker
    (listed,) = admin.ListLeases(pb.ListLeasesRequest(merchant_id=MERCHANT)).leases
    assert listed.lease_id == granted.lease_id
    assert listed.fencing_token == granted.fence >= 1
    assert admin.GetSlotAvailability(pb.GetSlotAvailabilityRequest(slot=slot_pb(SLOT))).free == 0

    extended = admin.ExtendLease(
        pb.ExtendLeaseRequest(
            lease_id=granted.lease_id,
            extension=extension(HOUR_S),
            expected_fencing_token=listed.fencing_token,
        )
    )
    cap_ms = listed.create_time.ToMilliseconds() + 10 * MINUTE_MS
    assert extended.expire_time.ToMilliseconds() == cap_ms
    assert extended.fencing_token == listed.fencing_token

    released = admin.ReleaseLease(pb.ReleaseLeaseRequest(lease_id=granted.lease_id))
    assert released.state == pb.RELEASED
    status = admin.GetSlotAvailability(pb.GetSlotAvailabilityRequest(slot=slot_pb(SLOT)))
    assert (status.capacity, status.holds, status.bookings, status.free) == (1, 0, 0, 1)
    assert list(admin.ListLeases(pb.ListLeasesRequest(merchant_id=MERCHANT)).leases) == []
    # The next holder of the spot gets a larger fencing token.
    assert hold(broker, ref="next").fence > granted.fence


# --- The admin server itself.


def test_admin_server_has_health_and_reflection(broker):
    running = start_admin_server(broker, "127.0.0.1", 0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            for service in ("", "leasebroker.v1.LeaseAdmin"):
                reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING
            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            (reply,) = list(reflection.ServerReflectionInfo(iter([request]), timeout=10))
            names = {s.name for s in reply.list_services_response.service}
            assert "leasebroker.v1.LeaseAdmin" in names
            assert "ext.maps.booking.partner.v0.BookingService" not in names
    finally:
        running.stop(grace=None)


def test_each_server_serves_only_its_own_service(broker):
    """The BookingService port (the one Google calls) has no LeaseAdmin, and vice versa."""
    booking = start_server(broker, "127.0.0.1", 0, workers=2)
    admin_server = start_admin_server(broker, "127.0.0.1", 0, workers=2)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{booking.port}") as channel:
            stub = pb_grpc.LeaseAdminStub(channel)
            details = call_status(
                stub.GetInventory, pb.GetInventoryRequest(merchant_id="m"), timeout=10
            )
            assert details is not None and details.code == grpc.StatusCode.UNIMPLEMENTED
        with grpc.insecure_channel(f"127.0.0.1:{admin_server.port}") as channel:
            stub = v0_grpc.BookingServiceStub(channel)
            details = call_status(stub.CreateLease, v0.CreateLeaseRequest(), timeout=10)
            assert details is not None and details.code == grpc.StatusCode.UNIMPLEMENTED
    finally:
        booking.stop(grace=None)
        admin_server.stop(grace=None)


# --- `leasebroker serve` starts the admin server on its own port.


def test_serve_starts_the_admin_server_on_its_own_port(tmp_path):
    path = tmp_path / "feed.json"
    path.write_bytes(feed(feed_entry(spots_open=2)))
    with ServeProcess(["--admin-port", "0", "--inventory", str(path)]) as server:
        port = server.wait_listening()
        # The BookingService's line comes first, so tools that take the first
        # "listening on" line still find the port Google calls.
        assert not ADMIN_LISTENING_RE.search(server.lines[-1])
        admin_port = int(server.wait_for(ADMIN_LISTENING_RE)["port"])
        assert admin_port not in (0, port)
        with grpc.insecure_channel(f"127.0.0.1:{admin_port}") as channel:
            stub = pb_grpc.LeaseAdminStub(channel)
            reply = stub.GetInventory(pb.GetInventoryRequest(merchant_id=MERCHANT), timeout=10)
        assert [(s.slot, s.capacity) for s in reply.slots] == [(slot_pb(SLOT), 2)]
        assert server.stop() == 0  # SIGTERM stops both servers and exits cleanly
        server.wait_for(re.compile(r"\bstopped\b"))


def test_serve_refuses_the_same_port_for_both_services():
    result = run_cli(["serve", "--port", "50123", "--admin-port", "50123"])
    assert result.returncode == 2
    assert "--admin-port must differ from --port" in result.stderr
