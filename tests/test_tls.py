"""TLS and mutual TLS on the BookingService port, with certificates made by openssl."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support import HOUR_NS, ServeProcess, create_request, run_cli

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.wire.server import start_server
from leasebroker.wire.tls import ServerTls


def _lease() -> pb.CreateLeaseRequest:
    start_ns = time.time_ns() + HOUR_NS
    return create_request(merchant_id="m", service_id="s", client_reference="r", start_ns=start_ns)


def _call(port: int, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    target = f"127.0.0.1:{port}"
    with (
        grpc.secure_channel(target, credentials) if credentials else grpc.insecure_channel(target)
    ) as channel:
        try:
            pb_grpc.BookingServiceStub(channel).CreateLease(_lease(), timeout=5)
        except grpc.RpcError as error:
            return error.code()
    return grpc.StatusCode.OK


def _client(certs: Path, *, with_certificate: bool) -> grpc.ChannelCredentials:
    pair = {}
    if with_certificate:
        pair = {
            "private_key": (certs / "client.key").read_bytes(),
            "certificate_chain": (certs / "client.pem").read_bytes(),
        }
    return grpc.ssl_channel_credentials((certs / "ca.pem").read_bytes(), **pair)


@pytest.fixture
def tls_server(broker, certs: Path, request: pytest.FixtureRequest) -> Iterator[int]:
    client_ca = str(certs / "ca.pem") if request.param == "mutual" else None
    tls = ServerTls(str(certs / "server.pem"), str(certs / "server.key"), client_ca)
    running = start_server(broker, "127.0.0.1", 0, workers=2, tls=tls)
    yield running.port
    running.stop(grace=None)


@pytest.mark.parametrize("tls_server", ["server-only"], indirect=True)
def test_tls_serves_clients_that_trust_the_ca(tls_server: int, certs: Path) -> None:
    assert _call(tls_server, _client(certs, with_certificate=False)) is grpc.StatusCode.OK
    assert _call(tls_server, None) is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("tls_server", ["mutual"], indirect=True)
def test_mutual_tls_requires_a_client_certificate(tls_server: int, certs: Path) -> None:
    assert _call(tls_server, _client(certs, with_certificate=False)) is (
        grpc.StatusCode.UNAVAILABLE
    )
    assert _call(tls_server, _client(certs, with_certificate=True)) is grpc.StatusCode.OK


def test_serve_and_lease_create_over_mutual_tls(certs: Path) -> None:
    tls = ["--tls-cert", str(certs / "server.pem"), "--tls-key", str(certs / "server.key")]
    with ServeProcess([*tls, "--tls-client-ca", str(certs / "ca.pem")]) as server:
        server.wait_listening()
        assert "(mutual TLS)" in server.lines[-1]
        lease = ["lease", "create", "--merchant", "m", "--service", "s", "--start",
                 "2100-01-01T10:00:00Z", "--duration", "30m", "--target", server.target,
                 "--tls-ca", str(certs / "ca.pem")]  # fmt: skip
        refused = run_cli([*lease, "--client-reference", "a"])
        assert refused.returncode == 3, refused.stderr  # no client certificate: no channel
        client = ["--tls-cert", str(certs / "client.pem"), "--tls-key", str(certs / "client.key")]
        granted = run_cli([*lease, "--client-reference", "b", *client])
        assert granted.returncode == 0, granted.stderr
        assert '"lease_id": "l.' in granted.stdout


@pytest.mark.parametrize(
    "options",
    [["--tls-cert", "server.pem"], ["--tls-key", "server.key"], ["--tls-cert", "missing.pem",
     "--tls-key", "server.key"]],
    ids=["cert-without-key", "key-without-cert", "unreadable-cert"],
)  # fmt: skip
def test_bad_tls_options_are_usage_errors(certs: Path, options: list[str]) -> None:
    paths = [str(certs / o) if not o.startswith("--") else o for o in options]
    result = run_cli(["serve", "--port", "0", "--admin-port", "-1", *paths])
    assert result.returncode == 2, result.stderr
    assert "listening on" not in result.stderr
