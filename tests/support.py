"""What the tests share; fixtures built on it are in conftest.py.

- Constants: REAL_REDIS_URL, MERCHANT, one slot start (START_S / START_NS: tomorrow,
  on the hour), DURATION_*, HOUR_NS and short holds. NS_PER_S, NS_PER_MS and DAY_NS
  come from ``leasebroker.core.units``.
- Builders: library requests (:func:`slot`, :func:`lease_request`,
  :func:`booking_request`) and the calls that use them (:func:`hold`, :func:`book`,
  :func:`lease_and_book`); v0 messages (:func:`future_lease`, :func:`create_request`,
  :func:`pb_lease`, ...) and their calls (:func:`grpc_lease`, :func:`grpc_book`);
  availability feeds (:func:`feed_entry`, :func:`availability_feed`).
- :func:`status_details`: a failed gRPC call's code, message, ErrorInfo and BadRequest,
  and the calls around it (:func:`call_status`, :func:`reply_or_status`,
  :func:`failure`, :func:`assert_status`).
- :class:`Clock`: the store's clock, read, moved on without long sleeps, or held still.
- Store views: :func:`events`, :func:`occupancy`, :func:`booked_slots`, :func:`stored_keys`.
- Races: :func:`outcome`, :func:`refusal`, :func:`race` (threads) and
  :func:`race_in_processes` with its process entry points (``*_in_process``: processes
  are spawned, and a spawned child imports them from here by name).
- The ``leasebroker`` command: :func:`run_main` in process; :class:`ServeProcess` and
  :func:`run_cli` in a subprocess, with :func:`clean_env`.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
import redis
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.cli.parser import main
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId, make_public_id
from leasebroker.core.model import Booking, BookingRequest, Lease, LeaseRequest
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.units import NS_PER_S

# ---------------------------------------------------------------- constants

REAL_REDIS_URL = "redis://127.0.0.1:6379/0"
MERCHANT = "merchant-1"
# One slot start for every test: tomorrow, on the hour (whole seconds, whole ms), so no
# hold is ever cut short by the slot's start. 24 to 25 hours ahead when the tests start,
# so still more than 23 hours ahead an hour later (a suite that crosses a full hour).
START_S = (int(time.time()) // 3600 + 25) * 3600
START_NS = START_S * NS_PER_S
DURATION_S = 1800
DURATION_NS = DURATION_S * NS_PER_S
HOUR_NS = 3600 * NS_PER_S
# Holds short enough to expire within a test: 150 ms, passed by letting 0.3 s go by.
SHORT_HOLD = {"default_hold_ms": 150, "max_hold_ms": 150}
PAST_SHORT_HOLD_S = 0.3

SLOT_FIELDS = {f.name for f in dataclasses.fields(SlotId)}


# ---------------------------------------------------------------- library builders


def slot(**overrides: Any) -> SlotId:
    """The default slot (MERCHANT's haircut at START_NS, 30 minutes); any field by name."""
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
    slot_part = {k: v for k, v in overrides.items() if k in SLOT_FIELDS}
    rest = {k: v for k, v in overrides.items() if k not in SLOT_FIELDS}
    return LeaseRequest(**{"slot": slot(**slot_part), "client_reference": "ref-1", **rest})


def long_expiry() -> dict[str, int]:
    """A requested expiry 30 s ahead, for a lease that must outlive a short default hold."""
    return {"requested_expiry_ns": time.time_ns() + 30 * NS_PER_S}


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


def hold(broker: LeaseBroker, s: SlotId | None = None, ref: str = "ref-1", **fields: Any) -> Lease:
    """A lease on ``s`` (default :func:`slot`) for ``ref``; LeaseRequest fields by name."""
    return broker.create_lease(
        LeaseRequest(slot=slot() if s is None else s, client_reference=ref, **fields)
    )


def book(broker: LeaseBroker, lease_id: str, name: str = "Ada", **overrides: Any) -> Booking:
    """Book ``lease_id`` for client ``name``; BookingRequest fields by name."""
    return broker.create_booking(booking_request(lease_id, name, **overrides))


def unknown_id(kind: str, merchant: str = MERCHANT) -> str:
    """A well-formed public id of ``kind`` (IdKind) that names no record."""
    return make_public_id(kind, merchant, "A" * 22)


def lease_and_book(
    broker: LeaseBroker, s: SlotId | None = None, ref: str = "ref-1", name: str = "Ada"
) -> tuple[Lease, Booking]:
    """A lease on ``s`` (default :func:`slot`) and its booking, through the library."""
    lease = hold(broker, s, ref)
    return lease, book(broker, lease.lease_id, name)


# ---------------------------------------------------------------- v0 builders


def future_lease(
    *,
    start_ns: int | None = START_NS,
    duration_s: int | None = DURATION_S,
    expires_ns: int | None = None,
    staff_id: str = "",
    room_id: str = "",
    **fields: Any,
) -> pb.Lease:
    """A valid CreateLease lease on the default slot; keyword arguments override any part.

    ``start_ns=None`` / ``duration_s=None`` leave that field unset; ``fields`` are
    plain Lease fields (merchant_id, service_id, client_reference, availability_tag,
    lease_id).
    """
    values = {"merchant_id": MERCHANT, "service_id": "haircut", "client_reference": "ref-1"}
    lease = pb.Lease(**{**values, **fields})
    if start_ns is not None:
        lease.start_time.FromNanoseconds(start_ns)
    if duration_s is not None:
        lease.duration.FromSeconds(duration_s)
    if expires_ns is not None:
        lease.lease_expiration_time.FromNanoseconds(expires_ns)
    if staff_id or room_id:
        lease.resources.staff_id, lease.resources.room_id = staff_id, room_id
    return lease


def create_request(lease: pb.Lease | None = None, **overrides: Any) -> pb.CreateLeaseRequest:
    """A CreateLeaseRequest for ``lease`` (default: ``future_lease(**overrides)``)."""
    return pb.CreateLeaseRequest(lease=lease if lease is not None else future_lease(**overrides))


def pb_lease(s: SlotId, client_reference: str = "ref-1", expires_ns: int | None = None) -> pb.Lease:
    """The v0 Lease asking for slot ``s`` (its duration to the nanosecond)."""
    lease = future_lease(
        start_ns=s.start_ns,
        duration_s=None,
        expires_ns=expires_ns,
        staff_id=s.staff_id,
        room_id=s.room_id,
        merchant_id=s.merchant_id,
        service_id=s.service_id,
        client_reference=client_reference,
    )
    lease.duration.FromNanoseconds(s.duration_ns)
    return lease


def create_booking_request(
    lease_id: str, client: pb.ClientInformation | None = None, **extra: Any
) -> pb.CreateBookingRequest:
    request = pb.CreateBookingRequest(lease_ref=pb.LeaseReference(lease_id=lease_id), **extra)
    if client is not None:
        request.client_information.CopyFrom(client)
    return request


def grpc_lease(stub: pb_grpc.BookingServiceStub, s: SlotId, ref: str = "ref-1") -> pb.Lease:
    """CreateLease for slot ``s`` over the wire; the granted lease."""
    return stub.CreateLease(create_request(pb_lease(s, ref))).lease


def grpc_book(stub: pb_grpc.BookingServiceStub, lease_id: str, name: str = "Ada") -> pb.Booking:
    """CreateBooking of ``lease_id`` for client ``name`` over the wire; the booking."""
    return stub.CreateBooking(create_booking_request(lease_id, client_info(name))).booking


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


# ---------------------------------------------------------------- availability feeds


def feed_entry(**overrides: Any) -> dict[str, Any]:
    """One availability entry for the default slot, 1 spot open; ``None`` drops a field."""
    values: dict[str, Any] = {
        "merchant_id": MERCHANT,
        "service_id": "haircut",
        "start_sec": START_S,
        "duration_sec": DURATION_S,
        "spots_open": 1,
        **overrides,
    }
    return {k: v for k, v in values.items() if v is not None}


def availability_feed(*entries: dict[str, Any]) -> dict[str, Any]:
    """A feed document with one service_availability group holding ``entries``."""
    return {"service_availability": [{"availability": list(entries)}]}


# ---------------------------------------------------------------- gRPC status


@dataclass
class StatusDetails:
    """What a failed call said: its code, message, ErrorInfo and BadRequest violations."""

    code: grpc.StatusCode
    message: str
    domain: str = ""
    reason: str = ""
    violations: dict[str, str] = field(default_factory=dict)


def status_details(err: grpc.RpcError) -> StatusDetails:
    """Decode a failed call with ``grpc_status.rpc_status.from_call``."""
    result = StatusDetails(code=err.code(), message=err.details() or "")
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            result.domain, result.reason = info.domain, info.reason
        elif detail.Unpack(bad):
            result.violations.update({v.field: v.description for v in bad.field_violations})
    return result


def reply_or_status(method: Callable[..., Any], request: Any, **kwargs: Any) -> Any:
    """The call's reply, or its decoded failure (StatusDetails); timeout 30 s unless given."""
    kwargs.setdefault("timeout", 30)
    try:
        return method(request, **kwargs)
    except grpc.RpcError as err:
        return status_details(err)


def call_status(call: Any, request: Any, **kwargs: Any) -> StatusDetails | None:
    """Make the call; None when it succeeds, else the decoded failure."""
    result = reply_or_status(call, request, **kwargs)
    return result if isinstance(result, StatusDetails) else None


def failure(method: Callable[..., Any], request: Any, **kwargs: Any) -> StatusDetails:
    """The call must fail; its decoded failure."""
    result = reply_or_status(method, request, **kwargs)
    assert isinstance(result, StatusDetails), f"expected a failure, got {result}"
    return result


def assert_status(
    details: StatusDetails | None,
    code: grpc.StatusCode,
    reason: str,
    fields: set[str] | None = None,
) -> dict[str, str]:
    """The call failed with ``code`` and ErrorInfo ``reason`` (domain leasebroker), and
    its BadRequest names exactly ``fields``; returns the violations."""
    assert details is not None, "the call succeeded"
    assert (details.code, details.domain, details.reason) == (code, "leasebroker", reason)
    assert set(details.violations) == (fields or set())
    return details.violations


# ---------------------------------------------------------------- the store's clock


def redis_now_ms(client: Any) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


class Clock:
    """The store's clock: read it, let time pass for the store, or hold it still.

    On fakeredis, ``time.time`` is shifted forward (fakeredis derives TIME and key
    expiry from it), so nothing sleeps; on real Redis the test sleeps. The shift only
    ever grows, so gRPC deadlines computed from ``time.time`` only get longer.
    :meth:`freeze` (fakeredis only) holds the clock at one millisecond until
    :meth:`at` moves it, for outcomes at an exact millisecond.
    """

    def __init__(self, backend: str, monkeypatch: pytest.MonkeyPatch, client: Any) -> None:
        self.backend = backend
        self.client = client
        self.frozen_ms: int | None = None
        self._monkeypatch = monkeypatch
        self._real_time = time.time
        self._offset = 0.0

    def now_ms(self) -> int:
        return redis_now_ms(self.client)

    def advance(self, seconds: float) -> None:
        assert self.frozen_ms is None, "a frozen clock moves with at()"
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

    def freeze(self) -> int:
        """Hold fakeredis's clock (TIME and key expiry) at this millisecond; returns it."""
        assert self.backend == "fake", "only fakeredis's clock can be held still"
        self.frozen_ms = frozen = self.now_ms()
        # 0.2 ms into the millisecond, so float rounding never shows the one before.
        self._monkeypatch.setattr(time, "time", lambda: self.frozen_ms / 1000 + 0.0002)
        assert self.now_ms() == frozen
        return frozen

    def at(self, ms: int) -> None:
        """Move the frozen clock to ``ms``."""
        assert self.frozen_ms is not None, "freeze() first"
        assert ms >= self.frozen_ms, "the store's clock only moves forward"
        self.frozen_ms = ms


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


def stored_keys(client: Any, prefix: str) -> list[bytes]:
    """Every key under ``prefix``."""
    return list(client.scan_iter(match=f"{prefix}:*", count=1000))


# ---------------------------------------------------------------- outcomes and races


def outcome(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """The call's result, or the BrokerError's reason."""
    try:
        return fn(*args, **kwargs)
    except BrokerError as error:
        return error.reason


def refusal(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> BrokerError:
    """The library call must raise BrokerError; that error."""
    with pytest.raises(BrokerError) as caught:
        fn(*args, **kwargs)
    return caught.value


def race(*actions: Callable[[], Any], timeout_s: float = 30) -> list[Any]:
    """Run the actions at once from threads (released by one barrier); their outcomes."""
    barrier = threading.Barrier(len(actions))

    def run(action: Callable[[], Any]) -> Any:
        barrier.wait(timeout=timeout_s)
        return action()

    with ThreadPoolExecutor(max_workers=len(actions)) as pool:
        return list(pool.map(run, actions))


def race_in_processes(
    target: Callable[..., None], arg_lists: Sequence[tuple[Any, ...]], timeout_s: float = 120
) -> list[Any]:
    """Run ``target(*args, barrier, results)`` in one spawned process per ``args``.

    Real OS processes, against the real Redis (threads share a GIL; processes do not).
    The processes share a barrier (so they start their race together) and a results
    queue, on which each puts one report. Returns the reports, in arrival order,
    after checking that every process exited cleanly.
    """
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(arg_lists))
    results = context.Queue()
    workers = [context.Process(target=target, args=(*args, barrier, results)) for args in arg_lists]
    for worker in workers:
        worker.start()
    try:
        reports = [results.get(timeout=timeout_s) for _ in workers]
    except queue.Empty:
        pytest.fail("a racing process did not report")
    finally:
        for worker in workers:
            worker.join(timeout=30)
    assert [worker.exitcode for worker in workers] == [0] * len(workers)
    return reports


def process_broker(prefix: str, **config: Any) -> tuple[redis.Redis, LeaseBroker]:
    client = redis.Redis.from_url(REAL_REDIS_URL, protocol=2)
    return client, LeaseBroker(client, BrokerConfig(key_prefix=prefix, **config))


def lease_in_process(
    prefix: str, capacity: int, start_ns: int, refs: list[str], barrier: Any, results: Any
) -> None:
    """One racing process: its own client and broker, then a CreateLease per reference
    on the slot at ``start_ns``; reports (reason or "ok", fence or 0) per reference."""
    client, broker = process_broker(prefix, default_capacity=capacity)
    outcomes = []
    try:
        barrier.wait(timeout=60)
        for ref in refs:
            request = lease_request(client_reference=ref, start_ns=start_ns)
            got = outcome(broker.create_lease, request)
            outcomes.append((got.value, 0) if isinstance(got, Reason) else ("ok", got.fence))
    finally:
        results.put(outcomes)
        client.close()


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
            reply = reply_or_status(stub.CreateBooking, request)
            if isinstance(reply, StatusDetails):
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


# ---------------------------------------------------------------- the leasebroker command

# What the console script runs, without needing it on PATH.
CLI = [sys.executable, "-m", "leasebroker"]
# The BookingService's line, not the admin service's ("admin listening on ...").
LISTENING_RE = re.compile(r"(?<!admin )listening on (?P<host>\S+):(?P<port>\d+)")
STARTUP_TIMEOUT_S = 30.0


def run_main(argv: Sequence[str]) -> int:
    """``leasebroker ARGV`` in this process; its exit code (argparse's usage errors too)."""
    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)


def clean_env(**overrides: str) -> dict[str, str]:
    """This process's environment without any LEASEBROKER_* variable, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEASEBROKER_")}
    return {**env, **overrides}


class ServeProcess:
    """``leasebroker serve`` in a subprocess; use as a context manager (always killed).

    stderr is drained line by line by a thread into :attr:`lines`, so the pipe never
    fills; :meth:`wait_for` finds a line with a deadline.
    """

    def __init__(self, args: Sequence[str], env: dict[str, str] | None = None) -> None:
        serve = ["serve", "--host", "127.0.0.1", "--port", "0", "--admin-port", "0"]
        self.env = clean_env() if env is None else env
        if "--processes" not in args and "LEASEBROKER_PROCESSES" not in self.env:
            # One process unless the test asks for more (tests/test_serve_processes.py):
            # with --redis-url, serve would start one per CPU.
            serve += ["--processes", "1"]
        self.args = [*CLI, *serve, *args]
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> ServeProcess:
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = STARTUP_TIMEOUT_S) -> re.Match:
        """The first new stderr line matching ``pattern``; AssertionError at EOF or deadline."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._queue.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise AssertionError(f"no {pattern.pattern!r} in time: {self.lines}") from None
            if line is None:
                raise AssertionError(f"serve ended before {pattern.pattern!r}: {self.lines}")
            self.lines.append(line)
            match = pattern.search(line)
            if match:
                return match

    def wait_listening(self) -> int:
        """Wait until the server says where it listens; sets and returns :attr:`port`."""
        self.port = int(self.wait_for(LISTENING_RE)["port"])
        return self.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and return the exit code.

        No waiting first: serve installs its handlers before it logs "listening on",
        so a signal right after that line must already stop it cleanly.
        """
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=30)


def run_cli(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run ``leasebroker ARGS`` to completion in a subprocess (killed on timeout)."""
    return subprocess.run(
        [*CLI, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=clean_env() if env is None else env,
        timeout=60,
    )
