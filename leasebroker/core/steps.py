"""An operation as steps: the Redis work it needs, apart from who does it.

An operation that reads a record and then runs a script (CreateBooking, cancel,
reschedule) is written once, as a generator that yields each step and is sent each
step's result: :class:`ReadRecord` (the record HASH as a dict of text field names, empty
when the key does not exist), :class:`RunScript` (the script's reply, refusals that no
caller handles already raised) or :class:`Bookkeeping` (the reply, or the BrokerError the
write failed with, sent in rather than raised: the sweeper's registry and due index
after a grant). ``BrokerCore.drive`` runs the steps in the caller's
thread; ``AsyncBroker`` (core/async_broker.py) awaits them on an event loop. So the
threaded library and the asyncio front end make the same decisions, from the same code.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class ReadRecord:
    """Read one record HASH (``HGETALL``)."""

    key: str


@dataclass(frozen=True)
class RunScript:
    """Run one registered script."""

    name: str
    keys: Sequence[str]
    args: Sequence[str | bytes | int]


@dataclass(frozen=True)
class Bookkeeping:
    """A best-effort write beside the operation (one command): the driver sends back its
    reply, or the BrokerError it failed with instead of raising it."""

    command: tuple[Any, ...]


Step = ReadRecord | RunScript | Bookkeeping
Steps = Generator[Step, Any, T]
