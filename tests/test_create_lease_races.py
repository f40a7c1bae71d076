"""Simultaneous CreateLease calls on one slot never over-grant: exactly K of 50 win.

In process (both backends) through one or two gRPC servers sharing a store, then
across two ``leasebroker serve`` processes sharing the real Redis.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

import grpc
import pytest
from support import (
    ServeProcess,
    StatusDetails,
    create_request,
    race,
    reply_or_status,
    stored_keys,
)

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc

CALLS = 50
CAPACITIES = [1, 3]


def fire(stubs: Sequence[pb_grpc.BookingServiceStub]) -> list[str | StatusDetails]:
    """CALLS CreateLease calls on one slot, released together, spread over ``stubs``.

    Each result is the granted lease id or the decoded failure.
    """
    requests = [create_request(client_reference=f"ref-{i}") for i in range(CALLS)]

    def one(i: int) -> str | StatusDetails:
        reply = reply_or_status(stubs[i % len(stubs)].CreateLease, requests[i], timeout=60)
        return reply if isinstance(reply, StatusDetails) else reply.lease.lease_id

    return race(*(lambda i=i: one(i) for i in range(CALLS)), timeout_s=60)


def assert_exactly_k_granted(results: list[str | StatusDetails], k: int) -> None:
    granted = [r for r in results if isinstance(r, str)]
    refused = [r for r in results if not isinstance(r, str)]
    assert len(granted) == k, refused
    assert len(set(granted)) == k
    assert len(refused) == CALLS - k
    for details in refused:
        assert (details.code, details.domain, details.reason) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "leasebroker",
            "SLOT_FULL",
        )


@pytest.mark.parametrize("servers", [1, 2])
@pytest.mark.parametrize("capacity", CAPACITIES)
def test_concurrent_calls_grant_exactly_capacity(make_broker, make_stub, capacity, servers):
    stubs = [make_stub(make_broker(default_capacity=capacity)) for _ in range(servers)]
    assert_exactly_k_granted(fire(stubs), capacity)


@pytest.mark.parametrize("backend", ["real"])
@pytest.mark.parametrize("capacity", CAPACITIES)
def test_two_serve_processes_sharing_redis_grant_exactly_capacity(
    redis_client, key_prefix, store_args, capacity
):
    # redis_client (real backend) deletes this test's keys afterwards.
    args = [*store_args, "--default-capacity", str(capacity)]
    channels: list[grpc.Channel] = []
    with ServeProcess(args) as first, ServeProcess(args) as second:
        try:
            for server in (first, second):
                server.wait_listening()
                channels.append(grpc.insecure_channel(server.target))
            stubs = [pb_grpc.BookingServiceStub(channel) for channel in channels]

            assert_exactly_k_granted(fire(stubs), capacity)
        finally:
            for channel in channels:
                channel.close()
        assert first.stop(signal.SIGTERM) == 0, first.lines
        assert second.stop(signal.SIGTERM) == 0, second.lines
    # The grants went to the shared Redis, under the prefix given on the command line.
    assert stored_keys(redis_client, key_prefix)
