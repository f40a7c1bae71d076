"""One availability entry of a feed to an :class:`InventorySlot`, or the problems with it.

Entries are parsed as the proto3 JSON they are (google.protobuf.json_format against
``leasebroker/api/feed/availability_feed.proto``): snake_case and lowerCamelCase keys
alike, int64 values as numbers or decimal strings, and an unknown key is an error
naming the entry. What json_format lets through is then checked as a slot.
"""

from __future__ import annotations

import re
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

from leasebroker.api.feed import availability_feed_pb2 as feed_pb
from leasebroker.core.keys import SlotId
from leasebroker.core.model import InventorySlot
from leasebroker.core.units import NS_PER_S
from leasebroker.core.validation import (
    MAX_CAPACITY,
    MAX_SLOT_DURATION_NS,
    MAX_SLOT_START_NS,
    MIN_SLOT_START_NS,
    check_id,
)

# Entries describe slots by spots; the compressed forms are not supported.
_UNSUPPORTED = {"recurrence": "recurrence", "schedule_exception": "schedule_exception",
                "scheduleException": "schedule_exception"}  # fmt: skip
# int64 fields json_format would also take as non-ASCII digits ("١٢٣"): ASCII only.
_INT_FIELDS = ("start_sec", "duration_sec", "spots_open", "spots_total")
_INT_TEXT_RE = re.compile(r"-?[0-9]+")
_UNKNOWN_KEY_RE = re.compile(r'has no field named "([^"]*)"')


def camel(name: str) -> str:
    """``start_sec`` -> ``startSec``: the other spelling proto3 JSON accepts."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def given(obj: dict[str, Any], name: str) -> Any:
    """The value under ``name`` in either spelling (None: absent or null)."""
    value = obj.get(name)
    return obj.get(camel(name)) if value is None else value


def parse_message(data: dict[str, Any], message: Message) -> str | None:
    """Fill ``message`` from ``data`` as proto3 JSON; the problem in a few words, or None."""
    try:
        json_format.ParseDict(data, message)
    except json_format.ParseError as exc:
        unknown = _UNKNOWN_KEY_RE.search(str(exc))
        if unknown:
            # '... no field named "anna" at "Availability.resources"': name it by its path.
            at = re.search(r'at "[A-Za-z]+((?:\.[\w\[\]]+)*)"', str(exc))
            path = at[1].lstrip(".") + "." if at and at[1] else ""
            return f"unknown key {path + unknown[1]!r}"
        first = str(exc).splitlines()[0]
        return re.sub(r" at [\w.\[\]\"]+\.?$", "", first).rstrip(".")
    return None


def parse_entry(entry: Any) -> tuple[InventorySlot | None, list[str]]:
    """The entry's slot and capacity, or None and every problem found in it."""
    if not isinstance(entry, dict):
        return None, ["must be an object"]
    unsupported = sorted({label for key, label in _UNSUPPORTED.items() if key in entry})
    if unsupported:
        return None, [f"{', '.join(unsupported)} is not supported; list each slot with spots_open"]
    # Stricter than json_format: a whole JSON number, or ASCII digits in a string (it
    # would take 2.0, "1e3" and non-ASCII digits too).
    problems = []
    for name in _INT_FIELDS:
        value = given(entry, name)
        text = isinstance(value, str) and _INT_TEXT_RE.fullmatch(value)
        if (
            value is not None
            and not text
            and (isinstance(value, bool) or not isinstance(value, int))
        ):
            problems.append(f"{name} must be an integer")
    resources = given(entry, "resources")
    if resources is not None and not isinstance(resources, dict):
        problems.append("resources must be an object")
    if problems:
        return None, problems
    parsed = feed_pb.Availability()
    problem = parse_message(entry, parsed)
    if problem:
        return None, [problem]
    problems = [f"{name} is required" for name in _INT_FIELDS[:3] if given(entry, name) is None]
    ids = {
        "merchant_id": (parsed.merchant_id, True),
        "service_id": (parsed.service_id, True),
        "resources.staff_id": (parsed.resources.staff_id, False),
        "resources.room_id": (parsed.resources.room_id, False),
    }
    for name, (value, required) in ids.items():
        violation = check_id(value, name, required=required)
        if violation:
            problems.append(f"{violation.field} {violation.description}")
    if not MIN_SLOT_START_NS <= parsed.start_sec * NS_PER_S <= MAX_SLOT_START_NS:
        problems.append("start_sec is out of range")
    if not 0 < parsed.duration_sec * NS_PER_S <= MAX_SLOT_DURATION_NS:
        problems.append("duration_sec must be positive and at most 31 days")
    if parsed.spots_open < 0:
        problems.append("spots_open must not be negative")
    elif parsed.spots_open > MAX_CAPACITY:
        problems.append(f"spots_open must be at most {MAX_CAPACITY}")
    if problems:
        return None, problems
    slot = SlotId(
        merchant_id=parsed.merchant_id,
        service_id=parsed.service_id,
        start_ns=parsed.start_sec * NS_PER_S,
        duration_ns=parsed.duration_sec * NS_PER_S,
        staff_id=parsed.resources.staff_id,
        room_id=parsed.resources.room_id,
    )
    return InventorySlot(slot=slot, capacity=parsed.spots_open), []
