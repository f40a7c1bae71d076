"""What each RPC leaves behind stays the same with its cheaper making: the ids an access
line names, its record, the metrics' counts; and serve's log handler writes every line,
in order, the same as a plain StreamHandler."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import logging
import re
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import MERCHANT, START_NS, client_info, create_booking_request, create_request

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v1 import admin_pb2
from leasebroker.cli import log_writer
from leasebroker.cli.log_writer import BackgroundStreamHandler
from leasebroker.cli.telemetry import (
    TEXT_FORMAT,
    TEXT_FORMAT_PID,
    JsonLineFormatter,
    TextFormatter,
    configure_logging,
)
from leasebroker.core.keys import IdKind, parse_public_id
from leasebroker.wire import access, metrics
from leasebroker.wire.access import ID_FIELDS, call_ids
from leasebroker.wire.booking_service import BookingService

LEASE_ID = "l.bWVyY2hhbnQtMQ.AAAAAAAAAAAAAAAAAAAAAA"
BOOKING_ID = "b.bWVyY2hhbnQtMQ.AAAAAAAAAAAAAAAAAAAAAA"


def walked_ids(*messages: Any) -> dict[str, str]:
    """call_ids as it was first written: every set field of each message, walked."""
    found: dict[str, str] = {}
    for message in messages:
        if message is None or not hasattr(message, "ListFields"):
            continue
        for descriptor, value in message.ListFields():
            if descriptor.name in ID_FIELDS and isinstance(value, str):
                found.setdefault(descriptor.name, value)
            elif descriptor.message_type is not None and not descriptor.is_repeated:
                for name in ID_FIELDS:
                    inner = getattr(value, name, None)
                    if isinstance(inner, str) and inner:
                        found.setdefault(name, inner)
    if not found.get("merchant_id"):
        for name, kind in (("lease_id", IdKind.LEASE), ("booking_id", IdKind.BOOKING)):
            parsed = parse_public_id(found.get(name, ""), kind)
            if parsed is not None:
                found["merchant_id"] = parsed.merchant_id
                break
    return {name: access._printable(found[name]) for name in ID_FIELDS if found.get(name)}


def filled(message_class: Any, value: str, depth: int = 2) -> Any:
    """A message with each string id field set to ``value``, and each singular message
    field filled the same way, ``depth`` levels down."""
    message = message_class()
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        if field.name in ID_FIELDS and field.type == field.TYPE_STRING:
            setattr(message, field.name, value)
        elif field.message_type is not None and depth > 0:
            getattr(message, field.name).CopyFrom(
                filled(type(getattr(message, field.name)), value, depth - 1)
            )
    return message


def every_message_class() -> list[Any]:
    classes = []
    for module in (pb, admin_pb2):
        for descriptor in module.DESCRIPTOR.message_types_by_name.values():
            classes.append(getattr(module, descriptor.name))
    return classes


@pytest.mark.parametrize("message_class", every_message_class(), ids=lambda c: c.__name__)
def test_call_ids_finds_what_walking_every_field_finds(message_class: Any) -> None:
    for value in (LEASE_ID, BOOKING_ID, "", "with space", "x" * 300):
        message = filled(message_class, value)
        empty = message_class()
        for messages in ((message,), (empty,), (message, empty), (empty, message), (message, None)):
            assert call_ids(*messages) == walked_ids(*messages), (message_class, value)


def test_call_ids_of_the_booking_service_calls() -> None:
    lease = create_request()
    reply = pb.CreateLeaseResponse(lease=lease.lease)
    reply.lease.lease_id = LEASE_ID
    assert call_ids(lease, reply) == {"merchant_id": MERCHANT, "lease_id": LEASE_ID}
    booking = create_booking_request(LEASE_ID)
    assert call_ids(booking, None) == {"merchant_id": MERCHANT, "lease_id": LEASE_ID}
    assert call_ids(booking, object()) == walked_ids(booking)


def test_metrics_count_each_rpc_once_per_call() -> None:
    def samples() -> tuple[float, float, float]:
        get = metrics.REGISTRY.get_sample_value
        labels = {"service": "Probe", "method": "Count"}
        return (
            get("leasebroker_rpcs_total", {**labels, "code": "NOT_FOUND"}) or 0,
            get("leasebroker_rpc_duration_seconds_count", labels) or 0,
            get("leasebroker_outcomes_total", {**labels, "reason": "LEASE_NOT_FOUND"}) or 0,
        )

    before = samples()
    for _ in range(3):
        metrics.record_rpc("Probe", "Count", "NOT_FOUND", "LEASE_NOT_FOUND", 0.002)
    assert samples() == tuple(b + 3 for b in before)


class Kept(logging.Handler):
    """A handler that keeps every record it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_access_record_is_what_access_log_info_made() -> None:
    keep = Kept()
    records = keep.records
    access.access_log.addHandler(keep)
    old_level = access.access_log.level
    access.access_log.setLevel(logging.INFO)
    try:
        request = create_request()
        access.observed("BookingService", "CreateLease", request, None, "OK", "OK", 0.01234)
    finally:
        access.access_log.removeHandler(keep)
        access.access_log.setLevel(old_level)
    (record,) = records
    assert record.getMessage() == f"BookingService.CreateLease OK OK 12.3ms merchant_id={MERCHANT}"
    assert (record.name, record.levelno, record.funcName) == (
        "leasebroker.access",
        logging.INFO,
        "record",
    )
    assert record.pathname == access.__file__
    assert record.service == "BookingService" and record.duration_ms == 12.34
    assert record.merchant_id == MERCHANT and not hasattr(record, "lease_id")
    assert record.thread == threading.get_ident()


