"""Requests that cannot be decoded, and calls whose deadline has passed, never run.

An undecodable request (invalid UTF-8 in a string field, a truncated message) gets
INVALID_ARGUMENT with ErrorInfo MALFORMED_REQUEST, not INTERNAL, and costs the log one
short line at most every few seconds. A call whose deadline has already passed is
refused with DEADLINE_EXCEEDED before the broker is asked anything.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from support import create_request, status_details

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v1 import admin_pb2
from leasebroker.wire import registration
from leasebroker.wire.errors import rpc
from leasebroker.wire.server import start_admin_server

CREATE_LEASE = "/ext.maps.booking.partner.v0.BookingService/CreateLease"
CREATE_BOOKING = "/ext.maps.booking.partner.v0.BookingService/CreateBooking"


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (numbers below 16, payloads below 128 bytes)."""
    assert number < 16 and len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def lease_with_bad_merchant() -> bytes:
    """A CreateLeaseRequest whose lease.merchant_id is not UTF-8."""
    lease_number = pb.CreateLeaseRequest.DESCRIPTOR.fields_by_name["lease"].number
    merchant_number = pb.Lease.DESCRIPTOR.fields_by_name["merchant_id"].number
    valid = create_request().lease.SerializeToString()
    return field(lease_number, valid + field(merchant_number, b"\xff\xfe"))


UNDECODABLE = {
    "invalid-utf8": (CREATE_LEASE, lease_with_bad_merchant()),
    "truncated": (CREATE_LEASE, create_request().SerializeToString()[:-3]),
    "garbage": (CREATE_BOOKING, b"\xff\xff\xff\xff"),
}


def raw_call(target: str, method: str, body: bytes) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as failed:
            call(body, timeout=10)
    return failed.value


@pytest.mark.parametrize("name", sorted(UNDECODABLE))
def test_undecodable_requests_are_invalid_argument(broker, make_stub, name):
    stub = make_stub(broker)
    target = stub.CreateLease._channel.target().decode()
    method, body = UNDECODABLE[name]
    details = status_details(raw_call(target, method, body))
    assert details.code is grpc.StatusCode.INVALID_ARGUMENT
    assert details.reason == "MALFORMED_REQUEST"
    assert "not a valid ext.maps.booking.partner.v0." in details.message


def test_the_admin_service_refuses_undecodable_requests_too(broker):
    running = start_admin_server(broker, "127.0.0.1", 0)
    try:
        service = admin_pb2.DESCRIPTOR.services_by_name["LeaseAdmin"].full_name
        error = raw_call(f"127.0.0.1:{running.port}", f"/{service}/GetLease", b"\x0a\x02\xff\xfe")
        details = status_details(error)
        assert (details.code, details.reason) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            "MALFORMED_REQUEST",
        )
    finally:
        running.stop(grace=None)


def test_a_flood_of_undecodable_requests_logs_one_short_line(
    broker, make_stub, caplog, monkeypatch
):
    stub = make_stub(broker)
    target = stub.CreateLease._channel.target().decode()
    # The flood must fit in one period however slow the machine: an hour.
    monkeypatch.setattr(registration.undecodable_log, "every_s", 3600.0)
    monkeypatch.setattr(registration.undecodable_log, "_last", -3600.0)
    with caplog.at_level(logging.DEBUG):
        for _ in range(30):
            raw_call(target, CREATE_LEASE, lease_with_bad_merchant())
    lines = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "\n" not in lines[0].getMessage()
    assert lines[0].exc_info is None
    assert not [r for r in caplog.records if "Traceback" in r.getMessage()]


def test_rate_limited_log_counts_what_it_left_out(caplog):
    limited = registration.RateLimitedLog(logging.getLogger("test.limited"), every_s=0.0)
    with caplog.at_level(logging.WARNING, logger="test.limited"):
        limited.warning("first")
        limited.every_s = 3600.0
        limited.warning("second")
        limited.warning("third")
        limited.every_s = 0.0
        limited.warning("fourth")
    assert [r.getMessage() for r in caplog.records] == [
        "first",
        "fourth (and 2 more since the last such line)",
    ]


class LateContext:
    """A ServicerContext whose call's deadline has passed."""

    def __init__(self, remaining: float | None) -> None:
        self.remaining = remaining
        self.code: Any = None
        self.trailers: Any = None

    def time_remaining(self) -> float | None:
        return self.remaining

    def set_trailing_metadata(self, metadata: Any) -> None:
        self.trailers = metadata

    def abort(self, code: Any, details: str) -> None:
        self.code = code
        raise grpc.RpcError()


@pytest.mark.parametrize("remaining", [0.0, -1.5])
def test_a_call_whose_deadline_passed_is_not_run(remaining):
    ran: list[Any] = []

    class Servicer:
        @rpc
        def CreateLease(self, request: Any, context: Any) -> Any:
            ran.append(request)

    context = LateContext(remaining)
    with pytest.raises(grpc.RpcError):
        Servicer().CreateLease(create_request(), context)
    assert ran == []
    assert context.code is grpc.StatusCode.DEADLINE_EXCEEDED
    assert context.trailers  # the status details travel in the trailers


def test_a_call_without_deadline_runs():
    class Servicer:
        @rpc
        def CreateLease(self, request: Any, context: Any) -> str:
            return "ran"

    assert Servicer().CreateLease(create_request(), LateContext(None)) == "ran"
