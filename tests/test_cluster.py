"""The whole lease lifecycle on a real three-node Redis Cluster started by the test.

Every key a script touches carries the merchant's hash tag, so each script runs
on one cluster slot; this proves it against real CROSSSLOT checks, with merchant
ids that contain braces and colons. The asyncio path (core/async_cluster.py) runs it
too, and follows MOVED and ASK redirections of slots the test moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
import redis
import redis_servers
from failover_load import FailoverLoad
from redis.crc import key_slot
from support import HOUR_NS, ServeProcess, book, booking_request, grpc_book, grpc_lease

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.async_broker import AsyncBroker
from leasebroker.core.async_cluster import ClusterPipes, routing_key
from leasebroker.core.async_pipe import AsyncPipe
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.deadline import call_deadline
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import check_server, connect
from leasebroker.core.sweeper import sweep_once

NODES = 3
T = TypeVar("T")


def start_cluster(folder: Path, nodes: int, replicas: int, *settings: str) -> list[int]:
    """A cluster of ``nodes`` redis-servers (``replicas`` per primary), once its state
    is ok; their ports (the caller stops them)."""
    _, cli = redis_servers.binaries()
    ports: list[int] = []
    try:
        for node in range(nodes):
            ports.append(
                redis_servers.start(
                    folder, "--cluster-enabled", "yes", "--cluster-config-file", f"n{node}.conf",
                    *settings,
                )
            )  # fmt: skip
        subprocess.run(
            [cli, "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            check=True, capture_output=True,
        )  # fmt: skip
        redis_servers.wait_for(lambda: cluster_ok(ports[0]), "cluster_state:ok")
    except BaseException:
        for port in ports:
            redis_servers.stop(port)
        raise
    return ports


def cluster_ok(port: int) -> bool:
    node = redis.Redis(port=port, protocol=2, socket_timeout=2)
    try:
        return node.execute_command("CLUSTER", "INFO").startswith(b"cluster_state:ok")
    except redis.exceptions.RedisError:
        return False
    finally:
        node.close()


@pytest.fixture(scope="module")
def cluster_ports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    ports = start_cluster(tmp_path_factory.mktemp("cluster"), NODES, 0)
    try:
        yield ports
    finally:
        for port in ports:
            redis_servers.stop(port)


@pytest.fixture(scope="module")
def cluster_url(cluster_ports: list[int]) -> str:
    return f"redis://127.0.0.1:{cluster_ports[0]}"


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


# ---------------------------------------------------------------- the asyncio path


def run_async(work: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(work())


@pytest.mark.parametrize("merchant", ["plain", "br{ace}s", "ünï cødé"])
def test_the_asyncio_broker_on_a_cluster(cluster_broker: LeaseBroker, merchant: str) -> None:
    broker = cluster_broker
    slot = SlotId(merchant, "svc", time.time_ns() + HOUR_NS, 1800 * 10**9, "staff}", "room{")

    async def lifecycle() -> tuple[Any, ...]:
        awaited = AsyncBroker.of(broker)
        try:
            lease = await awaited.create_lease(LeaseRequest(slot, f"aio-{merchant}"))
            replay = await awaited.create_lease(LeaseRequest(slot, f"aio-{merchant}"))
            booking = await awaited.create_booking(booking_request(lease.lease_id))
            later = slot.start_ns + HOUR_NS
            moved = await awaited.reschedule_booking(booking.booking_id, later, None)
            cancelled = await awaited.cancel_booking(booking.booking_id)
            return lease, replay, moved, cancelled
        finally:
            await awaited.close()

    lease, replay, moved, cancelled = run_async(lifecycle)
    assert replay.replayed and replay.lease_id == lease.lease_id
    assert broker.get_lease(lease.lease_id).state == "consumed"
    assert moved.slot.start_ns == slot.start_ns + HOUR_NS
    assert cancelled.status == "cancelled"
    assert merchant in broker.merchants()


def test_an_awaited_create_lease_on_a_cluster_is_one_round_trip(
    cluster_broker: LeaseBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One EVALSHA to the merchant's primary once the merchant is known (the registry and
    due index written by an earlier lease), as on a single Redis."""
    sent: list[tuple[str, int]] = []
    call = AsyncPipe.call

    async def spied(pipe: AsyncPipe, *command: Any, **options: Any) -> Any:
        sent.append((str(command[0]), pipe._options["port"]))
        return await call(pipe, *command, **options)

    monkeypatch.setattr(AsyncPipe, "call", spied)
    start = time.time_ns() + HOUR_NS

    async def two() -> Any:
        awaited = AsyncBroker.of(cluster_broker)
        try:
            await awaited.create_lease(
                LeaseRequest(SlotId("trips", "svc", start, 1800 * 10**9), "a")
            )
            sent.clear()
            later = SlotId("trips", "svc", start + HOUR_NS, 1800 * 10**9)
            return await awaited.create_lease(LeaseRequest(later, "b"))
        finally:
            await awaited.close()

    assert run_async(two).fence == 1
    primary = cluster_broker.client.get_node_from_key(cluster_broker.keys.merchant_root("trips"))
    assert sent == [("EVALSHA", primary.port)]


