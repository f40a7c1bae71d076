"""The event loop the BookingService runs on (``serve --event-loop``): uvloop where it is
installed, asyncio's own loop elsewhere or when asked for. No gRPC here: the cli checks
the option without importing it."""

from __future__ import annotations

import asyncio
import importlib.util

# serve --event-loop: "auto" is uvloop where it is installed, asyncio's own loop elsewhere.
EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def uvloop_installed() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def resolved(kind: str = "auto") -> str:
    """The loop ``kind`` (one of :data:`EVENT_LOOPS`) stands for here: uvloop or asyncio."""
    if kind not in EVENT_LOOPS:
        raise ValueError(f"not an event loop: {kind!r} (one of {', '.join(EVENT_LOOPS)})")
    return "uvloop" if kind == "uvloop" or (kind == "auto" and uvloop_installed()) else "asyncio"


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind`` (:func:`resolved`). uvloop runs the same coroutines,
    callbacks and transports as asyncio's loop, in C: the BookingService's calls cost
    5 to 10 % less CPU on it (docs/architecture.md)."""
    if resolved(kind) == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
