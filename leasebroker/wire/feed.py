"""Reading an Actions Center availability feed (JSON) into per-merchant inventories.

The feed is an outside format, like the gRPC wire: it is parsed here, and the core
receives plain :class:`~leasebroker.core.model.InventorySlot` values.

Accepted shapes: the AvailabilityFeed object
(``{"metadata": ..., "service_availability": [{"availability": [...]}, ...]}``),
or a bare JSON array of availability entries, read as proto3 JSON (see
:mod:`leasebroker.wire.feed_entries`). Each entry needs merchant_id, service_id,
start_sec, duration_sec and spots_open (capacity = spots still open);
availability_tag and resources (staff_id, room_id) are optional. The metadata
(processing_instruction, shard_number, total_shards, nonce, generation_timestamp)
comes back with the inventories (:class:`Feed`), so a loader can refuse an
incomplete set of shards or an older feed.

Refused, with every problem named by its entry (up to :data:`MAX_PROBLEMS`):
restricted (partial) feeds, recurrences and schedule exceptions, unknown keys, a slot
listed twice, and bad values.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leasebroker.api.feed import availability_feed_pb2 as feed_pb
from leasebroker.core.keys import SlotId
from leasebroker.core.model import InventorySlot
from leasebroker.wire import feed_stream
from leasebroker.wire.feed_entries import given, parse_entry, parse_message

_RESTRICT_FIELDS = (
    "start_timestamp_restrict",
    "end_timestamp_restrict",
    "merchant_id_restrict",
    "service_id_restrict",
    "duration_restrict_sec",
    "resources_restrict",
)
_GROUP_KEYS = ("service_availability", "serviceAvailability")
_ENTRY_KEYS = ("availability",)
# The most problems one FeedError lists (the rest are counted).
MAX_PROBLEMS = 20
# The largest feed accepted, from a file or through the admin API's LoadInventory.
MAX_FEED_BYTES = 64 * 1024 * 1024


class FeedError(ValueError):
    """The feed cannot be loaded; the message says where and why. Nothing was loaded."""


@dataclass(frozen=True)
class FeedMetadata:
    """What the feed says of itself (defaults: one shard, nothing else said)."""

    # PROCESS_AS_COMPLETE, PROCESS_AS_INCREMENTAL or PROCESS_UNKNOWN (Google's names).
    processing_instruction: str = "PROCESS_UNKNOWN"
    shard_number: int = 0
    total_shards: int = 1
    nonce: int | None = None
    # When the feed was made, seconds since the epoch.
    generation_timestamp: int | None = None


class Feed(dict[str, list[InventorySlot]]):
    """Each merchant's inventory in a feed (merchant id -> slots), and its metadata."""

    def __init__(self, metadata: FeedMetadata | None = None, *, whole: bool | None = None) -> None:
        super().__init__()
        self.metadata = metadata or FeedMetadata()
        # Every shard of the feed is here (one unsharded file, or all shards combined).
        self.whole = self.metadata.total_shards <= 1 if whole is None else whole


