"""grpc.health.v1 follows the store: NOT_SERVING while Redis does not answer, SERVING after."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from leasebroker.core.errors import BrokerError, Reason
from leasebroker.wire.server import SERVICE_NAME, start_server, store_health_check

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def running(broker):
    server = start_server(broker, "127.0.0.1", 0, workers=2)
    yield server
    server.stop(grace=None)


def statuses(port: int) -> list[int]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return [
            stub.Check(health_pb2.HealthCheckRequest(service=name)).status
            for name in ("", SERVICE_NAME)
        ]


def test_health_follows_the_store(broker, running, monkeypatch):
    check = store_health_check(broker, [running])
    check()
    assert statuses(running.port) == [SERVING, SERVING]

    def store_down() -> int:
        raise BrokerError(Reason.STORE_UNAVAILABLE, "down")

    monkeypatch.setattr(broker, "now_ms", store_down)
    check()
    assert statuses(running.port) == [NOT_SERVING, NOT_SERVING]

    monkeypatch.undo()
    check()
    assert statuses(running.port) == [SERVING, SERVING]
