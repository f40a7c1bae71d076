"""Shared fixtures: every broker test runs on fakeredis and on the real Redis at 127.0.0.1:6379.

The real server is skipped only when it cannot be reached, and never in CI
(``CI`` set): there an unreachable server fails the test run instead.
Each test gets its own key prefix and its keys are deleted afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import fakeredis
import grpc
import pytest
import redis

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.settings import BrokerConfig
from leasebroker.wire.server import start_server

REAL_REDIS_URL = "redis://127.0.0.1:6379/0"
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
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
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
def make_stub() -> Iterator[Callable[[LeaseBroker], pb_grpc.BookingServiceStub]]:
    """``make_stub(broker)``: a real gRPC server on an ephemeral port and a client stub for it."""
    started: list[Any] = []

    def make(broker: LeaseBroker) -> pb_grpc.BookingServiceStub:
        running = start_server(broker, "127.0.0.1", 0, workers=16)
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        started.append((running, channel))
        return pb_grpc.BookingServiceStub(channel)

    yield make
    for running, channel in started:
        channel.close()
        running.stop(grace=None)


@pytest.fixture
def stub(broker: LeaseBroker, make_stub: Callable[..., Any]) -> pb_grpc.BookingServiceStub:
    return make_stub(broker)
