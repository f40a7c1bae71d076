"""What the operator commands do, after option parsing (the options are in cli.py).

They work on Redis directly through :class:`LeaseBroker` (no server needed), print
a table by default and JSON with ``--json``, and share one error mapping:

- Redis unreachable (at connect time or later) -> exit 3, ``cannot reach Redis at URL``
- no such lease or booking, or a malformed id -> exit 4, ``no such lease: ID``
- any other refusal -> exit 1, ``REASON: message``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from datetime import date, datetime, timezone
from typing import Any

import redis.exceptions

from leasebroker.broker import DAY_NS, LeaseBroker
from leasebroker.cli import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    config_from_args,
)
from leasebroker.errors import BrokerError, Reason
from leasebroker.keys import KeyBuilder, SlotId
from leasebroker.model import NS_PER_MS
from leasebroker.pruning import PruneReport
from leasebroker.run import open_store
from leasebroker.store import Store, safe_url
from leasebroker.sweeper import sweep_once
from leasebroker.tables import (
    BOOKING_HEADERS,
    INVENTORY_HEADERS,
    LEASE_HEADERS,
    STATUS_HEADERS,
    booking_fields,
    booking_json,
    booking_row,
    event_json,
    event_line,
    human_ms,
    inventory_json,
    inventory_row,
    iso_ms,
    json_line,
    json_text,
    lease_fields,
    lease_json,
    lease_row,
    render_fields,
    render_table,
    slot_fields,
    slot_json,
    status_json,
    status_row,
)

NS_PER_S = 1_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# XREAD BLOCK must return well within the store's socket timeout (5 s); Ctrl-C
# interrupts the wait at once anyway.
FOLLOW_BLOCK_MS = 1_000
FOLLOW_BATCH = 100
_UNREACHABLE = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
)
# Characters SCAN's MATCH treats specially; escaped with a backslash in patterns.
_GLOB_SPECIAL = "\\*?[]^"


class Session:
    """One command's options, and its broker, connected on first use and closed after."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config = config_from_args(args)  # a bad prefix or setting: exit 2, no connection
        self._store: Store | None = None
        self._broker: LeaseBroker | None = None

    @property
    def broker(self) -> LeaseBroker:
        if self._broker is None:
            if not self.args.redis_url:
                raise CliError(
                    f"{self.args.operator} needs --redis-url (or LEASEBROKER_REDIS_URL)",
                    EXIT_USAGE,
                )
            self._store = open_store(self.args, pool_size=2)
            self._broker = LeaseBroker(self._store.client, self.config)
        return self._broker

    @property
    def keys(self) -> KeyBuilder:
        return KeyBuilder(self.config.key_prefix)

    def show(self, data: Any, text: str) -> None:
        """Print ``data`` as JSON under --json, else ``text``."""
        print(json_text(data) if self.args.json else text)

    def close(self) -> None:
        if self._store is None:
            return
        client = self._store.client
        pool = getattr(client, "connection_pool", None)
        client.close()
        if pool is not None:
            pool.disconnect()


def run(args: argparse.Namespace) -> int:
    """Run the operator command ``args.operator``; failures become a CliError."""
    command = COMMANDS[args.operator]
    session = Session(args)
    try:
        return command(session)
    except BrokerError as exc:
        raise _broker_failure(exc, args) from exc
    except _UNREACHABLE as exc:
        raise _unreachable(args, str(exc)) from exc
    except redis.exceptions.RedisError as exc:
        raise CliError(f"Redis refused the command: {exc}", EXIT_REFUSED) from exc
    finally:
        session.close()


def _unreachable(args: argparse.Namespace, detail: str) -> CliError:
    return CliError(f"cannot reach Redis at {safe_url(args.redis_url)}: {detail}", EXIT_UNREACHABLE)


