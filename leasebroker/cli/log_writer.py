"""A log handler that writes one thread's way: the lines of busy loggers (the access
log) leave the thread that logs them at once, and one writer thread writes them.

``serve`` logs an access line per RPC from its handler threads. With a plain
:class:`logging.StreamHandler` each line holds the handler's lock across formatting and
a ``write`` that lets go of the GIL, so under load the handler threads queue on that
lock and hand the GIL back and forth: a convoy of context switches that costs more than
formatting the line. Here a handler thread only puts its record on a queue; the writer
thread lets lines gather for :data:`GATHER_S` (50 ms), formats them and writes them in
as few ``write`` calls as whole lines of at most :data:`MAX_WRITE_BYTES` allow.

What is written is the same, line for line, in the same order. Each record (its time,
thread and process) is made by the thread that logs, and its message is fixed there, as
:class:`logging.handlers.QueueHandler` fixes it. The access log goes further: ``serve``
makes this handler the access sink (``wire.access.set_access_sink``), so a serving
thread queues only an access line's values, with its time and thread, and the writer
formats them; when the access logger's records would reach other handlers too (a
handler added to it or to the root, a filter), the writer makes the record and hands
it to the logging set-up instead. Every line goes through the one queue,
and a line of any other logger (start-up, warnings, errors: few) is written before the
call that logs it returns, so it also keeps its place among what its thread writes to
stderr itself. :meth:`~BackgroundStreamHandler.flush` returns once everything logged
before it is written; ``logging.shutdown`` calls it at exit.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import weakref
from collections.abc import Iterable
from typing import IO, Any

from leasebroker.wire.access import AccessLine, access_log

# The most one write carries (whole lines; a longer line goes alone): a pipe's atomic
# write size, so the lines of several processes sharing one stderr never cut into each
# other.
MAX_WRITE_BYTES = 4096
# After writing, the writer lets the background lines gather this long (unless another
# line is waited for): under load some twenty writes a second, not one per line. Each
# wake of the writer takes the GIL from the thread serving calls: at 5 ms the writer
# thread took ~25 us of CPU per access line and the serving thread ~25 us more than at
# 50 ms, where the writer takes ~9 us (2-core box, alternating runs, 2026-11-28).
GATHER_S = 0.05
# The longest a logging call (or flush) waits for the writer thread.
WAIT_S = 5.0
# Past this many lines not yet written (a stderr that does not take them), a background
# line waits for the writer too, as it waited for the stream before: memory stays bounded.
MAX_QUEUED = 10_000

_handlers: weakref.WeakSet[BackgroundStreamHandler] = weakref.WeakSet()


class BackgroundStreamHandler(logging.StreamHandler):
    """A :class:`logging.StreamHandler` whose lines a daemon thread writes; those of the
    ``background`` loggers without waiting for them."""

    def __init__(self, stream: IO[str] | None = None, background: Iterable[str] = ()) -> None:
        super().__init__(stream)
        self.background = frozenset(background)
        self._reset()
        _handlers.add(self)

    def _reset(self) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._waited = threading.Event()  # someone waits: write now, do not gather
        self._writer: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def handle(self, record: logging.LogRecord) -> Any:
        """As Handler.handle, without the handler's lock: the queue is the only thing
        shared, and it is thread-safe."""
        kept = self.filter(record)
        if isinstance(kept, logging.LogRecord):  # Python 3.12+: a filter may replace it
            record = kept
        if kept:
            self.emit(record)
        return kept

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            self.handleError(record)
            return
        # A copy with the message as it is now (its arguments may change once this
        # returns), leaving the record as other handlers see it, as QueueHandler does.
        fixed = object.__new__(type(record))
        fixed.__dict__.update(record.__dict__)
        fixed.msg, fixed.args = message, None
        self._put(fixed, background=record.name in self.background)

    def take_access(self, line: AccessLine) -> None:
        """The access sink (``set_access_sink``): queue the line's values, as a background
        line; the writer thread formats them (see :meth:`_is_sole_destination`)."""
        self._put(line, background=True)

    def _put(self, item: logging.LogRecord | AccessLine, background: bool) -> None:
        if sys.is_finalizing() or threading.current_thread() is self._writer:
            self._write([item])  # no writer thread to wait for
        elif background and self._queue.qsize() < MAX_QUEUED:
            self._queue.put(item)
            if self._writer is None:
                self._start()
        else:
            self._queue.put(item)
            self._wait()

    def flush(self) -> None:
        """Return once every line logged before this call is written."""
        if sys.is_finalizing() or threading.current_thread() is self._writer:
            return
        self._wait()

    def _wait(self) -> None:
        """Wait until what is queued now is written (at most WAIT_S)."""
        written = threading.Event()
        self._queue.put(written)
        if self._writer is None:
            self._start()
        self._waited.set()
        written.wait(WAIT_S)

    def _start(self) -> None:
        with self._start_lock:
            if self._writer is None:
                self._writer = threading.Thread(target=self._run, name="log-writer", daemon=True)
                self._writer.start()

    def _run(self) -> None:
        while True:
            items = [self._queue.get()]
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._write(items)
            if self._waited.wait(GATHER_S):
                self._waited.clear()

    def _write(self, items: list[Any]) -> None:
        """Write the records' lines in order; set each event after the lines before it."""
        lines: list[str] = []
        records: list[logging.LogRecord | AccessLine] = []
        size = 0
        sole: bool | None = None  # whether access lines come to this handler only
        for item in items:
            if isinstance(item, threading.Event):
                self._send(lines, records)
                lines, records, size = [], [], 0
                item.set()
                continue
            if isinstance(item, AccessLine):
                if sole is None:
                    sole = self._is_sole_destination()
                if not sole:  # the logging set-up delivers it, as its record is delivered
                    self._send(lines, records)
                    lines, records, size = [], [], 0
                    access_log.handle(item.record())
                    continue
            try:
                line = self._format_item(item) + self.terminator
            except Exception:
                self.handleError(_as_record(item))
                continue
            length = len(line) if line.isascii() else len(line.encode("utf-8", "replace"))
            if lines and size + length > MAX_WRITE_BYTES:
                self._send(lines, records)
                lines, records, size = [], [], 0
            lines.append(line)
            records.append(item)
            size += length
        self._send(lines, records)

    def _format_item(self, item: logging.LogRecord | AccessLine) -> str:
        """A record's line, or an access line's: straight from its values when the
        formatter can (``format_access``), else from its record."""
        if isinstance(item, AccessLine):
            direct = getattr(self.formatter, "format_access", None)
            text = direct(item) if direct is not None else None
            if text is not None:
                return text
            item = item.record()
        return self.format(item)

    def _is_sole_destination(self) -> bool:
        """Whether an access record would come to this handler and to no other handler
        (it propagates only to here, nothing filters it, no level stops it), so that its
        line can be written here without the record ever being made."""
        if access_log.disabled or access_log.filters or self.filters:
            return False
        if self.level > logging.INFO:
            return False
        found = False
        logger: logging.Logger | None = access_log
        while logger is not None:
            for handler in logger.handlers:
                if handler is not self:
                    return False
                found = True
            if not logger.propagate:
                break
            logger = logger.parent
        return found

    def _send(self, lines: list[str], records: list[logging.LogRecord | AccessLine]) -> None:
        if not lines:
            return
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:
            self.handleError(_as_record(records[0]))


def _as_record(item: logging.LogRecord | AccessLine) -> logging.LogRecord:
    return item.record() if isinstance(item, AccessLine) else item


def _after_fork_in_child() -> None:
    """A forked child has the queue but not the writer thread: start afresh (what was
    queued before the fork is the parent's to write)."""
    for handler in list(_handlers):
        handler._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
