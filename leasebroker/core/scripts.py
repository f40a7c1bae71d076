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
from leasebroker.core.outcomes import lua_table
from leasebroker.core.settings import EVENTS_OFF

_NAME_RE = re.compile(r"(?P<name>[a-z_]+)-(?P<keys>\d+)\.lua")


@dataclass(frozen=True)
class ScriptSource:
    """One script's text (with the outcome table in front) and its key count."""

    name: str
    key_count: int
    text: str


def _one_line(library: str) -> str:
    """The shared helpers as one line: whole-line comments dropped, lines joined."""
    lines = (line.strip() for line in library.splitlines())
    return " ".join(line for line in lines if line and not line.startswith("--"))


@cache
def load_sources() -> dict[str, ScriptSource]:
    """Every shipped script by operation name.

    The ``OUTCOME``, ``LEASE_STATE``, ``BOOKING_STATUS`` and ``CAPACITY_SOURCE``
    tables (from the Python enums), the event retention that means off
    (``EVENTS_OFF``) and the helpers of ``_lib.lua`` go on the script's first
    line, in front of its header comment, so line numbers in Redis error messages
    match the file.
    """
    folder = resources.files("leasebroker") / "lua"
    tables = " ".join(
        [
            f"local OUTCOME = {lua_table()}",
            f"local LEASE_STATE = {lua_table(LeaseState)}",
            f"local BOOKING_STATUS = {lua_table(BookingStatus)}",
            f"local CAPACITY_SOURCE = {lua_table(CapacitySource)}",
            f"local EVENTS_OFF = {EVENTS_OFF}",
        ]
    )
    preamble = f"{tables} {_one_line(folder.joinpath('_lib.lua').read_text())}"
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
            text=f"{preamble} {body}",
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
