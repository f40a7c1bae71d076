"""The ``leasebroker`` command end to end: serve (a subprocess), lease create, exit codes.

Exit codes: 0 success, 1 refused by the broker, 2 bad usage or input, 3 unreachable.
``lease create`` runs in process through ``main([...])``; ``serve`` always runs in a
subprocess (it installs signal handlers and configures logging).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import (
    CLI,
    DURATION_S,
    START_S,
    ServeProcess,
    availability_feed,
    clean_env,
    feed_entry,
    run_cli,
    run_main,
)

from leasebroker.cli.parser import build_parser

START = datetime.fromtimestamp(START_S, tz=timezone.utc)
START_Z = START.strftime("%Y-%m-%dT%H:%M:%SZ")
# The same instant written in another zone: it must name the same slot.
START_PLUS_1 = START.astimezone(timezone(timedelta(hours=1))).isoformat()
STOPPED_RE = re.compile(r"\bstopped\b")
# serve for tests that expect it to exit at once: no fixed port even if it starts serving.
SERVE_NO_ADMIN = ["serve", "--port", "0", "--admin-port", "-1"]


# Tests see no LEASEBROKER_* variable unless they set one.
pytestmark = pytest.mark.usefixtures("no_leasebroker_env")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``leasebroker ARGV`` in process: (exit code, stdout, stderr)."""
    code = run_main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def lease_args(target: str, reference: str, *, start: str = START_Z, **options: str) -> list[str]:
    """``lease create`` arguments for the default slot; options override (``merchant="m"``)."""
    values = {
        "merchant": "merchant-1",
        "service": "haircut",
        "start": start,
        "duration": "30m",
        "client-reference": reference,
        "target": target,
        "timeout": "10",
        **{name.replace("_", "-"): value for name, value in options.items()},
    }
    return ["lease", "create", *[part for k, v in values.items() for part in (f"--{k}", v)]]


def assert_refused(result: tuple[int, str, str], reason: str) -> None:
    code, out, err = result
    assert code == 1, (out, err)
    assert f"RESOURCE_EXHAUSTED {reason}" in err
    assert out == ""


def health_status(target: str) -> int:
    with grpc.insecure_channel(target) as channel:
        request = health_pb2.HealthCheckRequest(service="")
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=10).status


@pytest.fixture
def embedded_server():
    """``leasebroker serve`` with the embedded store on a free port; killed afterwards."""
    with ServeProcess([]) as server:
        server.wait_listening()
        yield server


# --- serve + lease create ----------------------------------------------------------------


def test_embedded_serve_grants_a_lease_and_refuses_a_full_slot(embedded_server, capsys):
    assert any("embedded" in line for line in embedded_server.lines), embedded_server.lines

    code, out, err = cli(capsys, *lease_args(embedded_server.target, "R1"))
    assert code == 0, err
    lease = json.loads(out)
    assert lease["lease_id"].startswith("l.")
    assert lease["client_reference"] == "R1"
    assert (lease["merchant_id"], lease["service_id"]) == ("merchant-1", "haircut")
    assert lease["start_time"] == START_Z
    assert lease["duration_ms"] == DURATION_S * 1000
    assert lease["lease_expiration_time"].endswith("Z")

    # Default capacity 1; the same instant in +01:00 is the same slot.
    second = cli(capsys, *lease_args(embedded_server.target, "R2", start=START_PLUS_1))
    assert_refused(second, "SLOT_FULL")

    code, out, err = cli(capsys, *lease_args(embedded_server.target, "R3", merchant=""))
    assert code == 1
    assert "INVALID_ARGUMENT INVALID_FIELD" in err
    assert "lease.merchant_id" in err
    assert embedded_server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize(
    "bad",
    [
        {"duration": "banana"},
        {"start": START.strftime("%Y-%m-%dT%H:%M:%S")},  # no zone
        {"start": "tomorrow"},
        {"expires": "2026-12-01T10:00:00"},  # no zone
        {"timeout": "soon"},
    ],
    ids=lambda bad: f"{next(iter(bad))}={next(iter(bad.values()))}",
)
def test_lease_create_bad_argument_exits_2(capsys, bad):
    # An unreachable target: only argument parsing can produce exit code 2 here.
    code, out, err = cli(capsys, *lease_args("127.0.0.1:1", "R", **bad))
    assert code == 2
    assert f"--{next(iter(bad))}" in err
    assert out == ""


