"""Loads the Lua scripts shipped in ``leasebroker/lua`` and registers them on a client.

Each operation is one file ``lua/<name>-<key count>.lua``. The key count in the
name is checked on every call, so a caller passing the wrong number of keys
fails loudly in Python instead of silently reading ``nil`` in Lua.

Registration uses redis-py's ``register_script``: its ``Script`` object calls
EVALSHA and, on NOSCRIPT (after a restart, a failover or ``SCRIPT FLUSH``),
loads the script and retries once. No SHA cache of our own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from leasebroker.core.model import BookingStatus, CapacitySource, LeaseState
from leasebroker.core.outcomes import Outcome, lua_literal
from leasebroker.core.settings import EVENTS_OFF

_NAME_RE = re.compile(r"(?P<name>[a-z_]+)-(?P<keys>\d+)\.lua")

# The Python enums the scripts name as ``TABLE.MEMBER`` (``OUTCOME.SLOT_FULL``,
# ``LEASE_STATE.HELD``), and ``EVENTS_OFF``: each name is replaced by its value when a
# script is loaded, so Python and Lua share one definition. Tables of them in front of
# each script were built again on every call: create_lease cost ~1 us more that way,
# ~4 % (docs/architecture.md, "Why the enum names become values").
_ENUMS: dict[str, Any] = {
    "OUTCOME": Outcome,
    "LEASE_STATE": LeaseState,
    "BOOKING_STATUS": BookingStatus,
    "CAPACITY_SOURCE": CapacitySource,
}
_CONSTANT_RE = re.compile(r"\b(?:(?P<table>[A-Z_]+)\.(?P<member>[A-Z_]+)|EVENTS_OFF)\b")


@dataclass(frozen=True)
class ScriptSource:
    """One script's text (the shared helpers in front, the enum names replaced by their
    values) and its key count."""

    name: str
    key_count: int
    text: str


def inline_constants(text: str, where: str) -> str:
    """``text`` with each ``TABLE.MEMBER`` of :data:`_ENUMS`, and ``EVENTS_OFF``, replaced
    by its Lua literal (comments too: they are not run). ValueError for a member the enum
    does not have, which would otherwise read as ``nil`` when the script runs."""

    def literal(match: re.Match[str]) -> str:
        table = match["table"]
        if table is None:
            return str(EVENTS_OFF)
        enum = _ENUMS.get(table)
        if enum is None:
            return match[0]  # not one of ours (e.g. a word in a comment)
        member = enum.__members__.get(match["member"])
        if member is None:
            raise ValueError(f"{where}: {match[0]} names no member of {enum.__name__}")
        return lua_literal(member.value)

    return _CONSTANT_RE.sub(literal, text)


def _one_line(library: str) -> str:
    """The shared helpers as one line: whole-line comments dropped, lines joined."""
    lines = (line.strip() for line in library.splitlines())
    return " ".join(line for line in lines if line and not line.startswith("--"))


@cache
def load_sources() -> dict[str, ScriptSource]:
    """Every shipped script by operation name.

    The helpers of ``_lib.lua`` go on the script's first line, in front of its header
    comment, so line numbers in Redis error messages match the file; in both, the
    enum names become their values (:func:`inline_constants`).
    """
    folder = resources.files("leasebroker") / "lua"
    preamble = inline_constants(_one_line(folder.joinpath("_lib.lua").read_text()), "_lib.lua")
    sources: dict[str, ScriptSource] = {}
    for entry in folder.iterdir():
        match = _NAME_RE.fullmatch(entry.name)
        if not match:
            continue
        body = entry.read_text(encoding="utf-8")
        if not body.startswith("--"):
            raise ValueError(f"{entry.name} must start with its header comment")
        name = match["name"]
        if name in sources:
            # e.g. a stale create_lease-4.lua beside create_lease-7.lua in an old build
            raise ValueError(f"two scripts for operation {name!r} in {folder}")
        sources[name] = ScriptSource(
            name=name,
            key_count=int(match["keys"]),
            text=f"{preamble} {inline_constants(body, entry.name)}",
        )
    return sources


class BoundScript:
    """A registered script: call it with exactly its number of keys."""

    def __init__(self, client: Any, source: ScriptSource) -> None:
        self.name = source.name
        self.key_count = source.key_count
        self._script = client.register_script(source.text)

    def __call__(self, keys: Sequence[str], args: Sequence[str | bytes | int]) -> Any:
        self._check(keys)
        return self._script(keys=list(keys), args=list(args))

    def command(self, keys: Sequence[str], args: Sequence[str | bytes | int]) -> list[Any]:
        """The ``EVALSHA`` command of one call, to send in a pipeline (core/pipelining.py)."""
        self._check(keys)
        return ["EVALSHA", self._script.sha, len(keys), *keys, *args]

    @property
    def text(self) -> str:
        """The script as loaded (``SCRIPT LOAD`` after ``NOSCRIPT``)."""
        return self._script.script

    def _check(self, keys: Sequence[str]) -> None:
        if len(keys) != self.key_count:
            raise ValueError(f"{self.name} takes {self.key_count} keys, got {len(keys)}")


class Scripts:
    """All scripts registered once on one Redis client (sync, single node or cluster)."""

    def __init__(self, client: Any) -> None:
        self._bound = {name: BoundScript(client, src) for name, src in load_sources().items()}

    def __getitem__(self, name: str) -> BoundScript:
        return self._bound[name]