class Deadline:
    """The one thing of a gRPC context that a successful call asks."""

    def time_remaining(self) -> float:
        return 30.0


def test_an_rpc_leaves_no_cyclic_garbage(backend: str, broker: Any) -> None:
    """Nothing an answered call made waits for the garbage collector (a frame kept in a
    local once made every call a reference cycle holding its whole stack)."""
    if backend == "fake":
        pytest.skip("fakeredis's own Lua runtime leaves cycles; serve runs on Redis")
    service = BookingService(broker)
    old_level = access.access_log.level
    access.access_log.setLevel(logging.INFO)  # the access line is made, as in serve
    with service_loop(service) as run:
        # Both scripts loaded first: a NOSCRIPT reply on a Redis that has not seen them
        # yet raises, and that exception's traceback is a cycle of its own.
        warm_up = create_request(start_ns=START_NS - 3_600 * 10**9, client_reference="warm-up")
        warm_lease = run(service.CreateLease(warm_up, Deadline())).lease
        warm_booking = create_booking_request(warm_lease.lease_id, client_info())
        run(service.CreateBooking(warm_booking, Deadline()))
        gc.collect()
        gc.disable()
        try:
            for i in range(20):
                request = create_request(
                    start_ns=START_NS + i * 3_600 * 10**9, client_reference=f"r{i}"
                )
                lease = run(service.CreateLease(request, Deadline())).lease
                booking = run(
                    service.CreateBooking(
                        create_booking_request(lease.lease_id, client_info()), Deadline()
                    )
                )
                assert booking.booking.booking_id
            found = gc.collect()
        finally:
            gc.enable()
            access.access_log.setLevel(old_level)
    assert found == 0


@contextlib.contextmanager
def service_loop(service: BookingService) -> Iterator[Callable[[Any], Any]]:
    """``run(coroutine)``: the service's calls on one event loop, as serve runs them
    (its asyncio client is made on that loop and closed on it at the end)."""
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete
    finally:
        loop.run_until_complete(service.close())
        loop.close()


class Aborting(Deadline):
    """A grpc.aio context that, like gRPC's own, ends the call with an exception on abort."""

    async def abort_with_status(self, status: Any) -> None:
        raise RuntimeError("aborted")