def test_lease_create_unreachable_target_exits_3(capsys):
    code, out, err = cli(capsys, *lease_args("127.0.0.1:1", "R"))
    assert code == 3
    assert "UNAVAILABLE" in err
    assert out == ""


# --- environment variables ----------------------------------------------------------------

LEASE_CREATE = ["lease", "create", "--merchant", "m", "--service", "s", "--start", START_Z]
LEASE_CREATE += ["--duration", "30m", "--client-reference", "r"]
SERVE = ["serve"]
# (variable, its value, command, option, parsed from the env, flag value, parsed from the flag)
ENV_CASES = [
    ("DEFAULT_CAPACITY", "2", SERVE, "default_capacity", 2, "5", 5),
    ("DEFAULT_HOLD", "90s", SERVE, "default_hold", 90_000, "2m", 120_000),
    ("MAX_HOLD", "45m", SERVE, "max_hold", 2_700_000, "1h", 3_600_000),
    ("PORT", "6000", SERVE, "port", 6000, "7000", 7000),
    ("ADMIN_PORT", "0", SERVE, "admin_port", 0, "-1", -1),
    ("HOST", "127.0.0.2", SERVE, "host", "127.0.0.2", "127.0.0.3", "127.0.0.3"),
    ("WORKERS", "3", SERVE, "workers", 3, "4", 4),
    ("KEY_PREFIX", "from-env", SERVE, "key_prefix", "from-env", "from-flag", "from-flag"),
    (
        "REDIS_URL",
        "redis://127.0.0.1:1/1",
        SERVE,
        "redis_url",
        "redis://127.0.0.1:1/1",
        "redis://127.0.0.1:1/2",
        "redis://127.0.0.1:1/2",
    ),
    ("INVENTORY", "env.json", SERVE, "inventory", "env.json", "flag.json", "flag.json"),
    ("LOG_LEVEL", "DEBUG", SERVE, "log_level", "DEBUG", "ERROR", "ERROR"),
    ("TARGET", "127.0.0.1:9", LEASE_CREATE, "target", "127.0.0.1:9", "[::1]:8", "[::1]:8"),
]


@pytest.mark.parametrize(
    ("name", "value", "base", "attr", "from_env", "flag", "from_flag"),
    [pytest.param(*case, id=case[0]) for case in ENV_CASES],
)
def test_env_var_is_honoured_and_a_flag_overrides_it(
    monkeypatch, name, value, base, attr, from_env, flag, from_flag
):
    option = "--" + attr.replace("_", "-")
    assert getattr(build_parser().parse_args(base), attr) != from_env
    monkeypatch.setenv(f"LEASEBROKER_{name}", value)
    assert getattr(build_parser().parse_args(base), attr) == from_env
    assert getattr(build_parser().parse_args([*base, option, flag]), attr) == from_flag


def test_env_var_redis_cluster_is_a_boolean(monkeypatch):
    assert build_parser().parse_args(["serve"]).redis_cluster is False
    monkeypatch.setenv("LEASEBROKER_REDIS_CLUSTER", "1")
    assert build_parser().parse_args(["serve"]).redis_cluster is True


