"""Shared fixtures: every broker test runs on fakeredis and on the real Redis at 127.0.0.1:6379.

The real server is skipped only when it cannot be reached, and never in CI
(``CI`` set): there an unreachable server fails the test run instead.
Each test gets its own key prefix and its keys are deleted afterwards.
What the fixtures are built from (constants, builders, the Clock) is in support.py.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import fakeredis
import grpc
import pytest
import redis
from support import REAL_REDIS_URL, Clock, stored_keys

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.settings import BrokerConfig
from leasebroker.wire import access
from leasebroker.wire.server import start_server

BACKENDS = ["fake", "real"]


def real_redis_or_skip() -> redis.Redis:
    """A client of the local Redis; skip (fail under CI) when it does not answer."""
    client = redis.Redis.from_url(REAL_REDIS_URL, protocol=2, socket_timeout=5)
    try:
        client.ping()
    except redis.ConnectionError as exc:
        client.close()
        if os.environ.get("CI"):
            pytest.fail(f"CI must test against the real Redis at {REAL_REDIS_URL}: {exc}")
        pytest.skip(f"no Redis at {REAL_REDIS_URL}")
    return client


def delete_prefix(client: Any, prefix: str) -> None:
    keys = stored_keys(client, prefix)
    if keys:
        client.delete(*keys)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Which store the test runs on: "fake" (fakeredis) or "real" (Redis at 127.0.0.1)."""
    return request.param


@pytest.fixture
def key_prefix() -> str:
    return f"lbtest-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_client(backend: str, key_prefix: str) -> Iterator[Any]:
    """A fresh client per test (fakeredis: a fresh server too); test keys removed after."""
    if backend == "fake":
        client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), protocol=2)
        yield client
        client.close()
        return
    client = real_redis_or_skip()
    try:
        yield client
    finally:
        delete_prefix(client, key_prefix)
        client.close()


@pytest.fixture
def make_broker(redis_client: Any, key_prefix: str) -> Callable[..., LeaseBroker]:
    """``make_broker(default_capacity=3, ...)``: a broker on this test's store and prefix."""

    def make(**config: Any) -> LeaseBroker:
        return LeaseBroker(redis_client, BrokerConfig(key_prefix=key_prefix, **config))

    return make


@pytest.fixture
def broker(make_broker: Callable[..., LeaseBroker]) -> LeaseBroker:
    return make_broker()


@pytest.fixture
def unreachable_broker() -> Iterator[LeaseBroker]:
    """A broker whose store never answers (nothing listens on port 1)."""
    client = redis.Redis(host="127.0.0.1", port=1, protocol=2, socket_connect_timeout=0.2)
    yield LeaseBroker(client, BrokerConfig(key_prefix="lbtest-unreachable"))
    client.close()


@pytest.fixture
def clock(backend: str, monkeypatch: pytest.MonkeyPatch, redis_client: Any) -> Clock:
    """The store's clock: read it, let time pass, or hold it still (support.Clock)."""
    return Clock(backend, monkeypatch, redis_client)


@pytest.fixture
def channel_to() -> Iterator[Callable[[Any], grpc.Channel]]:
    """``channel_to(running)``: a channel to a server the test started; after the test
    every such channel is closed and its server stopped."""
    opened: list[tuple[Any, grpc.Channel]] = []

    def open_channel(running: Any) -> grpc.Channel:
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        opened.append((running, channel))
        return channel

    yield open_channel
    for running, channel in opened:
        channel.close()
        running.stop(grace=None)


@pytest.fixture
def make_stub(channel_to: Callable[[Any], grpc.Channel]) -> Callable[..., Any]:
    """``make_stub(broker)``: a real gRPC server on an ephemeral port and a client stub for it."""

    def make(broker: LeaseBroker) -> pb_grpc.BookingServiceStub:
        return pb_grpc.BookingServiceStub(
            channel_to(start_server(broker, "127.0.0.1", 0, workers=16))
        )

    return make


@pytest.fixture
def stub(broker: LeaseBroker, make_stub: Callable[..., Any]) -> pb_grpc.BookingServiceStub:
    return make_stub(broker)


@pytest.fixture
def real_broker(key_prefix: str) -> Iterator[LeaseBroker]:
    """A broker on the real Redis (the store the CLI tests' commands use, whatever the
    backend), its keys deleted after."""
    client = real_redis_or_skip()
    try:
        yield LeaseBroker(client, BrokerConfig(key_prefix=key_prefix))
    finally:
        delete_prefix(client, key_prefix)
        client.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _signed(name: str, cwd: Path, extensions: str) -> None:
    """A key and a certificate for ``name``, signed by the test CA."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
             "-subj", f"/CN={name}", "-out", f"{name}.csr", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(extensions)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem",
             "-extfile", f"{name}.ext", cwd=cwd)  # fmt: skip


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA (ca.pem), a server certificate for 127.0.0.1 and localhost
    (server.pem, server.key) and a client certificate (client.pem, client.key), made by
    openssl for the TLS tests: the gRPC port, Redis over TLS, bad TLS files."""
    if not shutil.which("openssl"):
        if os.environ.get("CI"):
            pytest.fail("CI must run the TLS tests: openssl is not installed")
        pytest.skip("openssl is not installed")
    folder = tmp_path_factory.mktemp("certs")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-subj",
             "/CN=leasebroker test CA", "-days", "2", "-out", "ca.pem", cwd=folder)  # fmt: skip
    _signed("server", folder, "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _signed("client", folder, "extendedKeyUsage=clientAuth\n")
    return folder


@pytest.fixture
def store_args(key_prefix: str) -> list[str]:
    """The command-line options for this test's store: the real Redis, this test's prefix."""
    return ["--redis-url", REAL_REDIS_URL, "--key-prefix", key_prefix]


@pytest.fixture
def no_leasebroker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The test sees no LEASEBROKER_* variable unless it sets one."""
    for name in [name for name in os.environ if name.startswith("LEASEBROKER_")]:
        monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def root_logging_restored() -> Iterator[None]:
    """Whatever a test's in-process ``serve`` does to the root logger is undone: its
    handler writes to this test's captured stderr, which pytest closes afterwards, and
    it no longer takes the access lines."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.flush()
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)
    access.set_access_sink(None)  # serve's handler took the access lines: no more


@pytest.fixture(autouse=True)
def switch_interval_restored() -> Iterator[None]:
    """An in-process ``serve`` shortens the GIL's switch interval; the next test gets
    Python's again."""
    interval = sys.getswitchinterval()
    yield
    sys.setswitchinterval(interval)