async def aborted(call: Any) -> str:
    """What the call was aborted with, caught where it ends (as grpc.aio catches it): a
    Task that ends with an exception, re-raised by run_until_complete, would make a
    cycle of the event loop's own (its frame, the Task, the exception)."""
    try:
        await call
    except RuntimeError as exc:
        return str(exc)
    return "not aborted"


def test_a_refused_rpc_leaves_no_cyclic_garbage(backend: str, broker: Any) -> None:
    """A refusal's BrokerError holds the handler's frame in its traceback; the frame must
    not hold the error in turn."""
    if backend == "fake":
        pytest.skip("fakeredis's own Lua runtime leaves cycles; serve runs on Redis")
    service = BookingService(broker)
    with service_loop(service) as run:
        run(service.CreateLease(create_request(client_reference="holder"), Deadline()))
        gc.collect()
        gc.disable()
        try:
            for i in range(20):
                call = service.CreateLease(create_request(client_reference=f"r{i}"), Aborting())
                assert run(aborted(call)) == "aborted"
            found = gc.collect()
        finally:
            gc.enable()
    assert found == 0


# ---------------------------------------------------------------- the log handler


def routed(name: str, handler: logging.Handler, level: int = logging.INFO) -> logging.Logger:
    """The logger ``name``, writing through ``handler`` only, from ``level`` up."""
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(level)
    return logger


def logger_pair(name: str, formatter: logging.Formatter, **options: Any) -> tuple[Any, ...]:
    """A logger writing through a BackgroundStreamHandler and one through a plain
    StreamHandler, each into its own buffer, with the same formatter."""
    out: list[Any] = []
    for handler_class in (BackgroundStreamHandler, logging.StreamHandler):
        buffer = io.StringIO()
        handler = (
            handler_class(buffer, **options)
            if handler_class is BackgroundStreamHandler
            else handler_class(buffer)
        )
        handler.setFormatter(formatter)
        logger = routed(f"{name}.{handler_class.__name__}", handler, logging.DEBUG)
        out += [logger, handler, buffer]
    return tuple(out)


@pytest.mark.parametrize(
    "formatter",
    [
        TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"),
        JsonLineFormatter(),
    ],
    ids=["text", "json"],
)
def test_lines_are_those_a_stream_handler_writes(formatter: logging.Formatter) -> None:
    background, handler, buffer, plain, _plain_handler, plain_buffer = logger_pair(
        "lbtest.same", formatter
    )
    shown = [1, 2]
    for logger in (background, plain):
        logger.info(
            "access %s %.1fms%s", "CreateLease", 1.25, " merchant_id=m", extra={"code": "OK"}
        )
        logger.warning("a list %s", shown, extra={"duration_ms": 2.5})
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed: %d", 3)
        logger.info("ünïcode ✓ %s", "émoji 🙂")
    shown.append(3)  # after the call: the line keeps what the list held then
    handler.flush()
    ours = buffer.getvalue().replace(".BackgroundStreamHandler", "")
    theirs = plain_buffer.getvalue().replace(".StreamHandler", "")
    # The times differ by the moment each was logged; everything else is the same.
    strip = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    assert strip.sub("T", ours) == strip.sub("T", theirs)
    assert "a list [1, 2]" in ours and "ValueError: boom" in ours