@pytest.mark.parametrize(
    ("env", "flags", "granted"),
    [
        ({"LEASEBROKER_DEFAULT_CAPACITY": "2"}, [], 2),
        ({"LEASEBROKER_DEFAULT_CAPACITY": "2"}, ["--default-capacity", "1"], 1),
    ],
    ids=["env", "flag-wins"],
)
def test_serve_takes_capacity_from_env_unless_a_flag_is_given(capsys, env, flags, granted):
    with ServeProcess(flags, env=clean_env(**env)) as server:
        server.wait_listening()
        for i in range(granted):
            code, _out, err = cli(capsys, *lease_args(server.target, f"R{i}"))
            assert code == 0, err
        assert_refused(cli(capsys, *lease_args(server.target, "one-more")), "SLOT_FULL")
        assert server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("name", ["DEFAULT_CAPACITY", "DEFAULT_HOLD", "WORKERS"])
def test_bad_env_var_is_a_usage_error(name):
    result = run_cli(SERVE_NO_ADMIN, env=clean_env(**{f"LEASEBROKER_{name}": "banana"}))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


# --- serve: store and configuration errors -----------------------------------------------


# serve with an unreachable Redis starts and waits: tests/test_startup_without_redis.py.


@pytest.mark.parametrize(
    "flags",
    [
        ["--default-hold", "40m", "--max-hold", "30m"],
        ["--key-prefix", "a b"],
        ["--key-prefix", "lb:{x}"],
        ["--default-capacity", "-1"],
        ["--workers", "0"],
        ["--default-hold", "banana"],
        ["--port", "http"],
    ],
    ids=lambda flags: " ".join(flags),
)
def test_serve_with_inconsistent_config_exits_2(flags):
    result = run_cli([*SERVE_NO_ADMIN, *flags])
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "listening on" not in result.stderr


# --- serve --inventory -------------------------------------------------------------------


def write_feed(tmp_path, spots_open: int = 2):
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(availability_feed(feed_entry(spots_open=spots_open))))
    return path


def test_serve_loads_an_inventory_feed_in_embedded_mode(tmp_path, capsys):
    with ServeProcess(["--inventory", str(write_feed(tmp_path, spots_open=2))]) as server:
        server.wait_listening()
        assert any("loaded 1 slots" in line for line in server.lines), server.lines
        for reference in ("A", "B"):
            code, out, err = cli(capsys, *lease_args(server.target, reference))
            assert code == 0, err
            assert json.loads(out)["lease_id"].startswith("l.")
        assert_refused(cli(capsys, *lease_args(server.target, "C")), "SLOT_FULL")

        later = (START + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        not_in_feed = cli(capsys, *lease_args(server.target, "D", start=later))
        assert_refused(not_in_feed, "SLOT_NOT_OFFERED")
        assert server.stop(signal.SIGTERM) == 0


@pytest.mark.parametrize("feed", ["missing.json", "broken.json"])
def test_serve_with_an_unreadable_feed_exits_2(tmp_path, feed):
    (tmp_path / "broken.json").write_text("{not json")
    result = run_cli([*SERVE_NO_ADMIN, "--inventory", str(tmp_path / feed)])
    assert result.returncode == 2, result.stderr
    assert feed in result.stderr
    assert "listening on" not in result.stderr


def test_inventory_load_needs_a_redis_url(tmp_path, capsys):
    code, _out, err = cli(capsys, "inventory", "load", str(write_feed(tmp_path)))
    assert code == 2
    assert "--redis-url" in err


# --- stopping -----------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_serve_stops_cleanly_on_signal(embedded_server, sig):
    # A served call first: the server is up and its signal handlers are in place.
    assert health_status(embedded_server.target) == health_pb2.HealthCheckResponse.SERVING
    assert embedded_server.stop(sig) == 0, embedded_server.lines
    embedded_server.wait_for(STOPPED_RE)
    assert any(f"received {sig.name}" in line for line in embedded_server.lines)


def test_output_into_a_closed_pipe_ends_quietly():
    """`leasebroker keys | head`: the reader is gone; no traceback, exit 0."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read: the first write fails with EPIPE
    try:
        result = subprocess.run(
            [*CLI, "keys"], stdout=write_end, stderr=subprocess.PIPE, text=True,
            env=clean_env(), timeout=60,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