def _broker_failure(exc: BrokerError, args: argparse.Namespace) -> CliError:
    if exc.reason is Reason.STORE_UNAVAILABLE:
        return _unreachable(args, exc.message)
    if exc.reason in (Reason.LEASE_NOT_FOUND, Reason.BOOKING_NOT_FOUND):
        noun = "lease" if exc.reason is Reason.LEASE_NOT_FOUND else "booking"
        return CliError(f"no such {noun}: {getattr(args, 'id', '')}", EXIT_NOT_FOUND)
    details = "".join(f"\n  {v.field}: {v.description}" for v in exc.violations)
    return CliError(f"{exc}{details}", EXIT_REFUSED)


# --- time helpers ------------------------------------------------------------------------


def _instant_ns(value: datetime) -> int:
    """An aware datetime as nanoseconds since the epoch, exactly."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS_PER_S + delta.microseconds * 1_000


def _day_start_ns(day: date) -> int:
    return _instant_ns(datetime(day.year, day.month, day.day, tzinfo=timezone.utc))


def _utc_day(epoch_ms: int) -> date:
    return datetime.fromtimestamp(epoch_ms // 1000, tz=timezone.utc).date()


def _day_window(day: date | None) -> tuple[int | None, int | None]:
    """Slot starts ``[from, before)`` of a UTC day; no bounds without one."""
    if day is None:
        return None, None
    start = _day_start_ns(day)
    return start, start + DAY_NS


# --- inspect, slots, leases, bookings ----------------------------------------------------


def inspect(session: Session) -> int:
    public_id = session.args.id
    if public_id.startswith("l."):
        lease = session.broker.get_lease(public_id)
        session.show(lease_json(lease), lease_fields(lease))
    elif public_id.startswith("b."):
        booking = session.broker.get_booking(public_id)
        session.show(booking_json(booking), booking_fields(booking))
    else:
        raise CliError(f"no such lease/booking: {public_id}", EXIT_NOT_FOUND)
    return EXIT_OK


def slots(session: Session) -> int:
    broker, merchant = session.broker, session.args.merchant
    day = session.args.day or _utc_day(broker.now_ms())
    statuses = broker.day_status(merchant, _day_start_ns(day))
    if session.args.json:
        print(json_text([status_json(s) for s in statuses]))
    elif statuses:
        print(f"slots of merchant {merchant} on {day.isoformat()} (UTC)")
        print(render_table(STATUS_HEADERS, [status_row(s) for s in statuses]))
    else:
        print(f"no slots of merchant {merchant} on {day.isoformat()} (UTC)")
    return EXIT_OK


def leases(session: Session) -> int:
    args = session.args
    views = session.broker.list_leases(args.merchant, None, *_day_window(args.day))
    _print_list(session, "leases", [lease_json(v) for v in views], LEASE_HEADERS,
                [lease_row(v) for v in views])  # fmt: skip
    return EXIT_OK


def bookings(session: Session) -> int:
    args = session.args
    found = session.broker.list_bookings(args.merchant, None, *_day_window(args.day))
    _print_list(session, "bookings", [booking_json(b) for b in found], BOOKING_HEADERS,
                [booking_row(b) for b in found])  # fmt: skip
    return EXIT_OK


def _print_list(
    session: Session, noun: str, data: list[Any], headers: tuple[str, ...], rows: list[Any]
) -> None:
    args = session.args
    if args.json:
        print(json_text(data))
    elif rows:
        print(render_table(headers, rows))
    else:
        day = f" with slots on {args.day.isoformat()}" if args.day else ""
        print(f"no {noun} of merchant {args.merchant}{day}")


# --- release, extend ---------------------------------------------------------------------


def release(session: Session) -> int:
    broker, lease_id = session.broker, session.args.id
    before = broker.get_lease(lease_id)
    try:
        after = broker.release_lease(lease_id)
    except BrokerError as exc:
        if exc.reason is Reason.LEASE_CONSUMED:
            booking = broker.get_lease(lease_id).booking_id or before.booking_id
            raise CliError(
                f"LEASE_CONSUMED: lease {lease_id} has become booking {booking}; "
                "cancel the booking instead",
                EXIT_REFUSED,
            ) from exc
        raise
    if before.state != "held":
        print(f"leasebroker: lease {lease_id} had already ended ({before.state})", file=sys.stderr)
    session.show(lease_json(after), lease_fields(after))
    return EXIT_OK


def extend(session: Session) -> int:
    args, broker = session.args, session.broker
    before = broker.get_lease(args.id)
    after = broker.extend_lease(args.id, args.by, args.fence)
    if args.json:
        print(json_text(lease_json(after)))
        return EXIT_OK
    note = ""
    if after.expires_at_ms < before.expires_at_ms + args.by:
        note = " (capped: a lease lasts at most --max-hold and never past its slot's start)"
    print(
        f"lease {args.id} expires at {iso_ms(after.expires_at_ms)} "
        f"(was {iso_ms(before.expires_at_ms)}){note}"
    )
    return EXIT_OK


# --- events ------------------------------------------------------------------------------


def events(session: Session) -> int:
    args, broker = session.args, session.broker
    client, key = broker.client, broker.keys.events(args.merchant)
    try:
        history = _history(client, key, args.since, args.count)
    except redis.exceptions.ResponseError as exc:
        raise CliError(f"--since {args.since}: {exc}", EXIT_USAGE) from exc
    for entry_id, fields in history:
        _print_event(session, entry_id, fields)
    if not args.follow:
        return EXIT_OK
    if history:
        cursor = history[-1][0]
    elif args.since:
        cursor = args.since
    else:
        last = client.xrevrange(key, "+", "-", count=1)
        cursor = last[0][0] if last else "0-0"
    try:
        while True:
            reply = client.xread({key: cursor}, count=FOLLOW_BATCH, block=FOLLOW_BLOCK_MS)
            for _stream, entries in reply or ():
                for entry_id, fields in entries:
                    _print_event(session, entry_id, fields)
                    cursor = entry_id
    except KeyboardInterrupt:
        return EXIT_OK


def _history(client: Any, key: str, since: str | None, count: int | None) -> list[Any]:
    """Entries after ``since`` (the first ``count``), or else the last ``count``, or all."""
    if count == 0:
        return []
    if since is not None:
        return client.xrange(key, f"({since}", "+", count=count)
    if count is None:
        return client.xrange(key, "-", "+")
    return list(reversed(client.xrevrange(key, "+", "-", count=count)))


def _print_event(session: Session, entry_id: Any, fields: dict[Any, Any]) -> None:
    if session.args.json:
        print(json_line(event_json(entry_id, fields)), flush=True)
    else:
        print(event_line(entry_id, fields), flush=True)


# --- keys --------------------------------------------------------------------------------

SAMPLE_MERCHANT = "merchant-1"
_SAMPLE_START_NS = _instant_ns(datetime(2026, 12, 1, 10, tzinfo=timezone.utc))
_SAMPLE_TOKEN = "<token>"  # 22 URL-safe base64 characters in a real key
_SAMPLE_REFERENCE = "ref-1"

# (kind, Redis type, what it holds, TTL rule); examples are built by KeyBuilder below,
# ``{maxlen}`` is the configured stream cap.
KEY_KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("slot", "zset", "lease and booking ids holding one slot, scored by expiry ms "
     "(bookings: +inf)", "expires with its longest hold; none while it holds a booking"),
    ("lease", "hash", "one lease record: state, fence, slot, times, request data",
     "lease expiry + record retention; once released: release time + retention"),
    ("ref", "hash", "client_reference idempotency entry: lease id, fingerprint, expiry",
     "expires with its lease; deleted on release"),
    ("inventory", "hash", "slot -> capacity (absent: every slot at the default capacity)",
     "none; replaced by inventory load, changed by inventory set"),
    ("fences", "hash", "slot -> last fencing token handed out", "none; tokens only grow"),
    ("leases", "zset", "lease ids not yet swept, scored by expiry ms",
     "none; entries leave on release, booking or sweep"),
    ("events", "stream", "the merchant's state changes (lease.*, booking.*, inventory.*)",
     "none; capped at about {maxlen} entries"),
    ("booking", "hash", "one booking record: status, slot, lease, client information",
     "none; kept until an operator removes it"),
    ("bookings", "zset", "booking ids scored by slot start ms", "none"),
    ("merchants", "set", "merchant ids the expiry sweeper walks (no hash tag)", "none"),
)  # fmt: skip


def glob_escape(text: str) -> str:
    """``text`` as a SCAN MATCH pattern that matches only itself."""
    return "".join(f"\\{ch}" if ch in _GLOB_SPECIAL else ch for ch in text)


def _examples(keys: KeyBuilder, merchant: str) -> dict[str, str]:
    slot = SlotId(merchant, "haircut", _SAMPLE_START_NS, 30 * 60 * NS_PER_S)
    return {
        "slot": keys.slot(slot),
        "lease": keys.lease(merchant, _SAMPLE_TOKEN),
        "ref": keys.client_ref(merchant, _SAMPLE_REFERENCE),
        "inventory": keys.inventory(merchant),
        "fences": keys.fences(merchant),
        "leases": keys.lease_index(merchant),
        "events": keys.events(merchant),
        "booking": keys.booking(merchant, _SAMPLE_TOKEN),
        "bookings": keys.booking_index(merchant),
        "merchants": keys.merchants(),
    }


def key_layout(session: Session) -> int:
    args, keys = session.args, session.keys
    merchant = args.merchant if args.merchant is not None else SAMPLE_MERCHANT
    examples = _examples(keys, merchant)
    layout = [
        {
            "kind": kind,
            "type": kind_type,
            "example": examples[kind],
            "holds": holds,
            "ttl": ttl.format(maxlen=session.config.events_maxlen),
        }
        for kind, kind_type, holds, ttl in KEY_KINDS
    ]
    data: dict[str, Any] = {"prefix": keys.prefix, "merchant_id": merchant, "layout": layout}
    text = [
        f"key layout (prefix {keys.prefix}; examples for merchant {merchant}):",
        render_table(
            ("KIND", "TYPE", "EXAMPLE", "HOLDS", "TTL"),
            [[k["kind"], k["type"], k["example"], k["holds"], k["ttl"]] for k in layout],
        ),
    ]
    if args.merchant is not None:
        existing, registered = _existing_keys(session.broker, keys, merchant)
        data["existing"], data["registered"] = existing, registered
        text.append("")
        if existing:
            text.append(f"keys of merchant {merchant} now:")
            text.append(
                render_table(
                    ("KEY", "KIND", "TYPE", "TTL"),
                    [[k["key"], k["kind"], k["type"], _ttl_text(k["ttl_ms"])] for k in existing],
                )
            )
        else:
            text.append(f"no keys of merchant {merchant} now")
        text.append(
            f"in the merchant registry ({keys.merchants()}): {'yes' if registered else 'no'}"
        )
    session.show(data, "\n".join(text))
    return EXIT_OK


def _existing_keys(
    broker: LeaseBroker, keys: KeyBuilder, merchant: str
) -> tuple[list[dict[str, Any]], bool]:
    """The merchant's keys now (SCAN of its root), with type and TTL; and if it is registered."""
    client = broker.client
    root = keys.merchant_root(merchant)
    names = sorted({n.decode() for n in client.scan_iter(match=f"{glob_escape(root)}:*")})
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.type(name)
        pipe.pttl(name)
    replies = pipe.execute() if names else []
    found = []
    for index, name in enumerate(names):
        kind_type, ttl = replies[2 * index], replies[2 * index + 1]
        kind_type = kind_type.decode() if isinstance(kind_type, bytes) else str(kind_type)
        if kind_type == "none":  # gone since the SCAN
            continue
        kind = name[len(root) + 1 :].split(":", 1)[0]
        found.append(
            {"key": name, "kind": kind, "type": kind_type, "ttl_ms": ttl if ttl >= 0 else None}
        )
    registered = bool(client.sismember(keys.merchants(), merchant))
    return found, registered