def test_the_asyncio_broker_loads_scripts_on_the_node_that_lacks_them(
    cluster_broker: LeaseBroker,
) -> None:
    client = cluster_broker.client
    for node in client.get_nodes():
        client.get_redis_connection(node).script_flush()
    requests = [
        LeaseRequest(SlotId(f"flush-{i}", "svc", time.time_ns() + HOUR_NS, 1800 * 10**9), "a")
        for i in range(12)  # merchants on every node
    ]

    async def grant() -> list[Any]:
        awaited = AsyncBroker.of(cluster_broker)
        try:
            return [await awaited.create_lease(request) for request in requests]
        finally:
            await awaited.close()

    assert [lease.fence for lease in run_async(grant)] == [1] * len(requests)
    assert {client.get_node_from_key(f"lbcluster:{{flush-{i}}}:x").name for i in range(12)} == {
        node.name for node in client.get_nodes()
    }


def cluster_call(broker: LeaseBroker, key: Any, *command: Any) -> Any:
    """``command`` sent by a fresh ClusterPipes of ``broker``'s cluster client."""

    async def call() -> Any:
        pipes = ClusterPipes(broker.client)
        try:
            return await pipes.call(key, *command)
        finally:
            await pipes.aclose()

    return asyncio.run(call())


def _node_ids(ports: list[int]) -> dict[int, str]:
    ids = {}
    for port in ports:
        node = redis.Redis(port=port, protocol=2)
        ids[port] = node.execute_command("CLUSTER", "MYID").decode()
        node.close()
    return ids


def _owner(ports: list[int], slot: int) -> int:
    node = redis.Redis(port=ports[0], protocol=2)
    try:
        for start, end, primary, *_ in node.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
    finally:
        node.close()
    raise AssertionError(f"slot {slot} has no owner")


def _set_slot(ports: list[int], slot: int, *how: Any) -> None:
    for port in ports:
        node = redis.Redis(port=port, protocol=2)
        try:
            node.execute_command("CLUSTER", "SETSLOT", slot, *how)
        finally:
            node.close()


@pytest.fixture
def empty_slot(cluster_ports: list[int]) -> Iterator[tuple[str, int, int, int]]:
    """A key of a slot that holds no key, its slot, its owner's port and another
    node's port; the slot goes back to its owner afterwards."""
    while True:  # a slot none of the other tests has written to (moving it needs that)
        key = f"lbcluster:{{moving-{uuid.uuid4().hex}}}"
        slot = key_slot(key.encode())
        owner = _owner(cluster_ports, slot)
        node = redis.Redis(port=owner, protocol=2)
        try:
            if node.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0:
                break
        finally:
            node.close()
    other = next(port for port in cluster_ports if port != owner)
    ids = _node_ids(cluster_ports)
    try:
        yield key, slot, owner, other
    finally:
        for port in cluster_ports:  # the key, wherever the test wrote it
            node = redis.Redis(port=port, protocol=2, single_connection_client=True)
            node.execute_command("ASKING")
            with contextlib.suppress(redis.exceptions.ResponseError):  # MOVED: not there
                node.execute_command("DEL", key)
            node.close()
        _set_slot(cluster_ports, slot, "STABLE")
        _set_slot(cluster_ports, slot, "NODE", ids[owner])