def read_feed(path: str | Path) -> Feed:
    """Parse a feed file into each merchant's complete inventory."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_FEED_BYTES + 1)
    except OSError as exc:
        raise FeedError(f"cannot read {path}: {exc.strerror}") from exc
    return decode_feed(data, str(path))


def decode_feed(data: bytes, where: str = "the feed") -> Feed:
    """Parse a feed's JSON bytes; FeedError (never another exception) for anything a
    hostile or broken feed can hold: too large, not UTF-8 or JSON, nested too deeply,
    numbers too long to convert."""
    if len(data) > MAX_FEED_BYTES:
        raise FeedError(f"{where} is larger than {MAX_FEED_BYTES // (1 << 20)} MiB")
    try:
        document, prefix = feed_stream.skeleton(data)
    # Any bytes the stream cannot take as json.loads would: decoded whole, as before.
    except Exception:
        return _decode_whole(data, where)
    try:
        problems = _Problems()
        metadata, entries = _structure(document, problems, consume=True)
        return _collect(metadata, feed_stream.entries(data, prefix, entries), problems)
    except RecursionError as exc:
        raise FeedError(f"{where} is nested too deeply to be a feed") from exc


def _decode_whole(data: bytes, where: str) -> Feed:
    """decode_feed through json.loads of the whole document."""
    try:
        document = json.loads(data.decode("utf-8"))
    except RecursionError as exc:
        raise FeedError(f"{where} is nested too deeply to be a feed") from exc
    # JSONDecodeError, UnicodeDecodeError and Python's limit on the digits of an
    # integer (ValueError) all mean the same: this is not a feed.
    except ValueError as exc:
        raise FeedError(f"{where} is not valid JSON: {exc}") from exc
    try:
        return parse_feed(document, consume=True)
    except RecursionError as exc:
        raise FeedError(f"{where} is nested too deeply to be a feed") from exc


def parse_feed(document: Any, *, consume: bool = False) -> Feed:
    """Parse a decoded feed document; FeedError naming every problem (up to a cap).
    ``consume``: drop each entry from the document once used (the caller's document is
    emptied; a large feed then never holds its JSON and its slots in full at once)."""
    problems = _Problems()
    metadata, entries = _structure(document, problems, consume)
    return _collect(metadata, entries, problems)


def _collect(
    metadata: FeedMetadata, entries: Iterable[tuple[str, Any]], problems: _Problems
) -> Feed:
    """The feed of these entries; FeedError naming every problem (with those found)."""
    feed = Feed(metadata)
    seen: set[SlotId] = set()
    for where, entry in entries:
        item, found = parse_entry(entry)
        for problem in found:
            problems.add(where, problem)
        if item is None:
            continue
        if item.slot in seen:
            problems.add(where, "slot listed twice")
            continue
        seen.add(item.slot)
        feed.setdefault(item.slot.merchant_id, []).append(item)
    problems.raise_if_any()
    if not feed:
        raise FeedError("the feed has no availability entries")
    return feed


def _each(lists: list[tuple[str, list[Any]]], consume: bool) -> Iterator[tuple[str, Any]]:
    """Each entry with where it stands (``where[i]``, or ``entry i`` for a bare array);
    with ``consume``, dropped from its list once used."""
    for where, items in lists:
        for i in range(len(items)):
            yield (f"entry {i}" if where == "entry" else f"{where}[{i}]"), items[i]
            if consume:
                items[i] = None


def _structure(
    document: Any, problems: _Problems, consume: bool
) -> tuple[FeedMetadata, Iterator[tuple[str, Any]]]:
    """The feed's metadata and its entries, each with where it stands."""
    if isinstance(document, list):
        return FeedMetadata(), _each([("entry", document)], consume)
    groups = given(document, "service_availability") if isinstance(document, dict) else None
    if groups is None:
        raise FeedError(
            "expected an AvailabilityFeed object with service_availability, "
            "or an array of availability entries"
        )
    if not isinstance(groups, list):
        raise FeedError("service_availability must be an array")
    outer = feed_pb.AvailabilityFeed()
    rest = {k: v for k, v in document.items() if k not in _GROUP_KEYS}
    problem = parse_message(rest, outer)
    if problem:
        problems.add("the feed", problem)
    entries: list[tuple[str, list[Any]]] = []
    for g, group in enumerate(groups):
        where = f"service_availability[{g}]"
        if not isinstance(group, dict):
            problems.add(where, "must be an object")
            continue
        restricted = [f for f in _RESTRICT_FIELDS if given(group, f) is not None]
        if restricted:
            problems.add(
                where,
                f"restricted (partial) feeds are not supported ({', '.join(restricted)}); "
                "send the merchant's complete feed",
            )
            continue
        availability = given(group, "availability")
        if availability is None:
            availability = []
        if not isinstance(availability, list):
            problems.add(f"{where}.availability", "must be an array")
            continue
        problem = parse_message(
            {k: v for k, v in group.items() if k not in _ENTRY_KEYS}, feed_pb.ServiceAvailability()
        )
        if problem:
            problems.add(where, problem)
        entries.append((f"{where}.availability", availability))
    return _metadata(outer), _each(entries, consume)


