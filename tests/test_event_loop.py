"""The BookingService's event loop (``serve --event-loop``): uvloop where installed, or
asyncio's own; both serve the same calls, and a loop that cannot be had is a usage
error."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import grpc
import pytest
import uvloop
from support import ServeProcess, create_request, run_main

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.cli import options
from leasebroker.wire import event_loop
from leasebroker.wire.event_loop import new_event_loop, resolved
from leasebroker.wire.server import start_server

pytestmark = pytest.mark.usefixtures("no_leasebroker_env")


@pytest.mark.parametrize(
    ("kind", "loop_class"),
    [("auto", uvloop.Loop), ("uvloop", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)],
)
def test_each_kind_makes_its_loop(kind: str, loop_class: type) -> None:
    loop = new_event_loop(kind)
    try:
        assert isinstance(loop, loop_class)
        assert kind == "asyncio" or not type(loop).__module__.startswith("asyncio")
        assert loop.run_until_complete(asyncio.sleep(0, result="ran")) == "ran"
    finally:
        loop.close()


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="not an event loop: 'trio'"):
        new_event_loop("trio")


@pytest.mark.parametrize("kind", ["uvloop", "asyncio"])
def test_the_booking_service_grants_leases_on_either_loop(broker: Any, kind: str) -> None:
    running = start_server(broker, "127.0.0.1", 0, workers=4, event_loop=kind)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            reply = pb_grpc.BookingServiceStub(channel).CreateLease(create_request(), timeout=10)
        assert reply.lease.lease_id.startswith("l.")
        assert broker.get_lease(reply.lease.lease_id).state == "held"
    finally:
        running.stop(grace=None)


def test_serve_on_asyncio_s_own_loop() -> None:
    with ServeProcess(["--event-loop", "asyncio"]) as serve:
        serve.wait_listening()
        with grpc.insecure_channel(serve.target) as channel:
            reply = pb_grpc.BookingServiceStub(channel).CreateLease(create_request(), timeout=30)
        assert reply.lease.lease_id.startswith("l.")
        assert serve.stop(signal.SIGTERM) == 0


def test_uvloop_asked_for_where_it_is_not_installed_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(options, "uvloop_installed", lambda: False)
    assert run_main(["serve", "--port", "0", "--admin-port", "-1", "--event-loop", "uvloop"]) == 2
    assert "uvloop is not installed" in capsys.readouterr().err
    monkeypatch.setenv("LEASEBROKER_EVENT_LOOP", "UVLOOP")
    assert run_main(["serve", "--port", "0", "--admin-port", "-1"]) == 2


def test_auto_stands_for_uvloop_where_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [resolved(kind) for kind in ("auto", "uvloop", "asyncio")] == [
        "uvloop",
        "uvloop",
        "asyncio",
    ]
    monkeypatch.setattr(event_loop, "uvloop_installed", lambda: False)
    assert resolved("auto") == "asyncio"
    loop = new_event_loop("auto")
    try:
        assert not type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()
