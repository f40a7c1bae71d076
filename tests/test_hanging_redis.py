"""A Redis that hangs (accepts connections, never answers) looks like one that is down.

The test starts its own redis-server on a free loopback port, freezes it with SIGSTOP
and thaws it with SIGCONT, and stops it by PID. While it hangs: calls end at their
deadline (not socket timeout x retries), health reports NOT_SERVING within about two
seconds, and calls whose clients gave up never take a spot once Redis runs again.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from conftest import delete_prefix, real_redis_or_skip
from grpc_health.v1 import health_pb2, health_pb2_grpc
from redis_servers import own_redis
from support import START_NS

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.async_broker import AsyncBroker
from leasebroker.core.background import Periodic
from leasebroker.core.base import DEADLINE_SLACK_MS
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.deadline import call_deadline
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import connect
from leasebroker.core.units import NS_PER_S
from leasebroker.wire.server import HEALTH_INTERVAL_S, start_server, store_health_check

CALL_TIMEOUT_S = 1.0


@pytest.fixture
def redis_process(tmp_path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    with own_redis(tmp_path) as server:
        yield server.process, server.port


def lease_request(ref: str) -> pb.CreateLeaseRequest:
    lease = pb.Lease(merchant_id="m-1", service_id="cut", client_reference=ref)
    lease.start_time.FromNanoseconds(START_NS)
    lease.duration.FromSeconds(1800)
    return pb.CreateLeaseRequest(lease=lease)


def health_status(channel: grpc.Channel) -> Any:
    stub = health_pb2_grpc.HealthStub(channel)
    return stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status


def test_a_hanging_redis_costs_calls_their_deadline_and_takes_no_spot(redis_process, monkeypatch):
    process, port = redis_process
    store = connect(f"redis://127.0.0.1:{port}/0", pool_size=20)
    broker = LeaseBroker(store.client, BrokerConfig(default_capacity=100))
    durations: list[float] = []
    original = AsyncBroker.create_lease  # serve's CreateLease, on an asyncio client

    async def timed(self: AsyncBroker, request: Any) -> Any:
        began = time.monotonic()
        try:
            return await original(self, request)
        finally:
            durations.append(time.monotonic() - began)

    monkeypatch.setattr(AsyncBroker, "create_lease", timed)
    running = start_server(broker, "127.0.0.1", 0, workers=16)
    health = Periodic("store-health", store_health_check(broker, [running]), HEALTH_INTERVAL_S)
    health.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    stub = pb_grpc.BookingServiceStub(channel)
    try:
        stub.CreateLease(lease_request("before"), timeout=10)  # also warms the pool
        time.sleep(HEALTH_INTERVAL_S * 1.5)  # a fresh reading of Redis's clock
        process.send_signal(signal.SIGSTOP)
        frozen_at = time.monotonic()

        codes: list[grpc.StatusCode] = []

        def call(ref: str) -> None:
            try:
                stub.CreateLease(lease_request(ref), timeout=CALL_TIMEOUT_S)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as error:
                codes.append(error.code())

        callers = [threading.Thread(target=call, args=(f"during-{i}",)) for i in range(8)]
        for caller in callers:
            caller.start()
        seen_down = None
        while time.monotonic() - frozen_at < 4.0:
            if (
                seen_down is None
                and health_status(channel) != health_pb2.HealthCheckResponse.SERVING
            ):
                seen_down = time.monotonic() - frozen_at
            time.sleep(0.1)
        for caller in callers:
            caller.join(timeout=10)
        assert codes == [grpc.StatusCode.DEADLINE_EXCEEDED] * 8
        assert seen_down is not None and seen_down <= 2.5, seen_down
        # Every handler gave up near its deadline while Redis still hung.
        assert len(durations) == 9 and max(durations[1:]) < CALL_TIMEOUT_S + 0.75, durations

        process.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while health_status(channel) != health_pb2.HealthCheckResponse.SERVING:
            assert time.monotonic() < deadline, "health never recovered"
            time.sleep(0.1)
        status = broker.slot_status(SlotId("m-1", "cut", START_NS, 1800 * NS_PER_S))
        assert status.holds == 1, "a call whose client gave up took a spot after the stall"
        stub.CreateLease(lease_request("after"), timeout=10)
        assert broker.slot_status(status.slot).holds == 2
    finally:
        process.send_signal(signal.SIGCONT)
        health.stop()
        channel.close()
        running.stop(grace=None)
        store.close()


def test_a_single_node_gets_the_deadline_with_slack(broker):
    broker.now_ms()
    with call_deadline(5.0):
        deadline = broker._deadline_arg()
    now = broker.now_ms()
    # The offset to Redis's clock comes from one TIME round trip, whole milliseconds:
    # it may be a few ms off, either way.
    tolerance = 50
    assert (
        now + 5_000 + DEADLINE_SLACK_MS - 500
        <= deadline
        <= now + 5_000 + DEADLINE_SLACK_MS + tolerance
    )
    assert broker._deadline_arg() == ""


def test_a_call_waiting_for_a_pooled_connection_gives_up_at_its_deadline(key_prefix):
    """Every connection of the pool is taken: a call ends at its own deadline
    (DEADLINE_EXCEEDED), not after the pool's 5 s wait."""
    redis_client = real_redis_or_skip()
    store = connect("redis://127.0.0.1:6379/0", pool_size=1)
    request = LeaseRequest(SlotId("m", "s", START_NS, NS_PER_S), "r")
    try:
        broker = LeaseBroker(store.client, BrokerConfig(key_prefix=key_prefix), auto_pipeline=False)
        pool = store.client.connection_pool
        taken = pool.get_connection()
        started = time.monotonic()
        with pytest.raises(BrokerError) as refused, call_deadline(0.3):
            broker.create_lease(request)
        waited = time.monotonic() - started
        assert refused.value.reason is Reason.DEADLINE_EXCEEDED
        assert 0.25 <= waited < 2.0, waited
        pool.release(taken)
        with call_deadline(5.0):  # a connection free again: the same call goes through
            assert broker.create_lease(request).fence == 1
    finally:
        store.close()
        delete_prefix(redis_client, key_prefix)
