"""A feed's JSON read as a stream of parse events (ijson), one availability entry at a
time, so a large feed never holds its whole decoded document.

Two passes over the bytes: :func:`skeleton` decodes everything but the availability
entries (each stands as its number, 0, 1, ... in the order of the bytes), for the feed's
structure, metadata and problems; :func:`entries` then decodes the entries asked for,
one by one. Only bytes that json.loads reads the same way are streamed:
:func:`skeleton` raises for anything else (and for any ijson error), and the caller then
decodes with json.loads, for the same result and the same message.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import Any

import ijson
from ijson.common import ObjectBuilder

# Deeper than any feed, or keys longer than a feed's: left to json.loads (which says
# "nested too deeply" of the deepest). They also keep ijson's prefixes short.
MAX_DEPTH = 16
MAX_KEY = 64
_GROUP_KEYS = ("service_availability", "serviceAvailability")
_STARTS = ("start_map", "start_array")
_ENDS = ("end_map", "end_array")
# Roles of an open container: the entries are the items of an _ENTRIES array.
_MAP, _ARRAY, _ROOT, _GROUPS, _GROUP, _ENTRIES = range(6)
_MAPS = (_MAP, _ROOT, _GROUP)
# A surrogate escape: ijson turns a lone one into "?" where json.loads keeps it.
# Where every entry stands, as ijson.items names it.
_ENTRY_PREFIXES = ("item", *(f"{key}.item.availability.item" for key in _GROUP_KEYS))
_SURROGATE_RE = re.compile(rb"\\u[dD][89a-fA-F]")


class NotStreamable(ValueError):
    """ijson could read these bytes differently from json.loads: use json.loads."""


def skeleton(data: bytes) -> tuple[Any, str | None]:
    """The decoded feed with each availability entry replaced by its number, and the
    ijson prefix of the entries (None: there are none)."""
    # yajl takes vertical tab and form feed as whitespace; json.loads does not.
    if b"\x0b" in data or b"\x0c" in data or _SURROGATE_RE.search(data):
        raise NotStreamable("left to json.loads")
    builder = ObjectBuilder()
    roles: list[int] = []  # the role of each open container
    paths: list[str] = []  # the ijson prefix of each open container
    key = None  # the last key read: always the key of the value that follows it
    prefixes = set()  # of the entries
    number = depth = 0  # depth: within an entry
    for event, value in ijson.basic_parse(io.BytesIO(data), use_float=True):
        if event == "map_key" and len(value) > MAX_KEY:
            raise NotStreamable("a key longer than a feed's")
        if depth:
            if event in _STARTS:
                depth += 1
                if len(roles) + depth > MAX_DEPTH:
                    raise NotStreamable("nested deeper than a feed")
            elif event in _ENDS:
                depth -= 1
            continue
        if event in _ENDS:
            roles.pop()
            paths.pop()
            builder.event(event, value)
            continue
        if event == "map_key":
            key = value
            builder.event(event, value)
            continue
        parent = roles[-1] if roles else None
        at = "" if parent is None else _join(paths[-1], key if parent in _MAPS else "item")
        if parent == _ENTRIES:
            prefixes.add(at)
            builder.event("number", number)
            number += 1
            depth = event in _STARTS
            continue
        if at in _ENTRY_PREFIXES:
            raise NotStreamable("ijson.items would take this value for an entry")
        if event in _STARTS:
            roles.append(_role(parent, key, event == "start_map"))
            paths.append(at)
            if len(roles) > MAX_DEPTH:
                raise NotStreamable("nested deeper than a feed")
        builder.event(event, value)
    if len(prefixes) > 1:
        raise NotStreamable("entries under two prefixes")
    return builder.value, (prefixes.pop() if prefixes else None)


def entries(
    data: bytes, prefix: str | None, wanted: Iterable[tuple[str, int]]
) -> Iterator[tuple[str, Any]]:
    """Each wanted entry (where, number: in the order of the bytes) decoded in turn."""
    items = enumerate(ijson.items(io.BytesIO(data), prefix or "", use_float=True))
    for where, number in wanted:
        for n, value in items:
            if n == number:
                yield where, value
                break
        else:
            raise LookupError(f"no entry {number} after the ones before it")


def _role(parent: int | None, key: str | None, is_map: bool) -> int:
    """The role of a container opened in ``parent`` (under ``key`` if a map's)."""
    if parent is None:
        return _ROOT if is_map else _ENTRIES
    if parent == _ROOT and key in _GROUP_KEYS and not is_map:
        return _GROUPS
    if parent == _GROUPS and is_map:
        return _GROUP
    if parent == _GROUP and key == "availability" and not is_map:
        return _ENTRIES
    return _MAP if is_map else _ARRAY


def _join(prefix: str, name: str | None) -> str:
    """The prefix ijson gives the value under ``name`` (a key, or "item") of a container."""
    return f"{prefix}.{name}" if prefix else str(name)
