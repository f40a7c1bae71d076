"""Processes that cannot disagree: the deciding settings are stored once per key prefix.

The first serve on a prefix stores its settings; later processes take them, and one
given a different value refuses to start, naming it. `leasebroker config show|set`
reads and changes them; running processes reload them.
"""

from __future__ import annotations

import json
import re

import pytest
from support import ServeProcess, clean_env, run_cli

from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.stored_settings import DECIDING_FIELDS


def test_the_first_settle_stores_and_later_ones_take_the_stored(make_broker):
    first = make_broker(default_capacity=2, default_hold_ms=60_000)
    assert first.settle_settings(first.config, store=True) == first.config
    second = make_broker(default_capacity=5)
    stored = second.settle_settings(second.config, store=True)
    assert stored is not None
    assert (stored.default_capacity, stored.default_hold_ms) == (2, 60_000)


def test_nothing_is_stored_unless_asked(make_broker):
    broker = make_broker()
    assert broker.settle_settings(broker.config, store=False) is None
    assert broker.stored_settings() is None


def test_reload_takes_changed_settings(make_broker):
    serving = make_broker(default_capacity=1)
    serving.settle_settings(serving.config, store=True)
    assert serving.reload_settings() is False
    operator = make_broker()
    operator.replace_settings(
        BrokerConfig(key_prefix=operator.config.key_prefix, max_hold_ms=2 * 60 * 60_000)
    )
    assert serving.reload_settings() is True
    assert serving.config.max_hold_ms == 2 * 60 * 60_000


def test_stored_settings_that_are_not_valid_are_named(make_broker, redis_client):
    broker = make_broker()
    for bad in ('{"default_capacity": -1}', "not json", '{"colour": 1}', "null", "5", "[]"):
        redis_client.set(broker.keys.settings(), bad)
        with pytest.raises(BrokerError) as refused:
            broker.stored_settings()
        assert refused.value.reason is Reason.INTERNAL
        assert "config set" in refused.value.message


def test_serve_stores_its_settings_and_a_differing_one_refuses_to_start(store_args, real_broker):
    with ServeProcess([*store_args, "--default-capacity", "2"], env=clean_env()) as one:
        one.wait_listening()
    shown = run_cli(["config", "show", "--json", *store_args])
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["stored"] is True and data["settings"]["default_capacity"] == 2
    assert set(data["settings"]) == set(DECIDING_FIELDS)

    refused = run_cli(["serve", "--port", "0", "--admin-port", "-1", *store_args,
                       "--default-capacity", "3"])  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert "default_capacity: 3 (given) vs 2 (stored)" in refused.stderr
    assert "Traceback" not in refused.stderr

    env = clean_env(LEASEBROKER_DEFAULT_CAPACITY="4")
    by_variable = run_cli(["serve", "--port", "0", "--admin-port", "-1", *store_args], env)
    assert by_variable.returncode == 2 and "4 (given) vs 2 (stored)" in by_variable.stderr

    with ServeProcess(store_args, env=clean_env()) as two:
        two.wait_listening()
        assert any(re.search(r"default capacity 2\b", line) for line in two.lines), two.lines


def test_operator_commands_take_the_stored_settings(store_args, real_broker):
    assert run_cli(["config", "set", "--default-capacity", "3", *store_args]).returncode == 0
    result = run_cli(["slots", "--merchant", "m-1", "--day", "2099-12-01", "--json",
                      *store_args])  # fmt: skip
    assert result.returncode == 0, result.stderr
    clash = run_cli(["slots", "--merchant", "m-1", "--default-capacity", "1", *store_args])
    assert clash.returncode == 2 and "1 (given) vs 3 (stored)" in clash.stderr


def test_config_set_validates_and_needs_a_setting(store_args, real_broker):
    none = run_cli(["config", "set", *store_args])
    assert none.returncode == 2 and "at least one setting" in none.stderr
    bad = run_cli(["config", "set", "--max-hold", "1m", *store_args])
    assert bad.returncode == 2 and "maximum hold" in bad.stderr
    assert real_broker.stored_settings() is None
    done = run_cli(["config", "set", "--default-hold", "5m", *store_args])
    assert done.returncode == 0, done.stderr
    assert real_broker.stored_settings().default_hold_ms == 5 * 60_000