def test_a_moved_slot_is_followed_and_the_slot_map_patched(
    cluster_broker: LeaseBroker, cluster_ports: list[int], empty_slot: Any
) -> None:
    key, slot, owner, other = empty_slot
    manager = cluster_broker.client.nodes_manager
    assert manager.get_node_from_slot(slot).port == owner
    _set_slot(cluster_ports, slot, "NODE", _node_ids(cluster_ports)[other])

    assert cluster_call(cluster_broker, key, "SET", key, "here") == b"OK"
    assert manager.get_node_from_slot(slot).port == other
    assert redis.Redis(port=other, protocol=2).get(key) == b"here"


def test_an_asked_key_is_sent_after_asking_and_the_slot_map_kept(
    cluster_broker: LeaseBroker, cluster_ports: list[int], empty_slot: Any
) -> None:
    key, slot, owner, other = empty_slot
    ids = _node_ids(cluster_ports)
    manager = cluster_broker.client.nodes_manager
    # A migration from owner to other: a key the owner does not hold is asked for there.
    redis.Redis(port=other, protocol=2).execute_command(
        "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[owner]
    )
    redis.Redis(port=owner, protocol=2).execute_command(
        "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[other]
    )

    assert cluster_call(cluster_broker, key, "SET", key, "asked") == b"OK"
    assert manager.get_node_from_slot(slot).port == owner
    target = redis.Redis(port=other, protocol=2, single_connection_client=True)
    target.execute_command("ASKING")
    assert target.get(key) == b"asked"
    target.close()


def test_a_command_without_a_key_is_refused_on_a_cluster(cluster_broker: LeaseBroker) -> None:
    with pytest.raises(ValueError, match="no key routes"):
        cluster_call(cluster_broker, routing_key(("PING",)), "PING")


def test_routing_keys() -> None:
    assert routing_key(("EVALSHA", "abc", 2, "k1", "k2", "arg")) == "k1"
    assert routing_key((b"evalsha", "abc", "0", "arg")) is None
    assert routing_key(("HGETALL", "record")) == "record"
    assert routing_key(("SCRIPT",)) is None


def test_the_asyncio_broker_follows_a_cluster_failover_under_load(tmp_path: Path) -> None:
    """A primary dies, its replica takes over its slots: the calls on its slots are
    UNAVAILABLE meanwhile, the slot map is read again, and the calls go to the new one."""
    # A replica takes over one second after its primary stops answering, however young
    # its link to it (this cluster is seconds old).
    ports = start_cluster(
        tmp_path, 6, 1, "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0"
    )
    store = connect(f"redis://127.0.0.1:{ports[0]}", pool_size=8, cluster=True)
    broker = LeaseBroker(store.client, BrokerConfig(key_prefix="lbcluster-failover"))
    primary = store.client.get_node_from_key(broker.keys.merchant_root("failover")).port
    live = next(port for port in ports if port != primary)
    try:
        with FailoverLoad(broker, "failover", awaited=True) as load:
            before = load.through(
                lambda: redis_servers.stop(primary),
                lambda: load.unavailable > 0 and cluster_ok(live),
            )
    finally:
        store.close()
        for port in ports:
            redis_servers.stop(port)
    assert not load.others, load.others
    assert load.ok > before


def test_serve_on_a_cluster_grants_and_books_over_the_wire(cluster_url: str) -> None:
    args = ["--redis-url", cluster_url, "--redis-cluster", "--key-prefix", "lbcluster-serve"]
    s = SlotId("wire{1}", "svc", time.time_ns() + HOUR_NS, 1800 * 10**9)
    with ServeProcess(args) as serve:
        serve.wait_listening()
        with grpc.insecure_channel(serve.target) as channel:
            stub = pb_grpc.BookingServiceStub(channel)
            lease = grpc_lease(stub, s)
            assert grpc_lease(stub, s).lease_id == lease.lease_id  # the replay
            assert grpc_book(stub, lease.lease_id).booking_id.startswith("b.")
        assert serve.stop() == 0
