"""One availability entry of a feed to an :class:`InventorySlot`, or the problems with it.

Entries are parsed as the proto3 JSON they are (google.protobuf.json_format against
``leasebroker/api/feed/availability_feed.proto``): snake_case and lowerCamelCase keys
alike, int64 values as numbers or decimal strings, and an unknown key is an error
naming the entry. What json_format lets through is then checked as a slot.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

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
    values = _plain_values(entry)
    if values is None:  # anything unusual: json_format says exactly what is wrong
        parsed = feed_pb.Availability()
        problem = parse_message(entry, parsed)
        if problem:
            return None, [problem]
        values = _Values(
            parsed.merchant_id, parsed.service_id, parsed.start_sec, parsed.duration_sec,
            parsed.spots_open, parsed.resources.staff_id, parsed.resources.room_id,
        )  # fmt: skip
    return _inventory_slot(entry, values)


class _Values(NamedTuple):
    """What an entry says that the broker keeps."""

    merchant_id: str
    service_id: str
    start_sec: int
    duration_sec: int
    spots_open: int
    staff_id: str
    room_id: str


# The fields of a plain entry (and their lowerCamelCase twins): read directly, which is
# what json_format would read, at a fraction of its cost for a large feed.
_PLAIN_TEXT = {"merchant_id", "service_id", "availability_tag", "require_credit_card",
               "duration_requirement", "confirmation_mode", "linkout_required_reason"}  # fmt: skip
_PLAIN_INT = set(_INT_FIELDS)
_PLAIN_RESOURCES_TEXT = {"staff_id", "staff_name", "room_id", "room_name"}
_INT64 = (-(2**63), 2**63 - 1)
_CAMEL = {camel(n): n for n in (*_PLAIN_TEXT, *_PLAIN_INT, *_PLAIN_RESOURCES_TEXT, "party_size")}


def _plain_values(entry: dict[str, Any]) -> _Values | None:
    """The values of an entry made only of text, whole numbers and plain resources, as
    json_format would read them; None for anything else (which goes through it)."""
    seen: dict[str, Any] = {}
    for key, value in entry.items():
        name = _CAMEL.get(key, key)
        if name in seen or value is None:
            return None
        if name in _PLAIN_TEXT:
            if not isinstance(value, str):
                return None
        elif name in _PLAIN_INT:
            value = int(value)  # a whole number or ASCII digits: checked by the caller
            if not _INT64[0] <= value <= _INT64[1]:
                return None
        elif name == "resources":
            if not _plain_resources(value):
                return None
        else:
            return None
        seen[name] = value
    resources = seen.get("resources", {})
    return _Values(
        seen.get("merchant_id", ""), seen.get("service_id", ""), seen.get("start_sec", 0),
        seen.get("duration_sec", 0), seen.get("spots_open", 0),
        given(resources, "staff_id") or "", given(resources, "room_id") or "",
    )  # fmt: skip


def _plain_resources(resources: dict[str, Any]) -> bool:
    names = set()
    for key, value in resources.items():
        name = _CAMEL.get(key, key)
        if name in names:
            return False
        names.add(name)
        if name in _PLAIN_RESOURCES_TEXT:
            if not isinstance(value, str):
                return False
        elif (
            name != "party_size"
            or isinstance(value, bool)
            or not isinstance(value, int)
            or not -(2**31) <= value < 2**31
        ):
            return False
    return True


def _inventory_slot(
    entry: dict[str, Any], values: _Values
) -> tuple[InventorySlot | None, list[str]]:
    """Check the values as a slot and its capacity."""
    problems = [f"{name} is required" for name in _INT_FIELDS[:3] if given(entry, name) is None]
    ids = {
        "merchant_id": (values.merchant_id, True),
        "service_id": (values.service_id, True),
        "resources.staff_id": (values.staff_id, False),
        "resources.room_id": (values.room_id, False),
    }
    for name, (value, required) in ids.items():
        violation = check_id(value, name, required=required)
        if violation:
            problems.append(f"{violation.field} {violation.description}")
    if not MIN_SLOT_START_NS <= values.start_sec * NS_PER_S <= MAX_SLOT_START_NS:
        problems.append("start_sec is out of range")
    if not 0 < values.duration_sec * NS_PER_S <= MAX_SLOT_DURATION_NS:
        problems.append("duration_sec must be positive and at most 31 days")
    if values.spots_open < 0:
        problems.append("spots_open must not be negative")
    elif values.spots_open > MAX_CAPACITY:
        problems.append(f"spots_open must be at most {MAX_CAPACITY}")
    if problems:
        return None, problems
    slot = SlotId(
        merchant_id=values.merchant_id,
        service_id=values.service_id,
        start_ns=values.start_sec * NS_PER_S,
        duration_ns=values.duration_sec * NS_PER_S,
        staff_id=values.staff_id,
        room_id=values.room_id,
    )
    return InventorySlot(slot=slot, capacity=values.spots_open), []