def _ttl_text(ttl_ms: int | None) -> str:
    return "none" if ttl_ms is None else human_ms(ttl_ms)


# --- sweep -------------------------------------------------------------------------------


def sweep(session: Session) -> int:
    args, broker = session.args, session.broker
    if not args.loop:
        expired = sweep_once(broker)
        session.show({"expired": expired}, f"marked {expired} lease(s) expired")
        return EXIT_OK
    try:
        while True:
            try:
                expired = sweep_once(broker)
            except BrokerError as exc:
                print(f"leasebroker: sweep failed: {exc}", file=sys.stderr, flush=True)
            else:
                if expired:
                    _print_sweep(session, expired)
            time.sleep(args.interval / 1000)
    except KeyboardInterrupt:
        return EXIT_OK


def prune(session: Session) -> int:
    """Forget bookings and fencing counters of slots that started over --older-than ago."""
    args, broker = session.args, session.broker
    merchants = [args.merchant] if args.merchant else broker.merchants()
    total = PruneReport()
    for merchant in merchants:
        total += broker.prune(merchant, args.older_than)
    session.show(
        {"merchants": len(merchants), "bookings": total.bookings, "fences": total.fences},
        f"pruned {total.bookings} booking(s) and {total.fences} fencing counter(s) "
        f"of {len(merchants)} merchant(s)",
    )
    return EXIT_OK


