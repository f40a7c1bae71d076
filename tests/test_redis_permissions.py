"""A Redis user that lacks a command the broker needs is caught at start, by name.

Each test starts its own redis-server (ACL users are server-wide) and stops it by PID.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_servers import OwnRedis, own_redis
from support import ServeProcess, clean_env, run_cli

from leasebroker.core.broker import LeaseBroker
from leasebroker.core.outcomes import Outcome
from leasebroker.core.permissions import REQUIRED_COMMANDS, acl_rule
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import connect

LUA = Path(__file__).resolve().parent.parent / "lua"
PASSWORD = "s3cret-for-tests"


@pytest.fixture
def server(tmp_path) -> Iterator[OwnRedis]:
    with own_redis(tmp_path) as own:
        yield own


def add_user(server: OwnRedis, name: str, *rules: str) -> str:
    """Create ACL user ``name`` with ``rules``; returns a redis:// URL that logs in as it."""
    admin = server.client()
    admin.execute_command("ACL", "SETUSER", name, "on", f">{PASSWORD}", *rules)
    admin.close()
    return f"redis://{name}:{PASSWORD}@127.0.0.1:{server.port}/0"


def test_every_command_the_scripts_call_is_required():
    called = set()
    for path in LUA.glob("*.lua"):
        called |= set(re.findall(r"redis\.p?call\('([A-Z]+)'", path.read_text()))
    assert called <= set(REQUIRED_COMMANDS), called - set(REQUIRED_COMMANDS)


def test_the_documented_acl_rule_suffices(server):
    rule = acl_rule("lb", user="broker", password=PASSWORD).split()
    assert rule[:2] == ["ACL", "SETUSER"]
    admin = server.client()
    admin.execute_command(*rule)
    admin.close()
    url = f"redis://broker:{PASSWORD}@127.0.0.1:{server.port}/0"
    store = connect(url, pool_size=2)
    broker = LeaseBroker(store.client, BrokerConfig(key_prefix="lb"))
    assert broker.denied_commands() == []
    store.close()
    with ServeProcess(["--redis-url", url], env=clean_env()) as serve:
        serve.wait_listening()
        result = run_cli(["lease", "create", "--target", serve.target, "--merchant", "m-1",
                          "--service", "cut", "--start", "2099-12-01T10:00:00Z",
                          "--duration", "30m", "--client-reference", "r-1"])  # fmt: skip
        assert result.returncode == 0, result.stderr
        for command in (
            ["inspect", "l.bS0x.AAAAAAAAAAAAAAAAAAAAAA"],
            ["keys", "--merchant", "m-1"],
        ):
            done = run_cli([*command, "--redis-url", url])
            assert done.returncode in (0, 4), done.stderr


@pytest.mark.parametrize("missing", ["xadd", "hincrby", "evalsha"])
def test_serve_refuses_a_user_without_a_needed_command(server, missing):
    url = add_user(server, "limited", "~*", "+@all", f"-{missing}")
    result = run_cli(["serve", "--port", "0", "--admin-port", "-1", "--redis-url", url])
    assert result.returncode == 2, result.stderr
    assert f"may not run {missing.upper()}" in result.stderr
    assert "Traceback" not in result.stderr
    # Nothing of the broker's was written (the probe cleans up after itself).
    assert server.client().keys("lb:*") == []


def test_the_store_commands_refuse_such_a_user_too(server, tmp_path):
    url = add_user(server, "limited", "~*", "+@all", "-xadd")
    feed = tmp_path / "feed.json"
    feed.write_text(
        '[{"merchant_id": "m", "service_id": "s", "start_sec": 4102444800, '
        '"duration_sec": 1800, "spots_open": 1}]'
    )
    for argv in (["inventory", "load", str(feed)], ["slots", "--merchant", "m"]):
        result = run_cli([*argv, "--redis-url", url])
        assert result.returncode == 2, result.stderr
        assert "may not run XADD" in result.stderr


def test_serve_starts_for_a_user_without_info_or_config(server):
    url = add_user(server, "quiet", "~*", "+@all", "-info", "-config")
    with ServeProcess(["--redis-url", url], env=clean_env()) as serve:
        serve.wait_listening()
        assert any("INFO is not allowed" in line for line in serve.lines), serve.lines
        assert any("maxmemory-policy" in line for line in serve.lines), serve.lines


def test_the_probe_refuses_a_command_it_cannot_try(broker):
    reply = broker.scripts["check_permissions"]([broker.keys.probe()], ["HSET", "FLUSHALL"])
    assert [int(reply[0]), int(reply[1])] == [Outcome.BAD_ARGUMENT, 2]


def test_a_user_that_may_not_even_ping_is_a_usage_error(server):
    url = add_user(server, "mute", "~*", "+@all", "-ping")
    result = run_cli(["inventory", "show", "--merchant", "m", "--redis-url", url])
    assert result.returncode == 2, result.stderr
    assert "refused the start-up checks" in result.stderr
    assert "Traceback" not in result.stderr
