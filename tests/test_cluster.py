"""The whole lease lifecycle on a real three-node Redis Cluster started by the test.

Every key a script touches carries the merchant's hash tag, so each script runs
on one cluster slot; this proves it against real CROSSSLOT checks, with merchant
ids that contain braces and colons.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis_servers
from support import HOUR_NS, book

from leasebroker.core.broker import LeaseBroker
from leasebroker.core.deadline import call_deadline
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import check_server, connect
from leasebroker.core.sweeper import sweep_once

NODES = 3


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    _, cli = redis_servers.binaries()
    folder: Path = tmp_path_factory.mktemp("cluster")
    ports: list[int] = []
    try:
        for node in range(NODES):
            ports.append(
                redis_servers.start(
                    folder, "--cluster-enabled", "yes", "--cluster-config-file", f"n{node}.conf"
                )
            )
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True,
        )  # fmt: skip

        def ready() -> bool:
            out = subprocess.run(
                [cli, "-p", str(ports[0]), "cluster", "info"], capture_output=True, text=True
            ).stdout
            return "cluster_state:ok" in out

        redis_servers.wait_for(ready, "cluster_state:ok")
        yield f"redis://127.0.0.1:{ports[0]}"
    finally:
        for port in ports:
            redis_servers.stop(port)


@pytest.fixture
def cluster_broker(cluster_url: str) -> Iterator[LeaseBroker]:
    store = connect(cluster_url, pool_size=8, cluster=True)
    yield LeaseBroker(store.client, BrokerConfig(key_prefix="lbcluster"))
    store.client.close()


@pytest.mark.parametrize("merchant", ["plain", "br{ace}s", "co:lon", "{}", "ünï cødé"])
def test_full_lifecycle_on_cluster(cluster_broker: LeaseBroker, merchant: str) -> None:
    broker = cluster_broker
    slot = SlotId(merchant, "svc", time.time_ns() + HOUR_NS, 1800 * 10**9, "staff}", "room{")
    lease = broker.create_lease(LeaseRequest(slot, f"ref-{merchant}"))
    assert broker.create_lease(LeaseRequest(slot, f"ref-{merchant}")).replayed
    with pytest.raises(BrokerError) as full:
        broker.create_lease(LeaseRequest(slot, "someone else"))
    assert full.value.reason is Reason.SLOT_FULL

    extended = broker.extend_lease(lease.lease_id, 60_000, expected_fence=lease.fence)
    assert extended.expires_at_ms == lease.expires_at_ms + 60_000

    booking = book(broker, lease.lease_id)
    assert broker.get_lease(lease.lease_id).state == "consumed"
    moved = broker.reschedule_booking(booking.booking_id, slot.start_ns + HOUR_NS, slot.duration_ns)
    assert moved.slot.start_ns == slot.start_ns + HOUR_NS
    assert broker.slot_status(slot).bookings == 0
    assert broker.slot_status(moved.slot).bookings == 1
    assert broker.cancel_booking(booking.booking_id).status == "cancelled"
    assert broker.slot_status(moved.slot).bookings == 0
    assert merchant in broker.merchants()
    assert [b.booking_id for b in broker.list_bookings(merchant)] == [booking.booking_id]
    sweep_once(broker)


def test_scripts_survive_flush_on_every_node(cluster_broker: LeaseBroker) -> None:
    slot = SlotId("flush", "svc", time.time_ns() + HOUR_NS, 1800 * 10**9)
    cluster_broker.create_lease(LeaseRequest(slot, "a"))
    client = cluster_broker.client
    for node in client.get_nodes():
        client.get_redis_connection(node).script_flush()
    again = SlotId("flush", "svc", slot.start_ns + HOUR_NS, 1800 * 10**9)
    assert cluster_broker.create_lease(LeaseRequest(again, "b")).fence == 1


def test_startup_checks_read_every_node(cluster_broker: LeaseBroker) -> None:
    assert check_server(cluster_broker.client) == []


def test_scripts_get_no_deadline_on_a_cluster(cluster_broker: LeaseBroker) -> None:
    """The clock offset is measured on one node; a cluster's primaries' clocks may differ,
    so the scripts there are not asked to compare a deadline with their own clock."""
    cluster_broker.now_ms()  # a fresh offset
    with call_deadline(5.0):
        assert cluster_broker._deadline_arg() == ""