def _print_sweep(session: Session, expired: int) -> None:
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    if session.args.json:
        print(json_line({"time": stamp, "expired": expired}), flush=True)
    else:
        print(f"{stamp} marked {expired} lease(s) expired", flush=True)


# --- inventory show / set ----------------------------------------------------------------


def inventory_show(session: Session) -> int:
    merchant = session.args.merchant
    items = session.broker.get_inventory(merchant)
    if session.args.json:
        print(json_text([inventory_json(item) for item in items]))
    elif items:
        print(render_table(INVENTORY_HEADERS, [inventory_row(item) for item in items]))
    else:
        print(
            f"merchant {merchant} has no inventory: every slot is offered with the "
            "default capacity (serve --default-capacity)"
        )
    return EXIT_OK


def inventory_set(session: Session) -> int:
    args, broker = session.args, session.broker
    slot = SlotId(
        merchant_id=args.merchant,
        service_id=args.service,
        start_ns=_instant_ns(args.start),
        duration_ns=args.duration * NS_PER_MS,
        staff_id=args.staff,
        room_id=args.room,
    )
    had_inventory = bool(broker.client.exists(broker.keys.inventory(args.merchant)))
    previous = broker.set_capacity(slot, args.capacity)
    if not had_inventory:
        print(
            f"leasebroker: warning: merchant {args.merchant} had no inventory, so every slot "
            "was offered with the default capacity; from now on only the slots in its "
            "inventory are offered (now just this one)",
            file=sys.stderr,
        )
    data = {"slot": slot_json(slot), "capacity": args.capacity, "previous_capacity": previous}
    text = render_fields(
        [
            *slot_fields(slot),
            ("capacity", args.capacity),
            ("was", "not listed" if previous is None else previous),
        ]
    )
    session.show(data, text)
    return EXIT_OK


COMMANDS: dict[str, Callable[[Session], int]] = {
    "inspect": inspect,
    "slots": slots,
    "leases": leases,
    "bookings": bookings,
    "release": release,
    "extend": extend,
    "events": events,
    "keys": key_layout,
    "sweep": sweep,
    "prune": prune,
    "inventory show": inventory_show,
    "inventory set": inventory_set,
}
