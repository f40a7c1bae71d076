"""What every broker operation shares: the client, keys, scripts and error handling."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis.cluster
import redis.exceptions

from leasebroker.core.deadline import RedisClock, expired
from leasebroker.core.errors import BrokerError, FieldViolation, Reason
from leasebroker.core.keys import IdKind, KeyBuilder, ParsedId, SlotId, parse_public_id
from leasebroker.core.observe import observer
from leasebroker.core.outcomes import Outcome
from leasebroker.core.permissions import REQUIRED_COMMANDS
from leasebroker.core.pipelining import Pipeliner
from leasebroker.core.redis_errors import is_unavailable
from leasebroker.core.scripts import BoundScript, Scripts
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.steps import Bookkeeping, ReadRecord, Steps, T
from leasebroker.core.validation import raise_if_invalid, selection_violations

log = logging.getLogger(__name__)

# What a script's deadline leaves for the offset between this process's clock and
# Redis's (see _deadline_arg).
DEADLINE_SLACK_MS = 250

# How often an operation reads a record again when it moved between the read and
# the script (a concurrent reschedule), before it gives up with SLOT_MOVED.
MOVE_RETRIES = 5

# How often a process re-adds a merchant to the registry the sweeper walks.
_REGISTRY_REFRESH_S = 60.0

# Outcome -> (reason, message) or (reason, message, the request field it is about).
Refusals = Mapping[Outcome, tuple[Reason, str] | tuple[Reason, str, str]]


def _connection_option(client: Any, name: str) -> Any:
    """An option of the client's connections (single-node and fakeredis clients)."""
    getter = getattr(client, "get_connection_kwargs", None)
    return getter().get(name) if callable(getter) else None


def unavailable(exc: Exception) -> BrokerError:
    return BrokerError(Reason.STORE_UNAVAILABLE, "the lease store is unreachable; safe to retry")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _denied_name(message: str) -> str:
    """The command a NOPERM reply names ("... to run the 'evalsha' command")."""
    found = re.search(r"run the '([^']+)' command", message)
    return found[1].upper() if found else message


def store_error(exc: redis.exceptions.RedisError, what: str) -> BrokerError:
    """A Redis failure as a BrokerError: DEADLINE_EXCEEDED when the caller's deadline
    cut it short, STORE_UNAVAILABLE when it means "not now" (safe to retry), else
    INTERNAL (logged with its traceback)."""
    if expired():
        error = BrokerError(Reason.DEADLINE_EXCEEDED, "the call's deadline passed")
    elif is_unavailable(exc):
        error = unavailable(exc)
    else:
        log.error("Redis call %s failed", what, exc_info=exc)
        error = BrokerError(Reason.INTERNAL, "internal error")
    observer().redis_error(error.reason.value, exc)
    return error


def _run_directly(script: BoundScript, keys: Sequence[str], args: Sequence[Any]) -> Any:
    return script(keys, args)


