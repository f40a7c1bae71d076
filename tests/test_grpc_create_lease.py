"""CreateLease through the real gRPC server and client, on fakeredis and on the real Redis.

Covers the v0 response contract (fresh lease_id, expiry set, every other field
echoed, unknown fields kept), every status code with its ErrorInfo and
BadRequest details, the field validation matrix, idempotent replay, expiry
shortening and clipping, and the health service.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import unknown_fields
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import (
    START_NS,
    assert_status,
    call_status,
    create_request,
    future_lease,
    slot,
    status_details,
)

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.model import InventorySlot
from leasebroker.core.units import NS_PER_MS, NS_PER_S
from leasebroker.wire.server import start_server

MINUTE_MS = 60_000
# Field 99 (varint 42): a field this version of the proto does not know.
UNKNOWN_FIELD = bytes([0x98, 0x06, 42])
# A field path of an id in the v0 Lease, by the future_lease keyword that sets it.
ID_FIELDS = {
    "merchant_id": "lease.merchant_id",
    "service_id": "lease.service_id",
    "client_reference": "lease.client_reference",
    "staff_id": "lease.resources.staff_id",
    "room_id": "lease.resources.room_id",
    "availability_tag": "lease.availability_tag",
}
REQUIRED_IDS = ("merchant_id", "service_id", "client_reference")


def now_ns() -> int:
    return time.time_ns()


def whole_seconds_from_now(seconds: int) -> int:
    """An instant ``seconds`` from now, on a whole second (so ms rounding cannot move it)."""
    return (now_ns() // NS_PER_S + seconds) * NS_PER_S


def expiry_ns(lease: pb.Lease) -> int:
    return lease.lease_expiration_time.ToNanoseconds()


def without_server_fields(lease: pb.Lease) -> pb.Lease:
    """A copy without lease_id and lease_expiration_time, the two fields the server sets."""
    copy = pb.Lease()
    copy.CopyFrom(lease)
    copy.ClearField("lease_id")
    copy.ClearField("lease_expiration_time")
    return copy


def unknown(message: object) -> list[tuple[int, int, object]]:
    return [(f.field_number, f.wire_type, f.data) for f in unknown_fields.UnknownFieldSet(message)]


@pytest.fixture
def channel(broker: LeaseBroker, channel_to) -> grpc.Channel:
    """A channel to a real server for ``broker``, for services other than BookingService."""
    return channel_to(start_server(broker, "127.0.0.1", 0, workers=4))


# --- the success contract --------------------------------------------------------------------


def test_success_sets_id_and_expiry_and_echoes_everything_else(stub):
    lease = future_lease(
        staff_id="anna",
        room_id="room 2",
        availability_tag="tag-7",
        lease_id="l.chosen-by-the-client",
    )
    lease.MergeFromString(UNKNOWN_FIELD)
    lease.resources.MergeFromString(UNKNOWN_FIELD)
    before = now_ns()

    reply = stub.CreateLease(create_request(lease)).lease

    assert reply.lease_id.startswith("l.")
    assert reply.lease_id != "l.chosen-by-the-client"
    assert reply.HasField("lease_expiration_time")
    assert before < expiry_ns(reply) <= START_NS
    assert without_server_fields(reply) == without_server_fields(lease)
    assert reply.resources.staff_id == "anna"
    assert reply.resources.room_id == "room 2"
    assert unknown(reply) == [(99, 0, 42)]
    assert unknown(reply.resources) == [(99, 0, 42)]


def test_lease_ids_are_fresh_and_carry_at_least_96_random_bits(stub):
    first = stub.CreateLease(create_request(client_reference="a", staff_id="anna")).lease
    second = stub.CreateLease(create_request(client_reference="b", staff_id="bob")).lease

    assert first.lease_id != second.lease_id
    tokens = [lease.lease_id.rsplit(".", 1)[1] for lease in (first, second)]
    assert tokens[0] != tokens[1]
    for token in tokens:
        assert re.fullmatch(r"[A-Za-z0-9_-]+", token), token
        assert len(token) * 6 >= 96, token


def test_ids_of_exactly_256_bytes_are_accepted(stub):
    long_id = "é" * 128  # 256 UTF-8 bytes
    lease = future_lease(**dict.fromkeys(ID_FIELDS, long_id))
    reply = stub.CreateLease(create_request(lease)).lease
    assert without_server_fields(reply) == without_server_fields(lease)


# --- expiry ----------------------------------------------------------------------------------


def test_requested_expiry_within_max_hold_is_granted_exactly(make_broker, make_stub):
    stub = make_stub(make_broker(max_hold_ms=30 * MINUTE_MS))
    wanted = whole_seconds_from_now(120)
    reply = stub.CreateLease(create_request(expires_ns=wanted)).lease
    assert expiry_ns(reply) == wanted


def test_expiry_is_shortened_to_max_hold(make_broker, make_stub):
    max_hold_ms = 10 * MINUTE_MS
    stub = make_stub(make_broker(default_hold_ms=MINUTE_MS, max_hold_ms=max_hold_ms))
    requested = START_NS - NS_PER_S  # about a day away
    before = now_ns()
    reply = stub.CreateLease(create_request(expires_ns=requested)).lease
    after = now_ns()

    granted = expiry_ns(reply)
    assert granted < requested
    # Redis's clock decides; it is this machine's clock, so a minute of slack is plenty.
    slack = MINUTE_MS * NS_PER_MS
    hold = max_hold_ms * NS_PER_MS
    assert before + hold - slack <= granted <= after + hold + slack


def test_default_hold_is_used_when_no_expiry_is_requested(make_broker, make_stub):
    default_hold_ms = 2 * MINUTE_MS
    stub = make_stub(make_broker(default_hold_ms=default_hold_ms, max_hold_ms=30 * MINUTE_MS))
    before = now_ns()
    reply = stub.CreateLease(create_request()).lease
    after = now_ns()
    hold = default_hold_ms * NS_PER_MS
    slack = 30 * NS_PER_S
    assert before + hold - slack <= expiry_ns(reply) <= after + hold + slack


@pytest.mark.parametrize("requested", [None, "after_start"], ids=["default-hold", "requested"])
def test_expiry_is_clipped_at_slot_start(stub, requested):
    start = whole_seconds_from_now(30)  # sooner than the 10 minute default hold
    expires = start + 60 * NS_PER_S if requested else None
    reply = stub.CreateLease(create_request(start_ns=start, expires_ns=expires)).lease
    assert expiry_ns(reply) == start
    assert reply.start_time.ToNanoseconds() == start


# --- every status code with its details ------------------------------------------------------


def test_invalid_field(stub):
    details = call_status(stub.CreateLease, create_request(merchant_id=""))
    assert_status(details, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", {"lease.merchant_id"})


def test_start_time_passed(stub):
    details = call_status(stub.CreateLease, create_request(start_ns=now_ns() - 3600 * NS_PER_S))
    assert_status(
        details, grpc.StatusCode.INVALID_ARGUMENT, "START_TIME_PASSED", {"lease.start_time"}
    )


def test_expiry_not_in_future(stub):
    request = create_request(expires_ns=now_ns() - 60 * NS_PER_S)
    details = call_status(stub.CreateLease, request)
    assert_status(
        details,
        grpc.StatusCode.INVALID_ARGUMENT,
        "EXPIRY_NOT_IN_FUTURE",
        {"lease.lease_expiration_time"},
    )


def test_client_reference_in_use(stub):
    stub.CreateLease(create_request(client_reference="r"))
    other_slot = create_request(client_reference="r", start_ns=START_NS + 3600 * NS_PER_S)
    details = call_status(stub.CreateLease, other_slot)
    assert_status(details, grpc.StatusCode.ALREADY_EXISTS, "CLIENT_REFERENCE_IN_USE")


def test_slot_full(stub):
    stub.CreateLease(create_request(client_reference="first"))
    details = call_status(stub.CreateLease, create_request(client_reference="second"))
    assert_status(details, grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOT_FULL")


def test_an_unknown_merchant_is_invalid_argument(make_broker, make_stub):
    stub = make_stub(make_broker(default_capacity=0))
    details = call_status(stub.CreateLease, create_request())
    assert_status(
        details, grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_MERCHANT", {"lease.merchant_id"}
    )


def test_an_unknown_service_is_invalid_argument(broker, stub):
    broker.replace_inventory("merchant-1", [InventorySlot(slot(), 1)])
    details = call_status(stub.CreateLease, create_request(service_id="colour"))
    assert_status(
        details, grpc.StatusCode.INVALID_ARGUMENT, "UNKNOWN_SERVICE", {"lease.service_id"}
    )


def test_slot_not_offered_outside_loaded_inventory(broker, stub):
    offered = slot()
    broker.replace_inventory("merchant-1", [InventorySlot(offered, 1)])
    assert stub.CreateLease(create_request(client_reference="in")).lease.lease_id
    other = create_request(client_reference="out", start_ns=START_NS + 3600 * NS_PER_S)
    details = call_status(stub.CreateLease, other)
    assert_status(details, grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOT_NOT_OFFERED")


def test_store_unavailable(make_stub, unreachable_broker):
    stub = make_stub(unreachable_broker)
    details = call_status(stub.CreateLease, create_request())
    assert_status(details, grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")


def test_unexpected_error_is_internal_and_leaks_nothing(broker, stub, monkeypatch):
    def explode(_request):
        raise RuntimeError("secret detail")

    # The script call both CreateLease paths build (threaded and asyncio).
    monkeypatch.setattr(broker, "create_lease_call", explode)
    with pytest.raises(grpc.RpcError) as caught:
        stub.CreateLease(create_request())

    details = status_details(caught.value)
    assert_status(details, grpc.StatusCode.INTERNAL, "INTERNAL")
    assert "secret detail" not in details.message
    trailers = b"".join(
        value if isinstance(value, bytes) else value.encode()
        for _key, value in caught.value.trailing_metadata() or ()
    )
    assert b"secret detail" not in trailers


# --- the validation matrix -------------------------------------------------------------------


def shape(mutate: Callable[[pb.Lease], None], **overrides) -> Callable[[], pb.Lease]:
    """A lease builder: future_lease(**overrides), then ``mutate`` applied to it."""

    def build() -> pb.Lease:
        lease = future_lease(**overrides)
        mutate(lease)
        return lease

    return build


def with_id(name: str, value: str) -> Callable[[], pb.Lease]:
    return lambda: future_lease(**{name: value})


def setter(path: str, value: int) -> Callable[[pb.Lease], None]:
    """Set ``lease.<message>.<field>`` (e.g. ``start_time.nanos``) to a raw value."""
    message, name = path.split(".")
    return lambda lease: setattr(getattr(lease, message), name, value)


SHAPE_CASES = [
    ("start-missing", lambda: future_lease(start_ns=None), "lease.start_time"),
    ("duration-missing", lambda: future_lease(duration_s=None), "lease.duration"),
    ("start-nanos-negative", shape(setter("start_time.nanos", -1)), "lease.start_time"),
    ("start-nanos-1e9", shape(setter("start_time.nanos", NS_PER_S)), "lease.start_time"),
    (
        "start-after-year-9999",
        shape(setter("start_time.seconds", 253_402_300_800)),
        "lease.start_time",
    ),
    (
        "expiry-nanos-negative",
        shape(setter("lease_expiration_time.nanos", -1), expires_ns=START_NS - NS_PER_S),
        "lease.lease_expiration_time",
    ),
    (
        "expiry-nanos-1e9",
        shape(setter("lease_expiration_time.nanos", NS_PER_S), expires_ns=START_NS - NS_PER_S),
        "lease.lease_expiration_time",
    ),
    ("duration-mixed-signs", shape(setter("duration.nanos", -1)), "lease.duration"),
    (
        "duration-mixed-signs-negative-seconds",
        shape(setter("duration.nanos", 1), duration_s=-60),
        "lease.duration",
    ),
    ("duration-nanos-1e9", shape(setter("duration.nanos", NS_PER_S)), "lease.duration"),
    ("duration-zero", lambda: future_lease(duration_s=0), "lease.duration"),
    ("duration-negative", lambda: future_lease(duration_s=-1800), "lease.duration"),
    (
        "duration-negative-nanos-only",
        shape(setter("duration.nanos", -1), duration_s=0),
        "lease.duration",
    ),
    ("duration-over-31-days", lambda: future_lease(duration_s=31 * 86_400 + 1), "lease.duration"),
]
ID_CASES = [
    *[(f"{name}-empty", with_id(name, ""), ID_FIELDS[name]) for name in REQUIRED_IDS],
    *[(f"{name}-257-bytes", with_id(name, "x" * 257), path) for name, path in ID_FIELDS.items()],
    *[(f"{name}-258-utf8", with_id(name, "é" * 129), path) for name, path in ID_FIELDS.items()],
    *[(f"{name}-control", with_id(name, "a\x01b"), path) for name, path in ID_FIELDS.items()],
    *[(f"{name}-newline", with_id(name, "a\nb"), path) for name, path in ID_FIELDS.items()],
    *[(f"{name}-del", with_id(name, "a\x7f"), path) for name, path in ID_FIELDS.items()],
]


@pytest.mark.parametrize(
    ("build", "field"),
    [pytest.param(build, field, id=name) for name, build, field in SHAPE_CASES + ID_CASES],
)
def test_invalid_field_is_named(stub, build, field):
    details = call_status(stub.CreateLease, create_request(build()))
    assert_status(details, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_FIELD", {field})
    assert details.violations[field]
    assert field in details.message


def test_every_bad_field_is_named_at_once(stub):
    lease = future_lease(
        merchant_id="",
        client_reference="x" * 257,
        room_id="a\x00b",
        availability_tag="tag\x1f",
        duration_s=0,
    )
    lease.start_time.nanos = -1
    details = call_status(stub.CreateLease, create_request(lease))
    assert_status(
        details,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        {
            "lease.merchant_id",
            "lease.client_reference",
            "lease.resources.room_id",
            "lease.availability_tag",
            "lease.duration",
            "lease.start_time",
        },
    )


def test_a_missing_lease_names_every_required_field(stub):
    details = call_status(stub.CreateLease, pb.CreateLeaseRequest())
    assert_status(
        details,
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_FIELD",
        {
            "lease.merchant_id",
            "lease.service_id",
            "lease.client_reference",
            "lease.start_time",
            "lease.duration",
        },
    )


# --- idempotent replay -----------------------------------------------------------------------


@pytest.mark.parametrize("expires", [None, START_NS - 3600 * NS_PER_S], ids=["default", "asked"])
def test_replay_returns_the_identical_response(stub, expires):
    request = create_request(staff_id="anna", availability_tag="t", expires_ns=expires)
    first = stub.CreateLease(request)
    assert stub.CreateLease(request) == first
    assert stub.CreateLease(request) == first


def test_replay_holds_no_extra_spot_and_works_on_a_full_slot(make_broker, make_stub):
    stub = make_stub(make_broker(default_capacity=2))
    first = stub.CreateLease(create_request(client_reference="a"))
    assert stub.CreateLease(create_request(client_reference="a")) == first
    stub.CreateLease(create_request(client_reference="b"))  # the slot is now full

    assert stub.CreateLease(create_request(client_reference="a")) == first
    details = call_status(stub.CreateLease, create_request(client_reference="c"))
    assert_status(details, grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOT_FULL")


def test_replay_ignores_the_request_lease_id(stub):
    first = stub.CreateLease(create_request()).lease
    again = stub.CreateLease(create_request(lease_id="l.something-else")).lease
    assert again == first


@pytest.mark.parametrize(
    "change",
    [
        {"start_ns": START_NS + 3600 * NS_PER_S},
        {"duration_s": 3600},
        {"service_id": "colour"},
        {"staff_id": "bob"},
        {"room_id": "room 9"},
        {"availability_tag": "other-tag"},
    ],
    ids=lambda change: next(iter(change)),
)
def test_same_reference_different_request_is_already_exists(stub, change):
    stub.CreateLease(create_request(client_reference="r"))
    details = call_status(stub.CreateLease, create_request(client_reference="r", **change))
    assert_status(details, grpc.StatusCode.ALREADY_EXISTS, "CLIENT_REFERENCE_IN_USE")


def test_a_retry_that_only_recomputes_its_expiry_gets_the_original_lease(stub):
    """Google's retries may carry a recomputed lease_expiration_time: still OK, with
    the original lease id and expiry echoed back."""
    first = stub.CreateLease(create_request(client_reference="r")).lease
    later = time.time_ns() + 120 * NS_PER_S
    again = stub.CreateLease(create_request(client_reference="r", expires_ns=later)).lease
    assert again.lease_id == first.lease_id
    assert again.lease_expiration_time == first.lease_expiration_time


# --- health --------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["", "ext.maps.booking.partner.v0.BookingService"])
def test_health_check_serving(channel, service):
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
