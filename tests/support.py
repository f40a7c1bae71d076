"""Helpers for the lease/booking lifecycle tests (test_bookings, test_lifecycle_races,
test_events_and_sweeper).

- Builders for slots, lease requests, v0 messages and booking requests.
- :class:`Clock`: Redis's clock, and a way to let time pass for the store without long
  sleeps (fakeredis: ``time.time`` is moved, which moves both TIME and key expiry;
  real Redis: a short sleep).
- :func:`rpc_error` / :func:`call`: a failed gRPC call's code, ErrorInfo reason and
  BadRequest field violations.
- :func:`events`: a merchant's event stream as plain dicts.
- Process entry points for the multi-process tests (spawn needs them importable).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import grpc
import pytest
import redis
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError
from leasebroker.core.keys import SlotId
from leasebroker.core.model import BookingRequest, LeaseRequest
from leasebroker.core.settings import BrokerConfig

NS_PER_S = 1_000_000_000
NS_PER_MS = 1_000_000
REAL_REDIS_URL = "redis://127.0.0.1:6379/0"
MERCHANT = "merchant-1"
# Tomorrow, on a whole second: no hold is ever cut short by the slot's start.
START_NS = (time.time_ns() // NS_PER_S + 86_400) * NS_PER_S
HOUR_NS = 3600 * NS_PER_S
DURATION_NS = 1800 * NS_PER_S
# Holds short enough to expire within a test: 150 ms, passed by letting 0.3 s go by.
SHORT_HOLD = {"default_hold_ms": 150, "max_hold_ms": 150}
PAST_SHORT_HOLD_S = 0.3

_SLOT_FIELDS = {f.name for f in fields(SlotId)}


# ---------------------------------------------------------------- builders


def slot(**overrides: Any) -> SlotId:
    values: dict[str, Any] = {
        "merchant_id": MERCHANT,
        "service_id": "haircut",
        "start_ns": START_NS,
        "duration_ns": DURATION_NS,
        "staff_id": "",
        "room_id": "",
    }
    return SlotId(**{**values, **overrides})


def lease_request(**overrides: Any) -> LeaseRequest:
    """A valid LeaseRequest; any SlotId or LeaseRequest field can be overridden by name."""
    slot_part = {k: v for k, v in overrides.items() if k in _SLOT_FIELDS}
    rest = {k: v for k, v in overrides.items() if k not in _SLOT_FIELDS}
    return LeaseRequest(**{"slot": slot(**slot_part), "client_reference": "ref-1", **rest})


def client_info(name: str = "Ada", telephone: str = "+1 650 555 0100") -> pb.ClientInformation:
    info = pb.ClientInformation(
        given_name=name, family_name="Lovelace", telephone=telephone, email=f"{name}@example.com"
    )
    info.address.address_country = "GB"
    info.address.postal_code = "W1"
    return info


def client_bytes(name: str = "Ada", telephone: str = "+1 650 555 0100") -> bytes:
    """Serialized the way the gRPC front end serializes it (deterministic)."""
    return client_info(name, telephone).SerializeToString(deterministic=True)


def booking_request(lease_id: str, name: str = "Ada", **overrides: Any) -> BookingRequest:
    return BookingRequest(
        **{"lease_id": lease_id, "client_information": client_bytes(name), **overrides}
    )


def pb_lease(s: SlotId, client_reference: str = "ref-1", expires_ns: int | None = None) -> pb.Lease:
    """The v0 Lease asking for slot ``s``."""
    lease = pb.Lease(
        merchant_id=s.merchant_id,
        service_id=s.service_id,
        client_reference=client_reference,
    )
    lease.start_time.FromNanoseconds(s.start_ns)
    lease.duration.FromNanoseconds(s.duration_ns)
    if s.staff_id or s.room_id:
        lease.resources.staff_id, lease.resources.room_id = s.staff_id, s.room_id
    if expires_ns is not None:
        lease.lease_expiration_time.FromNanoseconds(expires_ns)
    return lease


def grpc_lease(stub: pb_grpc.BookingServiceStub, s: SlotId, ref: str = "ref-1") -> pb.Lease:
    return stub.CreateLease(pb.CreateLeaseRequest(lease=pb_lease(s, ref))).lease


def create_booking_request(
    lease_id: str, client: pb.ClientInformation | None = None, **extra: Any
) -> pb.CreateBookingRequest:
    request = pb.CreateBookingRequest(lease_ref=pb.LeaseReference(lease_id=lease_id), **extra)
    if client is not None:
        request.client_information.CopyFrom(client)
    return request


def cancel_request(booking_id: str) -> pb.UpdateBookingRequest:
    request = pb.UpdateBookingRequest(booking=pb.Booking(booking_id=booking_id, status=pb.CANCELED))
    request.update_mask.paths.append("status")
    return request


def reschedule_request(booking_id: str, start_ns: int, duration_ns: int) -> pb.UpdateBookingRequest:
    request = pb.UpdateBookingRequest(booking=pb.Booking(booking_id=booking_id))
    request.booking.start_time.FromNanoseconds(start_ns)
    request.booking.duration.FromNanoseconds(duration_ns)
    request.update_mask.paths.extend(["start_time", "duration"])
    return request


# ---------------------------------------------------------------- gRPC errors


@dataclass
class RpcFailure:
    """What a failed call said: its code, ErrorInfo reason and BadRequest field names."""

    code: grpc.StatusCode
    reason: str = ""
    domain: str = ""
    violations: dict[str, str] = field(default_factory=dict)


def rpc_error(err: grpc.RpcError) -> RpcFailure:
    result = RpcFailure(code=err.code())
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Is(info.DESCRIPTOR):
            detail.Unpack(info)
            result.reason, result.domain = info.reason, info.domain
        elif detail.Is(bad.DESCRIPTOR):
            detail.Unpack(bad)
            result.violations.update({v.field: v.description for v in bad.field_violations})
    return result


def call(method: Callable[..., Any], request: Any) -> Any:
    """The reply of a call, or the RpcFailure when it failed."""
    try:
        return method(request, timeout=30)
    except grpc.RpcError as err:
        return rpc_error(err)


def failure(method: Callable[..., Any], request: Any) -> RpcFailure:
    """The call must fail; its decoded failure."""
    result = call(method, request)
    assert isinstance(result, RpcFailure), f"expected a failure, got {result}"
    return result


def refusal(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> BrokerError:
    """The library call must raise BrokerError; that error."""
    with pytest.raises(BrokerError) as caught:
        fn(*args, **kwargs)
    return caught.value


# ---------------------------------------------------------------- clock


def redis_now_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class Clock:
    """The store's clock: read it, and let time pass for the store.

    On fakeredis, ``time.time`` is shifted forward (fakeredis derives TIME and key
    expiry from it), so nothing sleeps; on real Redis the test sleeps. The shift only
    ever grows, so gRPC deadlines computed from ``time.time`` only get longer.
    """

    def __init__(self, backend: str, monkeypatch: pytest.MonkeyPatch, client: Any) -> None:
        self.backend = backend
        self.client = client
        self._monkeypatch = monkeypatch
        self._real_time = time.time
        self._offset = 0.0

    def now_ms(self) -> int:
        return redis_now_ms(self.client)

    def advance(self, seconds: float) -> None:
        if self.backend == "real":
            time.sleep(seconds)
            return
        self._offset += seconds
        shift, real_time = self._offset, self._real_time
        self._monkeypatch.setattr(time, "time", lambda: real_time() + shift)

    def pass_ms(self, target_ms: int) -> None:
        """Let time pass until the store's clock is past ``target_ms``."""
        self.reach_ms(target_ms + 1)

    def reach_ms(self, target_ms: int) -> None:
        """Let time pass until the store's clock reads at least ``target_ms``."""
        while (now := self.now_ms()) < target_ms:
            self.advance((target_ms - now) / 1000)


