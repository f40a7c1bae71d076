"""Reading an Actions Center availability feed (JSON) into per-merchant inventories.

The feed is an outside format, like the gRPC wire: it is parsed here, and the core
receives plain :class:`~leasebroker.core.model.InventorySlot` values.

Accepted shapes: the AvailabilityFeed object
(``{"metadata": ..., "service_availability": [{"availability": [...]}, ...]}``),
or a bare JSON array of availability entries. Each entry needs merchant_id,
service_id, start_sec, duration_sec and spots_open (capacity = spots still
open); availability_tag and resources (staff_id, room_id) are optional.

Refused with a message naming the entry: restricted (partial) feeds,
recurrences and schedule exceptions, a slot listed twice, and bad values.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from leasebroker.core.keys import SlotId
from leasebroker.core.model import InventorySlot
from leasebroker.core.units import NS_PER_S
from leasebroker.core.validation import (
    MAX_SLOT_DURATION_NS,
    MAX_SLOT_START_NS,
    MIN_SLOT_START_NS,
    check_id,
)

_RESTRICT_FIELDS = (
    "start_timestamp_restrict",
    "end_timestamp_restrict",
    "merchant_id_restrict",
    "service_id_restrict",
    "duration_restrict_sec",
    "resources_restrict",
)
_UNSUPPORTED = ("recurrence", "schedule_exception")
_INT_TEXT_RE = re.compile(r"-?[0-9]+")


# The largest feed accepted, from a file or through the admin API's LoadInventory.
MAX_FEED_BYTES = 64 * 1024 * 1024


class FeedError(ValueError):
    """The feed cannot be loaded; the message says where and why. Nothing was loaded."""


def read_feed(path: str | Path) -> dict[str, list[InventorySlot]]:
    """Parse a feed file into each merchant's complete inventory."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FEED_BYTES + 1)
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror}") from exc
    return decode_feed(data, str(path))


def decode_feed(data: bytes, where: str = "the feed") -> dict[str, list[InventorySlot]]:
    """Parse a feed's JSON bytes; FeedError (never another exception) for anything a
    hostile or broken feed can hold: too large, not UTF-8 or JSON, nested too deeply,
    numbers too long to convert."""
    if len(data) > MAX_FEED_BYTES:
        raise FeedError(f"{where} is larger than {MAX_FEED_BYTES // (1 << 20)} MiB")
    try:
        document = json.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise FeedError(f"{where} is nested too deeply to be a feed") from exc
    # JSONDecodeError, UnicodeDecodeError and Python's limit on the digits of an
    # integer (ValueError) all mean the same: this is not a feed.
    except ValueError as exc:
        raise FeedError(f"{where} is not valid JSON: {exc}") from exc
    try:
        return parse_feed(document)
    except RecursionError as exc:
        raise FeedError(f"{where} is nested too deeply to be a feed") from exc


def parse_feed(document: Any) -> dict[str, list[InventorySlot]]:
    """Parse a decoded feed document; raises FeedError naming the first bad entry."""
    inventories: dict[str, list[InventorySlot]] = {}
    seen: set[SlotId] = set()
    for where, entry in _entries(document):
        item = _parse_entry(entry, where)
        if item.slot in seen:
            raise FeedError(f"{where}: slot listed twice")
        seen.add(item.slot)
        inventories.setdefault(item.slot.merchant_id, []).append(item)
    if not inventories:
        raise FeedError("the feed has no availability entries")
    return inventories


def _entries(document: Any) -> list[tuple[str, Any]]:
    if isinstance(document, list):
        return [(f"entry {i}", e) for i, e in enumerate(document)]
    if not isinstance(document, dict) or "service_availability" not in document:
        raise FeedError(
            "expected an AvailabilityFeed object with service_availability, "
            "or an array of availability entries"
        )
    groups = document["service_availability"]
    if not isinstance(groups, list):
        raise FeedError("service_availability must be an array")
    entries = []
    for g, group in enumerate(groups):
        where = f"service_availability[{g}]"
        if not isinstance(group, dict):
            raise FeedError(f"{where} must be an object")
        restricted = [f for f in _RESTRICT_FIELDS if f in group]
        if restricted:
            raise FeedError(
                f"{where}: restricted (partial) feeds are not supported "
                f"({', '.join(restricted)}); send the merchant's complete feed"
            )
        availability = group.get("availability", [])
        if not isinstance(availability, list):
            raise FeedError(f"{where}.availability must be an array")
        entries += [(f"{where}.availability[{i}]", e) for i, e in enumerate(availability)]
    return entries


def _parse_entry(entry: Any, where: str) -> InventorySlot:
    if not isinstance(entry, dict):
        raise FeedError(f"{where} must be an object")
    unsupported = [f for f in _UNSUPPORTED if f in entry]
    if unsupported:
        raise FeedError(
            f"{where}: {', '.join(unsupported)} is not supported; list each slot with spots_open"
        )
    resources = entry.get("resources")
    if resources is None:
        resources = {}
    elif not isinstance(resources, dict):
        raise FeedError(f"{where}.resources must be an object")
    ids = {
        "merchant_id": (_text(entry, "merchant_id", where), True),
        "service_id": (_text(entry, "service_id", where), True),
        "resources.staff_id": (_text(resources, "staff_id", where), False),
        "resources.room_id": (_text(resources, "room_id", where), False),
    }
    for name, (value, required) in ids.items():
        problem = check_id(value, name, required=required)
        if problem:
            raise FeedError(f"{where}: {problem.field} {problem.description}")
    start = _integer(entry, "start_sec", where)
    duration = _integer(entry, "duration_sec", where)
    spots = _integer(entry, "spots_open", where)
    if not MIN_SLOT_START_NS <= start * NS_PER_S <= MAX_SLOT_START_NS:
        raise FeedError(f"{where}: start_sec is out of range")
    if not 0 < duration * NS_PER_S <= MAX_SLOT_DURATION_NS:
        raise FeedError(f"{where}: duration_sec must be positive and at most 31 days")
    if spots < 0:
        raise FeedError(f"{where}: spots_open must not be negative")
    slot = SlotId(
        merchant_id=ids["merchant_id"][0],
        service_id=ids["service_id"][0],
        start_ns=start * NS_PER_S,
        duration_ns=duration * NS_PER_S,
        staff_id=ids["resources.staff_id"][0],
        room_id=ids["resources.room_id"][0],
    )
    return InventorySlot(slot=slot, capacity=spots)


def _text(obj: dict[str, Any], name: str, where: str) -> str:
    value = obj.get(name, "")
    if not isinstance(value, str):
        raise FeedError(f"{where}: {name} must be a string")
    return value


def _integer(entry: dict[str, Any], name: str, where: str) -> int:
    """JSON feeds may carry int64 values as numbers or, proto-JSON style, as strings."""
    if name not in entry:
        raise FeedError(f"{where}: {name} is required")
    value = entry[name]
    if isinstance(value, str) and _INT_TEXT_RE.fullmatch(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise FeedError(f"{where}: {name} must be an integer")
    return value
