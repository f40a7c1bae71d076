"""Auto-pipelining: script calls made at the same time share Redis round trips.

A lone call goes straight to Redis, as without this module: one ``EVALSHA`` on a pooled
connection, in the caller's thread, with no timer and no hand-off. A call made while
another is on its way to Redis waits in a queue instead; a sender thread takes
everything queued (at most :data:`MAX_BATCH` calls), sends it as one non-transactional
pipeline on one pooled connection, and hands each caller its own reply, or its own
error; meanwhile the next batch gathers. Each call is still one script that Redis runs
whole and alone; the pipeline only saves the client the writes, reads and pool
checkouts of one round trip per call, which bound a Python process's throughput.

What a caller sees is what it saw before:

- **A reply or a refusal of its own.** An error reply (``BUSY``, ``OOM``, ...) belongs
  to the one call it answers. A batch that fails as a whole (the connection broke, no
  free connection in time) fails each of its calls with that error: ``STORE_UNAVAILABLE``,
  safe to retry as before.
- **Its own deadline.** A caller waits until its deadline at most, then gives up with
  ``DEADLINE_EXCEEDED``. A call still queued then is never sent; one already sent may
  still run, and its script refuses once Redis's clock is past the deadline it was given
  (as for a direct call whose reply is cut short). A batch is sent, and its replies read,
  within the latest deadline among its calls (or the socket timeout when one has none).
- **Scripts reloaded.** Calls answered ``NOSCRIPT`` (after a restart, a failover or
  ``SCRIPT FLUSH``) are sent once more after ``SCRIPT LOAD``, as redis-py's ``Script`` does.

Sender threads are daemon threads started when calls first overlap; each ends after
:data:`LINGER_S` without work, so an idle process keeps none. One sender makes the
largest batches, and measured fastest (``benchmarks/run.py``, the library rows); more
would keep more batches on their way at once. A Redis Cluster client does not pipeline
here (its calls go straight to the node of their key).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import redis.exceptions

from leasebroker.core.deadline import call_deadline, remaining_s
from leasebroker.core.scripts import BoundScript

log = logging.getLogger(__name__)

# The most calls one pipeline carries.
MAX_BATCH = 64
# The most batches on their way to Redis at once (one sender thread each).
SENDERS = 1
# How long a sender thread waits for work before it ends.
LINGER_S = 1.0

_QUEUED, _SENT, _ABANDONED = "queued", "sent", "abandoned"


class _Call:
    """One queued call (a script's, or a plain command with no script): its command,
    its deadline, and its outcome once known."""

    __slots__ = ("_done", "command", "deadline", "error", "finished", "reply", "script", "state")

    def __init__(
        self, script: BoundScript | None, command: list[Any], deadline: float | None
    ) -> None:
        self.script = script
        self.command = command
        self.deadline = deadline  # on time.monotonic(), or None
        self.state = _QUEUED
        self.finished = False
        self.reply: Any = None
        self.error: BaseException | None = None
        self._done = threading.Lock()
        self._done.acquire()

    def finish(self, reply: Any = None, error: BaseException | None = None) -> None:
        self.reply, self.error, self.finished = reply, error, True
        self._done.release()

    def wait(self, timeout: float | None) -> bool:
        """Whether the outcome came within ``timeout`` seconds (None: wait for it)."""
        if timeout is None:
            return self._done.acquire()
        return self._done.acquire(timeout=max(0.0, timeout))

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.reply


def _own_copy(error: BaseException) -> BaseException:
    """A copy of a batch's error for one of its callers: each raises its own object, so
    no two threads set the traceback of one exception."""
    try:
        return copy.copy(error)
    except Exception:  # an exception class that cannot be rebuilt from its args
        return error


class Pipeliner:
    """Runs registered scripts on ``client``, coalescing concurrent calls (see above).

    ``client`` is a single-node redis-py client (a plain, Sentinel or fakeredis one).
    Thread-safe; one per client is enough, and a process that forks starts afresh.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._reset()
        _EVERY.add(self)
        # Batches taken from the queue, the calls they carried and the largest one.
        self.batches = self.batched_calls = self.largest_batch = 0

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._queue: deque[_Call] = deque()
        self._busy = 0  # direct calls and batches on their way to Redis
        self._senders = 0  # sender threads alive
        self._idle = 0  # of which waiting for work
        self._in_batches = 0  # calls taken from the queue, not yet finished

    @property
    def waiting(self) -> int:
        """How many calls are queued or in a batch on its way to Redis (for tests, stats)."""
        with self._lock:
            return len(self._queue) + self._in_batches

    def call(self, script: BoundScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run ``script`` and return its reply; raise what redis-py raised for it (a
        ``TimeoutError`` when the caller's deadline passed while it waited)."""
        return self._run(script, lambda: script(keys, args), lambda: script.command(keys, args))

    def command(self, *command: Any) -> Any:
        """Run one plain command (the record read before a booking's script: HGETALL)
        the same way: alone, straight through; else in the next pipeline. Its reply is
        what the client's own method gives (redis-py parses it by the command's name)."""
        client = self._client
        return self._run(None, lambda: client.execute_command(*command), lambda: list(command))

    def _run(
        self,
        script: BoundScript | None,
        directly: Callable[[], Any],
        as_command: Callable[[], list[Any]],
    ) -> Any:
        with self._lock:
            direct = self._busy == 0 and not self._queue
            if direct:
                self._busy += 1
        if direct:
            try:
                return directly()
            finally:
                with self._lock:
                    self._busy -= 1
        command = as_command()  # a script's wrong key count fails here, unsent
        left = remaining_s()
        queued = _Call(script, command, None if left is None else time.monotonic() + left)
        with self._lock:
            self._queue.append(queued)
            try:
                self._wake_sender()
            except BaseException:  # no thread could be started: nobody would send it
                self._queue.remove(queued)
                raise
        return self._wait(queued)

    def _wake_sender(self) -> None:
        """With the lock held, after queueing: make sure a sender will take the call."""
        if self._idle:
            self._work.notify()
        elif self._senders < SENDERS:
            threading.Thread(target=self._sender, name="leasebroker-pipeline", daemon=True).start()
            self._senders += 1
        # else every sender is busy and takes the queue when its batch is done

    def _wait(self, queued: _Call) -> Any:
        if queued.wait(remaining_s()):
            return queued.outcome()
        with self._lock:
            if queued.state is _QUEUED:  # never sent, and now never will be
                self._queue.remove(queued)
                queued.state = _ABANDONED
                where = "before it was sent"
            else:
                where = "before its reply came"
        if queued.wait(0):  # the reply came after all
            return queued.outcome()
        raise redis.exceptions.TimeoutError(f"the call's deadline passed {where}")

    def _sender(self) -> None:
        """A sender thread: take what is queued and send it, until there has been nothing
        to take for LINGER_S."""
        with self._lock:
            try:
                self._take_and_send()
            finally:
                self._senders -= 1
                if self._queue:  # ended by an error: another sender takes what is left
                    with contextlib.suppress(RuntimeError):
                        self._wake_sender()

    def _take_and_send(self) -> None:
        """The sender's loop, entered and left with the lock held."""
        while True:
            if not self._queue:
                self._idle += 1
                woken = self._work.wait(LINGER_S)
                self._idle -= 1
                if not woken and not self._queue:
                    return
                continue
            batch = [self._queue.popleft() for _ in range(min(MAX_BATCH, len(self._queue)))]
            for each in batch:
                each.state = _SENT
            self.batches += 1
            self.batched_calls += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            self._busy += 1
            self._in_batches += len(batch)
            if self._queue:  # more than one batch's worth: another sender may take it
                with contextlib.suppress(RuntimeError):  # else this one will, later
                    self._wake_sender()
            self._lock.release()
            try:
                self._send(batch)
            finally:
                self._lock.acquire()
                self._busy -= 1
                self._in_batches -= len(batch)

    def _send(self, batch: list[_Call]) -> None:
        """Send ``batch`` and finish every call in it, whatever happens."""
        try:
            now = time.monotonic()
            live = []
            for each in batch:
                if each.deadline is not None and each.deadline <= now:
                    each.finish(error=redis.exceptions.TimeoutError("the call's deadline passed"))
                else:
                    live.append(each)
            if live:
                self._pipeline(live, retry_noscript=True)
        except BaseException as exc:  # a bug here must not leave a caller waiting forever
            for each in batch:
                if not each.finished:
                    each.finish(error=_own_copy(exc))
            if not isinstance(exc, Exception):
                raise
            log.exception("sending a pipeline failed")

    def _pipeline(self, calls: list[_Call], *, retry_noscript: bool) -> None:
        deadlines = [each.deadline for each in calls]
        latest = None if None in deadlines else max(d for d in deadlines if d is not None)
        with call_deadline(None if latest is None else latest - time.monotonic()):
            try:
                pipe = self._client.pipeline(transaction=False)
                for each in calls:
                    pipe.execute_command(*each.command)
                replies = pipe.execute(raise_on_error=False)
            except Exception as exc:  # the whole batch failed (connection, pool, timeout)
                for each in calls:
                    each.finish(error=_own_copy(exc))
                return
            unknown = []
            for each, reply in zip(calls, replies, strict=True):
                if (
                    retry_noscript
                    and each.script is not None
                    and isinstance(reply, redis.exceptions.NoScriptError)
                ):
                    unknown.append(each)
                elif isinstance(reply, Exception):
                    each.finish(error=reply)
                else:
                    each.finish(reply)
            if not unknown:
                return
            try:  # Redis forgot its scripts: load them, send those calls once more
                for script in {each.script for each in unknown if each.script is not None}:
                    self._client.script_load(script.text)
            except Exception as exc:
                for each in unknown:
                    each.finish(error=_own_copy(exc))
                return
        self._pipeline(unknown, retry_noscript=False)


# Every Pipeliner, so that a forked child starts each afresh: the parent's sender threads
# and queued calls are not in the child, and a lock may have been held at the fork.
_EVERY: weakref.WeakSet[Pipeliner] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pipeliner in list(_EVERY):
        pipeliner._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
