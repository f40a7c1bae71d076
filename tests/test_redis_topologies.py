"""Redis behind TLS (rediss://, mutual TLS with a private CA) and behind Sentinel
(redis+sentinel://, following a failover under load, on the threaded path and on the
asyncio one), each against real servers the test starts (tests/redis_servers.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis_servers
from failover_load import FailoverLoad
from support import ServeProcess, create_request, hold, lease_request, run_cli

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.async_broker import AsyncBroker
from leasebroker.core.async_pipe import AsyncPipe
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import RedisTls, open_redis

pytestmark = pytest.mark.usefixtures("no_leasebroker_env")


@pytest.fixture
def tls_port(tmp_path: Path, certs: Path):
    port = redis_servers.start_tls(tmp_path, certs)
    yield port
    redis_servers.stop(port)


def tls_options(certs: Path, *, client: bool = True) -> list[str]:
    options = ["--redis-tls-ca", str(certs / "ca.pem")]
    if client:
        options += ["--redis-tls-cert", str(certs / "client.pem")]
        options += ["--redis-tls-key", str(certs / "client.key")]
    return options


def test_mutual_tls_to_redis_serves_leases(tls_port: int, certs: Path) -> None:
    url = f"rediss://127.0.0.1:{tls_port}/0"
    tls = RedisTls(str(certs / "ca.pem"), str(certs / "client.pem"), str(certs / "client.key"))
    store, _ = open_redis(url, pool_size=2, tls=tls)
    try:
        broker = LeaseBroker(store.client, BrokerConfig(key_prefix="lbtest-tls"))
        assert hold(broker).lease_id
    finally:
        store.close()
    with ServeProcess(["--redis-url", url, *tls_options(certs)]) as serve:
        serve.wait_listening()
        assert any("using Redis at rediss://127.0.0.1" in line for line in serve.lines)
    result = run_cli(["slots", "--merchant", "merchant-1", "--redis-url", url, *tls_options(certs)])
    assert result.returncode == 0, result.stderr


def test_redis_tls_without_a_client_certificate_is_refused(tls_port: int, certs: Path) -> None:
    url = f"rediss://127.0.0.1:{tls_port}/0"
    result = run_cli(
        ["slots", "--merchant", "m", "--redis-url", url, *tls_options(certs, client=False)]
    )
    assert result.returncode == 3, result.stderr  # the server drops the handshake
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "options",
    [
        ["--redis-tls-ca", "/nonexistent/ca.pem"],
        ["--redis-url", "redis://127.0.0.1:1/0", "--redis-tls-ca", "CA"],
    ],
    ids=["missing-file", "plain-url"],
)
def test_bad_redis_tls_options_are_usage_errors(options: list[str], certs: Path) -> None:
    options = [str(certs / "ca.pem") if o == "CA" else o for o in options]
    if "--redis-url" not in options:
        options += ["--redis-url", "rediss://127.0.0.1:1/0"]
    result = run_cli(["slots", "--merchant", "m", *options])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------- Sentinel


@pytest.fixture
def sentinel_setup(tmp_path: Path):
    """A primary, one replica and one sentinel watching them (service ``mymaster``)."""
    primary = redis_servers.start(tmp_path)
    replica = redis_servers.start(tmp_path, "--replicaof", "127.0.0.1", str(primary))
    sentinel = redis_servers.start_sentinel(tmp_path, primary)
    try:
        redis_servers.wait_for(
            lambda: _replicas_known(sentinel) >= 1, "the sentinel to see the replica"
        )
        yield primary, replica, sentinel
    finally:
        for port in (sentinel, replica, primary):
            redis_servers.stop(port)


def _replicas_known(sentinel: int) -> int:
    import redis

    client = redis.Redis(port=sentinel, protocol=2, socket_timeout=2)
    try:
        return len(client.sentinel_slaves("mymaster"))
    finally:
        client.close()


def _primary_port(sentinel: int) -> int:
    import redis

    client = redis.Redis(port=sentinel, protocol=2, socket_timeout=2)
    try:
        return int(client.sentinel_get_master_addr_by_name("mymaster")[1])
    finally:
        client.close()


@pytest.mark.parametrize("awaited", [False, True], ids=["threaded", "asyncio"])
def test_sentinel_url_follows_a_failover_under_load(sentinel_setup, awaited: bool) -> None:
    """Threaded: a new pooled connection asks the sentinels. Asyncio (the BookingService's
    path): the one pipelined connection is opened again to the primary they name."""
    primary, replica, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel}/mymaster/0"
    store, _ = open_redis(url, pool_size=8)
    broker = LeaseBroker(store.client, BrokerConfig(key_prefix="lbtest-sentinel"))
    try:
        with FailoverLoad(broker, "sentinel", awaited=awaited) as load:
            before = load.through(
                lambda: redis_servers.stop(primary),  # the sentinel promotes the replica
                lambda: _primary_port(sentinel) == replica,
            )
    finally:
        store.close()
    assert not load.others, load.others
    assert load.ok > before
    assert load.unavailable > 0  # calls during the switch were told to retry


class StandInSentinels:
    """What a pipelined connection asks Sentinel (``discover_master``), answering with
    the ports of ``named``, one per question (the last one from then on)."""

    def __init__(self, *named: int) -> None:
        self.named = list(named)
        self.asked = 0

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        self.asked += 1
        return "127.0.0.1", self.named[min(self.asked, len(self.named)) - 1]


def _primary_and_synced_replica(folder: Path) -> tuple[int, int]:
    primary = redis_servers.start(folder)
    replica = redis_servers.start(folder, "--replicaof", "127.0.0.1", str(primary))
    client = redis.Redis(port=replica, protocol=2)
    try:
        redis_servers.wait_for(
            lambda: client.info("replication")["master_link_status"] == "up", "the replica"
        )
    except BaseException:
        redis_servers.stop(replica)
        redis_servers.stop(primary)
        raise
    finally:
        client.close()
    return primary, replica


def _behind(sentinels: StandInSentinels) -> redis.asyncio.Redis:
    pool = redis.asyncio.sentinel.SentinelConnectionPool(
        "mymaster", sentinels, protocol=2, socket_timeout=5
    )
    return redis.asyncio.Redis(connection_pool=pool)


def test_a_connection_that_reaches_a_replica_asks_the_sentinels_again(tmp_path: Path) -> None:
    """A primary demoted behind the client's back answers writes with READONLY: the
    connection is closed and the next one goes where the sentinels say."""
    primary, replica = _primary_and_synced_replica(tmp_path)
    sentinels = StandInSentinels(replica, primary)

    async def run() -> list[Any]:
        client = _behind(sentinels)
        pipe = AsyncPipe(client)
        seen: list[Any] = []
        try:
            seen.append(await pipe.call("GET", "lbtest-readonly"))  # a replica reads
            try:
                await pipe.call("SET", "lbtest-readonly", "1")
            except redis.exceptions.ConnectionError as exc:
                seen.append(str(exc))
            seen.append(await pipe.call("SET", "lbtest-readonly", "1"))
            return seen
        finally:
            await pipe.close()
            await client.aclose()

    try:
        assert asyncio.run(run()) == [None, "the primary is now a replica", b"OK"]
        assert sentinels.asked == 2
    finally:
        redis_servers.stop(replica)
        redis_servers.stop(primary)


def test_the_asyncio_broker_retries_a_lease_on_the_primary_after_a_replica(
    tmp_path: Path,
) -> None:
    """On the replica the script is loaded (NOSCRIPT) and then refused at its first
    write (READONLY): the call goes again, on a new connection, to the primary."""
    primary, replica = _primary_and_synced_replica(tmp_path)
    sentinels = StandInSentinels(replica, primary)
    client = redis.Redis(port=primary, protocol=2)
    broker = LeaseBroker(client, BrokerConfig(key_prefix="lbtest-readonly"))

    async def run() -> Any:
        awaited = AsyncBroker(broker, _behind(sentinels))
        try:
            return await awaited.create_lease(lease_request())
        finally:
            await awaited.close()

    try:
        lease = asyncio.run(run())
        assert broker.get_lease(lease.lease_id).lease_id == lease.lease_id
        assert sentinels.asked == 2
    finally:
        client.close()
        redis_servers.stop(replica)
        redis_servers.stop(primary)


def test_serve_through_sentinel(sentinel_setup) -> None:
    _, _, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel}/mymaster"
    with ServeProcess(["--redis-url", url, "--key-prefix", "lbtest-sentinel-serve"]) as serve:
        serve.wait_listening()
        assert any(
            "Redis behind Sentinel at redis+sentinel://127.0.0.1" in line for line in serve.lines
        )
        with grpc.insecure_channel(serve.target) as channel:
            reply = pb_grpc.BookingServiceStub(channel).CreateLease(create_request(), timeout=30)
        assert reply.lease.lease_id.startswith("l.")
        assert serve.stop() == 0


@pytest.mark.parametrize(
    "url",
    ["redis+sentinel://127.0.0.1:26379", "redis+sentinel://127.0.0.1:99999/mymaster",
     "redis+sentinel://127.0.0.1:26379/mymaster/zero", "mongodb://127.0.0.1/0"],
)  # fmt: skip
def test_malformed_redis_urls_are_usage_errors(url: str) -> None:
    result = run_cli(["slots", "--merchant", "m", "--redis-url", url])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_the_documented_acl_rule_is_the_code_s() -> None:
    from leasebroker.core.permissions import acl_rule

    doc = (Path(__file__).resolve().parent.parent / "docs/operations.md").read_text()
    section = doc.split("## A Redis user for leasebroker", 1)[1].split("\n## ", 1)[0]
    assert "\n" + acl_rule("lb") + "\n" in section