def _metadata(feed: feed_pb.AvailabilityFeed) -> FeedMetadata:
    if not feed.HasField("metadata"):
        return FeedMetadata()
    meta = feed.metadata
    return FeedMetadata(
        processing_instruction=feed_pb.ProcessingInstruction.Name(meta.processing_instruction),
        shard_number=meta.shard_number,
        total_shards=meta.total_shards or 1,
        nonce=meta.nonce or None,
        generation_timestamp=meta.generation_timestamp or None,
    )


class _Problems:
    """Every problem of a feed, up to MAX_PROBLEMS; raises them as one FeedError."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.more = 0

    def add(self, where: str, problem: str) -> None:
        if len(self.found) < MAX_PROBLEMS:
            self.found.append(f"{where}: {problem}")
        else:
            self.more += 1

    def raise_if_any(self) -> None:
        if not self.found:
            return
        if len(self.found) == 1:
            raise FeedError(self.found[0])
        more = f"\n  ... and {self.more} more" if self.more else ""
        count = len(self.found) + self.more
        raise FeedError(f"{count} problems:\n  " + "\n  ".join(self.found) + more)


def combine_shards(feeds: list[tuple[str, Feed]]) -> Feed:
    """One feed from the files of one sharded feed (or from a single file).

    Several files must be every shard (0 to total_shards - 1) of one feed: the same
    total_shards and nonce, each shard once. Anything else is a FeedError naming what
    is missing or does not belong, and nothing is loaded.
    """
    if len(feeds) == 1:
        return feeds[0][1]
    first = feeds[0][1].metadata
    total = first.total_shards
    problems = []
    if total == 1:
        raise FeedError(
            "several files must be the shards of one feed (metadata.total_shards > 1); "
            "give one unsharded feed at a time"
        )
    for name, feed in feeds:
        meta = feed.metadata
        if meta.total_shards != total or meta.nonce != first.nonce:
            problems.append(
                f"{name} is shard {meta.shard_number} of {meta.total_shards} (nonce "
                f"{meta.nonce}), not of the feed of {total} shards with nonce {first.nonce}"
            )
    numbers = sorted(feed.metadata.shard_number for _, feed in feeds)
    missing = sorted(set(range(total)) - set(numbers))
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    if missing:
        problems.append(f"shard {', '.join(map(str, missing))} of {total} is missing")
    if twice:
        problems.append(f"shard {', '.join(map(str, twice))} is given twice")
    if problems:
        raise FeedError("; ".join(problems))
    combined = Feed(dataclasses.replace(first, shard_number=0), whole=True)
    for name, feed in feeds:
        for merchant, items in feed.items():
            if merchant in combined:
                raise FeedError(f"{name}: merchant {merchant!r} is in two shards")
            combined[merchant] = items
    return combined


def check_complete(feed: Feed, where: str) -> None:
    """A feed loaded as complete (withdrawing every merchant it omits) must be whole,
    and must not say it is something else."""
    meta = feed.metadata
    if not feed.whole:
        raise FeedError(
            f"{where} is shard {meta.shard_number} of {meta.total_shards}: a complete feed "
            "withdraws every merchant it omits, so load all its shards at once "
            "(leasebroker inventory load --complete SHARD0.json SHARD1.json ...)"
        )
    if meta.processing_instruction == "PROCESS_AS_INCREMENTAL":
        raise FeedError(f"{where} says PROCESS_AS_INCREMENTAL, not PROCESS_AS_COMPLETE")
