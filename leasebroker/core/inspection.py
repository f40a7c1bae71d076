"""Reading what the broker stored, for operators: event streams and a merchant's keys.

These reads decide nothing, so they run as plain commands, not scripts. They live in
the core because it is the only part of leasebroker that talks to Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.exceptions

from leasebroker.core.base import BrokerCore, store_error
from leasebroker.core.errors import BrokerError, FieldViolation, Reason

# Characters SCAN's MATCH treats specially; escaped with a backslash in patterns.
_GLOB_SPECIAL = "\\*?[]^"


@dataclass(frozen=True)
class StreamEvent:
    """One entry of a merchant's event stream: its stream id and its fields as stored."""

    entry_id: str
    fields: dict[str, str]


@dataclass(frozen=True)
class StoredKey:
    """One Redis key of a merchant: its name, kind (``slot``, ``lease``, ...), Redis
    type and time to live (None: it does not expire)."""

    key: str
    kind: str
    type: str
    ttl_ms: int | None


def glob_escape(text: str) -> str:
    """``text`` as a SCAN MATCH pattern that matches only itself."""
    return "".join(f"\\{ch}" if ch in _GLOB_SPECIAL else ch for ch in text)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _events(entries: Any) -> list[StreamEvent]:
    return [
        StreamEvent(_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
        for entry_id, fields in entries or ()
    ]


class InspectionOps(BrokerCore):
    """Event streams, key listings and registry checks."""

    def events(
        self, merchant_id: str, since: str | None = None, count: int | None = None
    ) -> list[StreamEvent]:
        """The merchant's events after stream id ``since`` (the first ``count``), or
        else its last ``count`` events, or all of them, oldest first."""
        self.check_selection(merchant_id)
        key = self.keys.events(merchant_id)
        if count == 0:
            return []
        try:
            if since is not None:
                entries = self.client.xrange(key, f"({since}", "+", count=count)
            elif count is None:
                entries = self.client.xrange(key, "-", "+")
            else:
                entries = list(reversed(self.client.xrevrange(key, "+", "-", count=count)))
        except redis.exceptions.ResponseError as exc:
            if since is None or "ID" not in str(exc):
                raise store_error(exc, "XRANGE") from exc
            problem = FieldViolation("since", f"is not a stream id Redis accepts: {exc}")
            raise BrokerError(Reason.INVALID_FIELD, str(exc), (problem,)) from exc
        except redis.exceptions.RedisError as exc:
            raise store_error(exc, "XRANGE") from exc
        return _events(entries)

    def last_event_id(self, merchant_id: str) -> str:
        """The id of the merchant's newest event, or ``0-0`` when it has none."""
        last = self._read(self.client.xrevrange, self.keys.events(merchant_id), "+", "-", 1)
        return _text(last[0][0]) if last else "0-0"

    def wait_events(
        self, merchant_id: str, after: str, block_ms: int, count: int
    ) -> list[StreamEvent]:
        """Events after stream id ``after``, waiting up to ``block_ms`` for one to come."""
        key = self.keys.events(merchant_id)
        reply = self._read(self.client.xread, {key: after}, count, block_ms)
        return [event for _stream, entries in reply or () for event in _events(entries)]

    def merchant_keys(self, merchant_id: str) -> list[StoredKey]:
        """The merchant's keys now (SCAN of its root), with their type and TTL."""
        self.check_selection(merchant_id)
        root = self.keys.merchant_root(merchant_id)

        def scan() -> list[str]:
            found = self.client.scan_iter(match=f"{glob_escape(root)}:*", count=1000)
            return sorted({_text(name) for name in found})

        names = self._read(scan)
        if not names:
            return []

        def describe() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for name in names:
                pipe.type(name)
                pipe.pttl(name)
            return pipe.execute()

        replies = self._read(describe)
        found = []
        for index, name in enumerate(names):
            kind_type, ttl = _text(replies[2 * index]), int(replies[2 * index + 1])
            if kind_type == "none":  # gone since the SCAN
                continue
            kind = name[len(root) + 1 :].split(":", 1)[0]
            found.append(StoredKey(name, kind, kind_type, ttl if ttl >= 0 else None))
        return found

    def is_registered(self, merchant_id: str) -> bool:
        """Whether the merchant is in the registry the expiry sweeper walks."""
        return bool(self._read(self.client.sismember, self.keys.merchants(), merchant_id))
