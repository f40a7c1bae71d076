"""Redis behind TLS (rediss://, mutual TLS with a private CA) and behind Sentinel
(redis+sentinel://, following a failover under load), each against real servers the
test starts (tests/redis_servers.py)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis_servers
from support import ServeProcess, hold, lease_request, run_cli

from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
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


def test_sentinel_url_follows_a_failover_under_load(sentinel_setup) -> None:
    primary, replica, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel}/mymaster/0"
    store, _ = open_redis(url, pool_size=8)
    broker = LeaseBroker(store.client, BrokerConfig(key_prefix="lbtest-sentinel"))
    outcomes: dict[str, int] = {"ok": 0, "unavailable": 0}
    others: list[BaseException] = []
    stop = threading.Event()
    lock = threading.Lock()

    def load(worker: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            # Each call its own slot (staff), so none is ever full.
            request = lease_request(client_reference=f"w{worker}-{n}", staff_id=f"w{worker}-{n}")
            for _ in range(200):  # retry UNAVAILABLE until the failover is over
                try:
                    broker.create_lease(request)
                    with lock:
                        outcomes["ok"] += 1
                    break
                except BrokerError as exc:
                    if exc.reason is not Reason.STORE_UNAVAILABLE:
                        others.append(exc)
                        return
                    with lock:
                        outcomes["unavailable"] += 1
                    time.sleep(0.05)
            else:
                others.append(AssertionError(f"w{worker}-{n} never succeeded"))
                return

    threads = [threading.Thread(target=load, args=(i,)) for i in range(4)]
    try:
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        before = outcomes["ok"]
        redis_servers.stop(primary)  # killed: the sentinel promotes the replica after ~1 s
        redis_servers.wait_for(lambda: _primary_port(sentinel) == replica, "the failover", 30)
        after_switch = outcomes["ok"]
        redis_servers.wait_for(
            lambda: outcomes["ok"] > after_switch + 20, "calls on the new primary", 30
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)
        store.close()
    assert not others, others
    assert outcomes["ok"] > before
    assert outcomes["unavailable"] > 0  # calls during the switch were told to retry


def test_serve_through_sentinel(sentinel_setup) -> None:
    _, _, sentinel = sentinel_setup
    url = f"redis+sentinel://127.0.0.1:{sentinel}/mymaster"
    with ServeProcess(["--redis-url", url]) as serve:
        serve.wait_listening()
        assert any(
            "Redis behind Sentinel at redis+sentinel://127.0.0.1" in line for line in serve.lines
        )
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