class BrokerCore:
    """A Redis client with the broker's keys and registered scripts.

    ``auto_pipeline``: concurrent script calls share pipelined round trips
    (core/pipelining.py; never on a Redis Cluster client). Off: each call is its own.
    """

    def __init__(
        self, client: Any, config: BrokerConfig | None = None, *, auto_pipeline: bool = True
    ) -> None:
        if _connection_option(client, "decode_responses"):
            raise ValueError("the broker needs a Redis client with decode_responses=False")
        self.client = client
        self.config = config or BrokerConfig()
        self.keys = KeyBuilder(self.config.key_prefix)
        self.scripts = Scripts(client)
        self.redis_clock = RedisClock()
        self._cluster = isinstance(client, redis.cluster.RedisCluster)
        self.pipeliner = Pipeliner(client) if auto_pipeline and not self._cluster else None
        self._run_script = self.pipeliner.call if self.pipeliner else _run_directly
        # The record read before a booking's script shares pipelines too.
        self._run_command = self.pipeliner.command if self.pipeliner else client.execute_command
        self._registered: dict[str, float] = {}
        # The due index entries this process wrote last (core/due.py): merchant ->
        # (expiry ms, monotonic time of the write).
        self._marks: dict[str, tuple[int, float]] = {}
        self._marks_lock = threading.Lock()
        self._registry_lock = threading.Lock()

    def _call(self, name: str, keys: Sequence[str], args: Sequence[str | bytes | int]) -> list:
        """Run one script; store failures become STORE_UNAVAILABLE, anything else INTERNAL
        (a script that refused a malformed argument too: it wrote nothing)."""
        try:
            reply = self._run_script(self.scripts[name], keys, args)
        except redis.exceptions.RedisError as exc:
            raise store_error(exc, name) from exc
        return self.checked_reply(name, args, reply)

    @staticmethod
    def checked_reply(name: str, args: Sequence[str | bytes | int], reply: list) -> list:
        """A script's reply, unless it is a refusal no caller handles itself: a
        malformed argument (INTERNAL: it wrote nothing) or a passed deadline."""
        if int(reply[0]) == Outcome.BAD_ARGUMENT:
            log.error("script %s refused ARGV[%s]: %r", name, reply[1], args[int(reply[1]) - 1])
            raise BrokerError(Reason.INTERNAL, "internal error")
        if int(reply[0]) == Outcome.DEADLINE_PASSED:
            raise BrokerError(Reason.DEADLINE_EXCEEDED, "the call's deadline passed")
        return reply

    def _deadline_arg(self) -> int | str:
        """The current call's deadline on Redis's clock for a script, or "" for none.

        Sent with DEADLINE_SLACK_MS to spare: the point is to stop calls that sat in a
        stalled Redis, not to time a call to the millisecond. A Redis Cluster gets none:
        its primaries' clocks may differ, and the offset is measured on one node.
        """
        deadline = self.redis_clock.deadline_ms()
        if deadline is None or self._cluster:
            return ""
        return deadline + DEADLINE_SLACK_MS

    def _read(self, fn: Any, *args: Any) -> Any:
        """Call Redis: store failures become STORE_UNAVAILABLE, anything else INTERNAL."""
        try:
            return fn(*args)
        except redis.exceptions.RedisError as exc:
            raise store_error(exc, getattr(fn, "__name__", str(fn))) from exc

    def drive(self, steps: Steps[T]) -> T:
        """Run an operation's steps (see core/steps.py) on this broker's client: each
        record read and script call in turn, in this thread."""
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value
            if isinstance(step, ReadRecord):
                reply = self._record(step.key)
            elif isinstance(step, Bookkeeping):
                reply = self._bookkeep(step.command)
            else:
                reply = self._call(step.name, step.keys, step.args)

    def _bookkeep(self, command: tuple[Any, ...]) -> Any:
        """A Bookkeeping step's reply, or the BrokerError it failed with (returned)."""
        try:
            return self.client.execute_command(*command)
        except redis.exceptions.RedisError as exc:
            return store_error(exc, str(command[0]))

    def _record(self, key: str) -> dict[str, bytes]:
        """A record HASH with text field names (empty when the key does not exist)."""
        try:
            raw = self._run_command("HGETALL", key)
        except redis.exceptions.RedisError as exc:  # named by its command, as _call does
            raise store_error(exc, "HGETALL") from exc
        return {k.decode(): v for k, v in raw.items()}

    def _load(self, kind: str, public_id: str) -> tuple[ParsedId, str, dict[str, bytes]]:
        """The merchant, record key and fields behind a lease or booking id.

        Raises LEASE_NOT_FOUND / BOOKING_NOT_FOUND for a malformed id or no record.
        """
        return self.drive(self._load_steps(kind, public_id))

    def _load_steps(
        self, kind: str, public_id: str
    ) -> Steps[tuple[ParsedId, str, dict[str, bytes]]]:
        """:meth:`_load` as steps."""
        is_lease = kind == IdKind.LEASE
        noun, reason = (
            ("lease", Reason.LEASE_NOT_FOUND) if is_lease else ("booking", Reason.BOOKING_NOT_FOUND)
        )
        parsed = parse_public_id(public_id, kind)
        if parsed is None:
            raise BrokerError(reason, f"no such {noun} (malformed {noun} id)")
        build = self.keys.lease if is_lease else self.keys.booking
        key = build(parsed.merchant_id, parsed.token)
        record: dict[str, bytes] = yield ReadRecord(key)
        # A lease record does not repeat its id: the key, built from the id, names it.
        if not record or (not is_lease and record.get("booking_id") != public_id.encode()):
            raise BrokerError(reason, f"no such {noun}")
        return parsed, key, record

    @staticmethod
    def _until_settled(attempt: Callable[[], Steps[list]]) -> Steps[Outcome]:
        """Run ``attempt`` (read the record, run the script with the slot key it names)
        until the script does not answer SLOT_MOVED, at most MOVE_RETRIES times."""
        for _ in range(MOVE_RETRIES):
            outcome = Outcome(int((yield from attempt())[0]))
            if outcome is not Outcome.SLOT_MOVED:
                break
        return outcome

    @staticmethod
    def check_selection(
        merchant_id: str,
        slot: SlotId | None = None,
        start_from_ns: int | None = None,
        start_before_ns: int | None = None,
    ) -> None:
        """INVALID_FIELD for a malformed merchant id, slot or time bound that a read names."""
        raise_if_invalid(selection_violations(merchant_id, slot, start_from_ns, start_before_ns))

    def denied_commands(self) -> list[str]:
        """The commands the broker needs that this Redis user may not run (empty: all
        allowed). Run it at start: inside a script a denied command fails half-way."""
        script = self.scripts["check_permissions"]
        try:
            reply = script([self.keys.probe()], list(REQUIRED_COMMANDS))
        except redis.exceptions.NoPermissionError as exc:  # EVALSHA or SCRIPT LOAD itself
            return [_denied_name(str(exc))]
        except redis.exceptions.RedisError as exc:
            raise store_error(exc, "check_permissions") from exc
        return sorted(_text(name) for name in reply[1:])

    def now_ms(self) -> int:
        """Redis's clock, for views that tell a live hold from an expired one. Each
        reading also keeps :attr:`redis_clock` current (see core/deadline.py)."""
        sent = time.monotonic()
        seconds, micros = self._read(self.client.time)
        now = int(seconds) * 1000 + int(micros) // 1000
        self.redis_clock.record(sent, time.monotonic(), now)
        return now

    @staticmethod
    def _refuse(outcome: Outcome, refusals: Refusals) -> BrokerError:
        if outcome not in refusals:
            log.error("unexpected script outcome %s", outcome)
            return BrokerError(Reason.INTERNAL, "internal error")
        reason, message, *field = refusals[outcome]
        return BrokerError(reason, message, tuple(FieldViolation(f, message) for f in field))

    def register_merchant(self, merchant_id: str) -> None:
        """Make sure the expiry sweeper knows this merchant (at most once a minute per process).

        The registry is one SET outside any merchant's hash tag, so scripts cannot
        write it; a missed entry only delays lease.expired events, never a decision.
        """
        failed = self.drive(self.registration_steps(merchant_id))
        if failed is not None:
            raise failed

    def registration_steps(self, merchant_id: str) -> Steps[BrokerError | None]:
        """:meth:`register_merchant` as steps (core/steps.py), the write best effort: the
        error it failed with, forgotten so that the next call writes again, or None."""
        if not self.claim_registration(merchant_id):
            return None
        added = yield Bookkeeping(("SADD", self.keys.merchants(), merchant_id))
        if isinstance(added, BrokerError):
            self.forget_registration(merchant_id)
            return added
        return None

    def claim_registration(self, merchant_id: str) -> bool:
        """Whether this process should (re-)add the merchant to the registry now; if so,
        it counts as added until :meth:`forget_registration` (the write failed)."""
        now = time.monotonic()
        with self._registry_lock:
            if now - self._registered.get(merchant_id, -_REGISTRY_REFRESH_S) < _REGISTRY_REFRESH_S:
                return False
            self._registered[merchant_id] = now
            return True

    def forget_registration(self, merchant_id: str) -> None:
        with self._registry_lock:
            self._registered.pop(merchant_id, None)

    def merchants(self) -> list[str]:
        """Every merchant the registry knows (those with leases, bookings or inventory)."""
        members = self._read(self.client.smembers, self.keys.merchants())
        return sorted(m.decode() for m in members)
