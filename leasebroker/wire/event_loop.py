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


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A new event loop of ``kind`` (one of :data:`EVENT_LOOPS`). uvloop runs the same
    coroutines, callbacks and transports as asyncio's loop, in C: the BookingService's
    calls cost about a tenth less CPU on it (docs/architecture.md)."""
    if kind not in EVENT_LOOPS:
        raise ValueError(f"not an event loop: {kind!r} (one of {', '.join(EVENT_LOOPS)})")
    if kind == "uvloop" or (kind == "auto" and uvloop_installed()):
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()
