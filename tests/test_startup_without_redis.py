"""serve starts while Redis does not answer, reports NOT_SERVING (liveness SERVING) and
answers UNAVAILABLE until it does, then gets ready by itself; a Redis that answers but
refuses (a cluster node without --redis-cluster) still stops the start with exit 2."""

from __future__ import annotations

import re
import signal

import grpc
import pytest
import redis_servers
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import ServeProcess, call_status, create_request, run_cli

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.wire.server import LIVENESS, SERVICE_NAME

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
BOUND_RE = re.compile(r"bound 127\.0\.0\.1:(?P<port>\d+)")
WAITING_RE = re.compile(r"cannot reach Redis at .*NOT_SERVING")

pytestmark = pytest.mark.usefixtures("no_leasebroker_env")


def health(port: int) -> dict[str, int]:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return {
            name: stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5).status
            for name in (LIVENESS, "", SERVICE_NAME)
        }


def create_lease_code(port: int) -> grpc.StatusCode:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.BookingServiceStub(channel)
        failed = call_status(stub.CreateLease, create_request(), timeout=5)
        return grpc.StatusCode.OK if failed is None else failed.code


def test_serve_waits_for_redis_then_gets_ready_by_itself(tmp_path):
    port = redis_servers.free_port_pair()  # nothing listens there yet
    url = f"redis://127.0.0.1:{port}/0"
    with ServeProcess(["--redis-url", url, "--key-prefix", "lbtest-startup"]) as serve:
        bound = int(serve.wait_for(BOUND_RE)["port"])
        serve.wait_for(WAITING_RE)
        assert health(bound) == {LIVENESS: SERVING, "": NOT_SERVING, SERVICE_NAME: NOT_SERVING}
        assert create_lease_code(bound) == grpc.StatusCode.UNAVAILABLE
        redis_servers.start(tmp_path, port=port)
        try:
            assert serve.wait_listening() == bound
            assert health(bound) == {LIVENESS: SERVING, "": SERVING, SERVICE_NAME: SERVING}
            assert create_lease_code(bound) == grpc.StatusCode.OK
            assert serve.stop() == 0
        finally:
            redis_servers.stop(port)
    assert not any("Traceback" in line for line in serve.lines)


def test_sigterm_while_waiting_for_redis_stops_cleanly():
    port = redis_servers.free_port_pair()
    with ServeProcess(["--redis-url", f"redis://127.0.0.1:{port}/0"]) as serve:
        serve.wait_for(WAITING_RE)
        assert serve.stop(signal.SIGTERM) == 0


def test_a_cluster_node_without_redis_cluster_is_a_usage_error(tmp_path):
    settings = ("--cluster-enabled", "yes", "--cluster-config-file", str(tmp_path / "nodes.conf"))
    with redis_servers.own_redis(tmp_path, *settings) as node:
        for command in (
            ["serve", "--port", "0", "--admin-port", "-1"],
            ["slots", "--merchant", "m"],
        ):
            result = run_cli([*command, "--redis-url", node.url])
            assert result.returncode == 2, result.stderr
            assert "is a node of a Redis Cluster: give --redis-cluster" in result.stderr
            assert "Traceback" not in result.stderr


def test_liveness_stays_serving_when_redis_goes_away(broker, monkeypatch):
    from leasebroker.core.errors import BrokerError, Reason
    from leasebroker.wire.server import start_server, store_health_check

    running = start_server(broker, "127.0.0.1", 0, workers=2)
    try:
        check = store_health_check(broker, [running])

        def store_down() -> int:
            raise BrokerError(Reason.STORE_UNAVAILABLE, "down")

        monkeypatch.setattr(broker, "now_ms", store_down)
        check()
        assert health(running.port) == {
            LIVENESS: SERVING,
            "": NOT_SERVING,
            SERVICE_NAME: NOT_SERVING,
        }
    finally:
        running.stop(grace=None)