def test_background_lines_keep_their_order_and_others_are_written_at_once() -> None:
    buffer = io.StringIO()
    handler = BackgroundStreamHandler(buffer, background=("lbtest.order.access",))
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    busy, other = routed("lbtest.order.access", handler), routed("lbtest.order.other", handler)

    def log_many(thread: int) -> None:
        for i in range(300):
            busy.info("%d %d", thread, i)

    threads = [threading.Thread(target=log_many, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    other.warning("after every access line")
    # Written when the call returned, after every line logged before it.
    lines = buffer.getvalue().splitlines()
    assert lines[-1] == "lbtest.order.other after every access line"
    assert len(lines) == 8 * 300 + 1
    for t in range(8):
        mine = [line for line in lines if line.startswith(f"lbtest.order.access {t} ")]
        assert mine == [f"lbtest.order.access {t} {i}" for i in range(300)]


def test_a_background_line_is_written_soon_and_flush_waits_for_it() -> None:
    buffer = io.StringIO()
    handler = BackgroundStreamHandler(buffer, background=("lbtest.soon",))
    logger = routed("lbtest.soon", handler)
    logger.info("one")
    handler.flush()
    assert buffer.getvalue() == "one\n"


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def test_writes_carry_whole_lines_of_at_most_a_pipes_atomic_size() -> None:
    stream = CountingStream()
    handler = BackgroundStreamHandler(stream, background=("lbtest.sizes",))
    logger = routed("lbtest.sizes", handler)
    sizes = [10, 3000, 2000, 5000, 100, 100]
    for i, size in enumerate(sizes):
        logger.info("%d %s", i, "x" * size)
    handler.flush()
    assert "".join(stream.writes).splitlines() == [f"{i} {'x' * n}" for i, n in enumerate(sizes)]
    for text in stream.writes:
        assert text.endswith("\n")
        assert len(text.encode()) <= log_writer.MAX_WRITE_BYTES or text.count("\n") == 1


def test_every_line_is_written_by_the_time_the_process_exits() -> None:
    script = textwrap.dedent(
        """
        import logging, threading
        from leasebroker.cli.telemetry import configure_logging
        configure_logging("INFO", "text")
        access = logging.getLogger("leasebroker.access")
        threads = [threading.Thread(target=lambda: [access.info("line %d", i) for i in range(500)])
                   for _ in range(4)]
        for t in threads: t.start()
        for t in threads: t.join()
        logging.getLogger("leasebroker").info("last")
        print("printed after the last line", flush=True)
        import sys; sys.stdout.flush()
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    lines = done.stderr.splitlines()
    assert len(lines) == 2001 and lines[-1].endswith("INFO leasebroker: last")
    assert all(" INFO leasebroker.access: line " in line for line in lines[:-1])


class StalledStream(io.StringIO):
    """A stream whose writes wait until it is released: a stderr nobody reads."""

    def __init__(self) -> None:
        super().__init__()
        self.released = threading.Event()

    def write(self, text: str) -> int:
        self.released.wait(10)
        return super().write(text)


def test_lines_a_stalled_stream_cannot_take_hold_up_the_logger_not_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(log_writer, "MAX_QUEUED", 5)
    stream = StalledStream()
    handler = BackgroundStreamHandler(stream, background=("lbtest.stalled",))
    logger = routed("lbtest.stalled", handler)
    logger.info("first")  # the writer takes it, and waits in write()
    deadline = time.monotonic() + 5
    while handler._queue.qsize() and time.monotonic() < deadline:
        time.sleep(0.01)
    for i in range(5):
        logger.info("queued %d", i)  # returns at once
    late = threading.Thread(target=logger.info, args=("late",))
    late.start()
    late.join(0.3)
    assert late.is_alive()  # the sixth waits, as it waited for the stream before
    stream.released.set()
    late.join(10)
    assert not late.is_alive()
    handler.flush()
    assert stream.getvalue().splitlines() == ["first", *(f"queued {i}" for i in range(5)), "late"]


# ---------------------------------------------------------------- access lines in serve


def access_line(ids: dict[str, str], code: str = "OK", duration_ms: float = 1.25) -> Any:
    return access.AccessLine(
        time.time(),
        "BookingService",
        "CreateLease",
        code,
        "OK" if code == "OK" else "SLOT_FULL",
        duration_ms,
        ids,
        threading.current_thread(),
    )


FORMATTERS = {
    "text": TextFormatter(TEXT_FORMAT),
    "text-pid": TextFormatter(TEXT_FORMAT_PID),
    "json": JsonLineFormatter(),
    "json-pid": JsonLineFormatter(pid=True),
}


@settings(max_examples=200, deadline=None)
@given(
    ids=st.dictionaries(st.sampled_from(ID_FIELDS), st.text(min_size=1, max_size=40)),
    code=st.sampled_from(["OK", "RESOURCE_EXHAUSTED"]),
    duration_ms=st.floats(min_value=0, max_value=1e6, allow_nan=False),
    created=st.floats(min_value=0, max_value=4e9, allow_nan=False),
)
def test_an_access_line_from_its_values_is_what_the_formatter_makes_of_its_record(
    ids: dict[str, str], code: str, duration_ms: float, created: float
) -> None:
    line = access_line(ids, code, duration_ms)._replace(created=created)
    for formatter in FORMATTERS.values():
        assert formatter.format_access(line) == formatter.format(line.record())


def test_the_record_an_access_line_makes_later_is_the_one_of_its_call() -> None:
    line = access_line({"merchant_id": MERCHANT})
    made: list[logging.LogRecord] = []
    maker = threading.Thread(target=lambda: made.append(line.record()), name="log-writer")
    time.sleep(0.01)
    maker.start()
    maker.join()
    (record,) = made
    assert record.created == line.created
    assert record.msecs == int((line.created % 1) * 1000)
    assert (record.thread, record.threadName) == (threading.get_ident(), line.thread.name)
    assert record.getMessage() == f"BookingService.CreateLease OK OK 1.2ms merchant_id={MERCHANT}"


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_serve_writes_access_lines_from_their_values_without_records(
    log_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With serve's logging, the serving thread hands over an access line's values and
    no LogRecord is made for it anywhere; the line is the one its record would give."""
    buffer = io.StringIO()
    configure_logging("INFO", log_format, buffer)
    handler = logging.getLogger().handlers[-1]
    seen: list[access.AccessLine] = []

    def sink(line: access.AccessLine) -> None:
        seen.append(line)
        handler.take_access(line)

    monkeypatch.setattr(access, "_sink", sink)
    made: list[access.AccessLine] = []
    monkeypatch.setattr(access.AccessLine, "record", lambda line: made.append(line))
    request = create_request()
    access.observed("BookingService", "CreateLease", request, None, "OK", "OK", 0.01234)
    logging.getLogger("leasebroker").warning("after the access line")
    handler.flush()
    monkeypatch.undo()
    (line,) = seen
    assert made == []
    first, second = buffer.getvalue().splitlines()
    assert first == handler.formatter.format(line.record())
    assert MERCHANT in first and "after the access line" in second


def test_access_records_still_reach_every_handler_and_filter_in_order() -> None:
    """A handler added beside serve's gets every access record, made by the writer with
    its call's time and thread; a filter still drops lines; the order stays."""
    buffer = io.StringIO()
    configure_logging("INFO", "text", buffer)
    handler = logging.getLogger().handlers[-1]
    keep = Kept()
    kept = keep.records
    old_level = access.access_log.level
    access.access_log.addHandler(keep)
    access.access_log.setLevel(logging.INFO)
    dropped = logging.Filter("nothing.matches")
    try:
        request = create_request()
        served: list[int] = []

        def serve_two() -> None:
            served.append(threading.get_ident())
            for code in ("OK", "RESOURCE_EXHAUSTED"):
                access.observed("BookingService", "CreateLease", request, None, code, "R", 0.002)

        thread = threading.Thread(target=serve_two, name="booking-service")
        thread.start()
        thread.join()
        logging.getLogger("leasebroker").warning("between")
        handler.flush()
        access.access_log.addFilter(dropped)
        access.observed("BookingService", "CreateLease", request, None, "OK", "OK", 0.002)
        handler.flush()
    finally:
        access.access_log.removeHandler(keep)
        access.access_log.removeFilter(dropped)
        access.access_log.setLevel(old_level)
    assert [record.getMessage().split()[1] for record in kept] == ["OK", "RESOURCE_EXHAUSTED"]
    assert {(record.thread, record.threadName) for record in kept} == {
        (served[0], "booking-service")
    }
    lines = buffer.getvalue().splitlines()
    assert [line.split()[4] for line in lines[:2]] == ["OK", "RESOURCE_EXHAUSTED"]
    assert lines[2].endswith("WARNING leasebroker: between") and len(lines) == 3
    assert lines[:2] == [handler.format(record) for record in kept]