# ---------------------------------------------------------------- store views


def events(client: Any, broker: LeaseBroker, merchant: str = MERCHANT) -> list[dict[str, str]]:
    """The merchant's event stream, oldest first, as text dicts (``type`` included)."""
    return [
        {k.decode(): v.decode() for k, v in entry.items()}
        for _id, entry in client.xrange(broker.keys.events(merchant))
    ]


def occupancy(client: Any, broker: LeaseBroker, s: SlotId) -> dict[str, float]:
    """Members of the slot's occupancy ZSET (lease/booking id -> score), as text."""
    return {
        m.decode(): score for m, score in client.zrange(broker.keys.slot(s), 0, -1, withscores=True)
    }


def booked_slots(client: Any, broker: LeaseBroker, booking_id: str, slots: list[SlotId]) -> list:
    """The slots among ``slots`` whose occupancy holds ``booking_id``."""
    return [s for s in slots if client.zscore(broker.keys.slot(s), booking_id) is not None]


# ---------------------------------------------------------------- processes


def process_broker(prefix: str, **config: Any) -> tuple[redis.Redis, LeaseBroker]:
    client = redis.Redis.from_url(REAL_REDIS_URL, protocol=2)
    return client, LeaseBroker(client, BrokerConfig(key_prefix=prefix, **config))


def consume_in_process(
    prefix: str, lease_ids: list[str], name: str, barrier: Any, results: Any
) -> None:
    """One racing process: its own Redis client, broker and gRPC server; books each lease
    with client ``name`` right after the barrier; reports (lease id, booking id or
    (code name, reason)) per lease."""
    from leasebroker.wire.server import start_server

    client, broker = process_broker(prefix)
    running = start_server(broker, "127.0.0.1", 0, workers=4)
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = pb_grpc.BookingServiceStub(channel)
    outcomes: list[tuple[str, Any]] = []
    try:
        for lease_id in lease_ids:
            request = create_booking_request(lease_id, client_info(name))
            barrier.wait(timeout=60)
            reply = call(stub.CreateBooking, request)
            if isinstance(reply, RpcFailure):
                outcomes.append((lease_id, (reply.code.name, reply.reason)))
            else:
                outcomes.append((lease_id, reply.booking.booking_id))
    finally:
        results.put(outcomes)
        channel.close()
        running.stop(grace=None)
        client.close()


def sweep_in_process(prefix: str, rounds: int, barrier: Any, results: Any) -> None:
    """One sweeping process: after the barrier, ``rounds`` sweep passes; reports the total
    it marked expired."""
    from leasebroker.core.sweeper import sweep_once

    client, broker = process_broker(prefix)
    total = 0
    try:
        barrier.wait(timeout=60)
        for _ in range(rounds):
            total += sweep_once(broker)
    finally:
        results.put(total)
        client.close()
