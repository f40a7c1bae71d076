"""What each RPC leaves behind: one access-log line, its metrics, its span's attributes.

:func:`observed` is called by :func:`leasebroker.wire.errors.rpc` once per RPC, with the
request, the reply (or the BrokerError) and the time it took. The access line goes to
the ``leasebroker.access`` logger at INFO (``serve --access-log off`` silences it) and
names the service, method, gRPC code, reason, duration, merchant id and the lease and
booking ids: the only request fields it ever reads are ``merchant_id``, ``lease_id`` and
``booking_id`` (on the message or one level down), so never a client's name, telephone,
email or address. In ``serve`` the serving thread hands over only the line's values
(:class:`AccessLine`), and the log writer's thread formats them (:func:`set_access_sink`).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from google.protobuf.message import Message

from leasebroker.core.keys import IdKind, parse_public_id
from leasebroker.wire import metrics, tracing

access_log = logging.getLogger("leasebroker.access")

ID_FIELDS = ("merchant_id", "lease_id", "booking_id")
# service.method code reason duration, then the ids.
ACCESS_LINE = "%s.%s %s %s %.1fms%s"
# Longest id text an access line repeats; longer ones are cut (they are invalid anyway).
MAX_ID_CHARS = 120


def _printable(value: str) -> str:
    """An id as it may appear in a log line: cut, and with no control characters."""
    value = value[:MAX_ID_CHARS]
    return value if value.isprintable() and " " not in value else repr(value)


# What call_ids reads of one message type, per field in ListFields' order (field
# number): (field name, whether it tracks presence, None) for an id field of the message
# itself; (field name, True, the id fields of its type) for a singular message field.
_Step = tuple[str, bool, tuple[str, ...] | None]
_steps_by_type: dict[Any, tuple[_Step, ...]] = {}


def _is_text(field: Any) -> bool:
    return field is not None and field.type == field.TYPE_STRING and not _repeated(field)


def _steps(descriptor: Any) -> tuple[_Step, ...]:
    """The id fields of a message type and of its singular message fields, worked out
    once per type: a call reads only those, never walks every field it has."""
    steps = _steps_by_type.get(descriptor)
    if steps is None:
        found: list[_Step] = []
        for field in sorted(descriptor.fields, key=lambda f: f.number):
            if field.name in ID_FIELDS and _is_text(field):
                found.append((field.name, field.has_presence, None))
            elif field.message_type is not None and not _repeated(field):
                inner = field.message_type.fields_by_name
                names = tuple(name for name in ID_FIELDS if _is_text(inner.get(name)))
                if names:
                    found.append((field.name, True, names))
        steps = _steps_by_type[descriptor] = tuple(found)
    return steps


def call_ids(*messages: Any) -> dict[str, str]:
    """``merchant_id``, ``lease_id`` and ``booking_id`` found on the messages or on their
    singular message fields (the first set one wins, in field-number order; empty ones
    are skipped). A missing merchant id is read from a lease or booking id."""
    found: dict[str, str] = {}
    for message in messages:
        if not isinstance(message, Message):
            continue
        for name, has_presence, inner in _steps(message.DESCRIPTOR):
            if inner is None:
                value = getattr(message, name)
                if message.HasField(name) if has_presence else value:
                    found.setdefault(name, value)
            elif message.HasField(name):
                sub = getattr(message, name)
                for inner_name in inner:
                    value = getattr(sub, inner_name)
                    if value:
                        found.setdefault(inner_name, value)
    if not found.get("merchant_id"):
        for name, kind in (("lease_id", IdKind.LEASE), ("booking_id", IdKind.BOOKING)):
            parsed = parse_public_id(found.get(name, ""), kind)
            if parsed is not None:
                found["merchant_id"] = parsed.merchant_id
                break
    return {name: _printable(found[name]) for name in ID_FIELDS if found.get(name)}


def _repeated(descriptor: Any) -> bool:
    is_repeated = getattr(descriptor, "is_repeated", None)
    if is_repeated is not None:
        return bool(is_repeated)
    return descriptor.label == descriptor.LABEL_REPEATED


class AccessLine(NamedTuple):
    """One RPC's access line, as the values it is made of.

    :meth:`record` makes the ``LogRecord`` that ``access_log.info(...)`` would have made
    at ``created`` on ``thread``. Without a sink that happens at once; with one (serve's
    log writer, cli/log_writer.py) the line's values are all the serving thread makes,
    and the writer formats them in its own thread: a LogRecord made and handled on the
    serving thread cost it ~60-80 us per call (2-core box, 2026-11-28).
    """

    created: float  # time.time() when the call ended
    service: str
    method: str
    code: str
    reason: str
    duration_ms: float
    ids: dict[str, str]
    thread: threading.Thread  # the thread that served the call

    @property
    def message(self) -> str:
        return ACCESS_LINE % self._args()

    @property
    def extra(self) -> dict[str, Any]:
        """The record's attributes besides the message (a JSON line's fields)."""
        return {
            "service": self.service,
            "method": self.method,
            "code": self.code,
            "reason": self.reason,
            "duration_ms": self.duration_ms,
            **self.ids,
        }

    def _args(self) -> tuple[Any, ...]:
        shown = " ".join(f"{k}={v}" for k, v in self.ids.items())
        return (
            self.service,
            self.method,
            self.code,
            self.reason,
            self.duration_ms,
            f" {shown}" if shown else "",
        )

    def record(self) -> logging.LogRecord:
        """The access record, as ``access_log.info`` would have made it when and where
        the call ended, without its walk up the stack to find the caller (the caller is
        said to be this method). Made in another thread, it has no asyncio task name."""
        # No frame kept in a local variable: a frame that refers to itself is a
        # reference cycle, and with it every frame below it waits for the collector.
        where = AccessLine.record.__code__
        record = access_log.makeRecord(
            access_log.name,
            logging.INFO,
            where.co_filename,
            sys._getframe().f_lineno,
            ACCESS_LINE,
            self._args(),
            None,
            where.co_name,
            self.extra,
        )
        late = record.created - self.created
        record.created = self.created
        record.msecs = int((self.created - int(self.created)) * 1000) + 0.0
        record.relativeCreated -= late * 1000
        record.thread, record.threadName = self.thread.ident, self.thread.name
        return record


AccessSink = Callable[[AccessLine], None]
_sink: AccessSink | None = None


def set_access_sink(sink: AccessSink | None) -> None:
    """Hand every later access line to ``sink`` instead of making its record here (None:
    make it here again). The sink must deliver it to ``access_log`` as its record would
    have gone: serve's log writer does (cli/log_writer.py)."""
    global _sink
    _sink = sink


def observed(
    service: str, method: str, request: Any, reply: Any, code: str, reason: str, seconds: float
) -> None:
    """Count, log and annotate one finished RPC; never raises."""
    try:
        metrics.record_rpc(service, method, code, reason, seconds)
        ids = call_ids(request, reply)
        tracing.annotate(method, reason, ids.get("merchant_id", ""))
        if access_log.isEnabledFor(logging.INFO):
            line = AccessLine(
                time.time(),
                service,
                method,
                code,
                reason,
                round(seconds * 1000, 3),
                ids,
                threading.current_thread(),
            )
            if _sink is None:
                access_log.handle(line.record())
            else:
                _sink(line)
    except Exception:  # never let the bookkeeping fail a call
        logging.getLogger(__name__).exception("could not record %s.%s", service, method)
