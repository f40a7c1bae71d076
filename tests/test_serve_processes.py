"""``serve --processes N``: N processes answer on one port (SO_REUSEPORT), reserved so
that an unrelated serve on that port still cannot listen; one admin service, one
inventory load, one scrape; SIGTERM stops them all, and a process that dies stops the
rest. The processes share the real Redis (the embedded store cannot be shared)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from conftest import delete_prefix, real_redis_or_skip
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support import (
    REAL_REDIS_URL,
    ServeProcess,
    availability_feed,
    clean_env,
    create_request,
    feed_entry,
    run_cli,
    run_main,
)

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.cli.processes import process_count, usable_cpus
from leasebroker.wire.ports import reserve_port

STARTED_RE = re.compile(r"started (?P<n>\d+) serve processes sharing \S+:\d+ .*: pids (?P<pids>.+)")
ALL_LISTENING_RE = re.compile(r"all (?P<n>\d+) serve processes are listening on \S+:(?P<port>\d+)")
ACCESS_RE = re.compile(r"leasebroker\.access\[(?P<pid>\d+)\]: BookingService\.CreateLease OK")
METRICS_RE = re.compile(r"metrics at (?P<url>http://\S+/metrics)")
CALLS = 40  # over fresh connections: all on one of two processes has odds of 2**-39


@pytest.fixture
def shared_store(key_prefix: str) -> Iterator[list[str]]:
    """Options for the real Redis under this test's prefix, deleted afterwards."""
    client = real_redis_or_skip()
    try:
        yield ["--redis-url", REAL_REDIS_URL, "--key-prefix", key_prefix]
    finally:
        delete_prefix(client, key_prefix)
        client.close()


def start(serve: ServeProcess) -> list[int]:
    """Wait until every process listens; their pids (sets ``serve.port``)."""
    pids = [int(pid) for pid in serve.wait_for(STARTED_RE)["pids"].split(", ")]
    serve.port = int(serve.wait_for(ALL_LISTENING_RE)["port"])
    return pids


def gone(pids: list[int], timeout: float = 20.0) -> bool:
    """Whether every process in ``pids`` has ended (and been reaped) within ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not [pid for pid in pids if Path(f"/proc/{pid}").exists()]:
            return True
        time.sleep(0.1)
    return False


def create_lease_over_a_new_connection(target: str, ref: str) -> None:
    # A fresh channel is a fresh TCP connection: the kernel picks a process for it.
    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as ch:
        pb_grpc.BookingServiceStub(ch).CreateLease(create_request(client_reference=ref), timeout=30)


def test_processes_share_the_port_one_admin_one_load_one_scrape_and_stop_together(
    shared_store, tmp_path
):
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps(availability_feed(feed_entry(spots_open=CALLS))))
    args = ["--processes", "2", "--inventory", str(feed), "--metrics-port", "0", *shared_store]
    with ServeProcess(args) as serve:
        metrics_url = serve.wait_for(METRICS_RE)["url"]  # the parent's, before it spawns
        pids = start(serve)
        assert len(set(pids)) == 2 and serve.proc.pid not in pids
        # Process 0 alone loads the feed and runs the admin service; the other got ready
        # only after the load, or a lease beyond the default capacity 1 would fail.
        assert sum("loaded 1 slots" in line for line in serve.lines) == 1, serve.lines
        assert sum("admin listening on" in line for line in serve.lines) == 1, serve.lines
        for n in range(CALLS):
            create_lease_over_a_new_connection(serve.target, f"ref-{n}")
        answered = [int(serve.wait_for(ACCESS_RE)["pid"]) for _ in range(CALLS)]
        assert set(answered) == set(pids), answered
        for _ in range(10):  # each process answers health checks on the shared port
            with grpc.insecure_channel(serve.target) as channel:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=10
                )
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with urllib.request.urlopen(metrics_url, timeout=10) as response:
            scrape = response.read().decode()
        rpcs = re.search(
            r'^leasebroker_rpcs_total\{code="OK",method="CreateLease",service="BookingService"\}'
            r" (\S+)$",
            scrape,
            re.M,
        )
        assert rpcs and float(rpcs.group(1)) == CALLS, scrape  # both processes' calls
        builds = re.findall(r"^leasebroker_build_info\{.*pid=\"(\d+)\"", scrape, re.M)
        assert sorted(map(int, builds)) == sorted(pids)
        assert serve.stop(signal.SIGTERM) == 0
        assert gone(pids), "a serve process outlived SIGTERM to its parent"
        serve.wait_for(re.compile(r"stopped all 2 serve processes"))


@pytest.mark.parametrize(("first", "second"), [(2, 1), (2, 2), (1, 2)])
def test_an_unrelated_serve_on_a_taken_port_cannot_listen(shared_store, first, second):
    with ServeProcess(["--processes", str(first), *shared_store]) as serve:
        if first > 1:
            start(serve)
        else:
            serve.wait_listening()
        result = run_cli(
            ["serve", "--host", "127.0.0.1", "--port", str(serve.port), "--admin-port", "-1",
             "--processes", str(second), *shared_store]
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        assert f"cannot listen on 127.0.0.1:{serve.port}" in result.stderr
        assert "Traceback" not in result.stderr
        # The running serve still answers, alone on its port.
        create_lease_over_a_new_connection(serve.target, "after")


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM])
def test_a_process_that_ends_stops_the_others_and_serve_fails(shared_store, signum):
    with ServeProcess(["--processes", "2", *shared_store]) as serve:
        pids = start(serve)
        os.kill(pids[1], signum)
        assert serve.proc.wait(timeout=30) == 1
        assert gone(pids)
        how = "was killed by SIGKILL" if signum == signal.SIGKILL else "exited with code 0"
        assert serve.wait_for(re.compile(rf"serve process 1 \(pid {pids[1]}\) {how}"))


def test_the_processes_stop_when_their_parent_is_killed(shared_store):
    with ServeProcess(["--processes", "2", *shared_store]) as serve:
        pids = start(serve)
        serve.proc.kill()
        serve.proc.wait(timeout=10)
        assert gone(pids), "orphaned serve processes"


def test_a_process_refused_by_redis_makes_serve_exit_2(shared_store):
    """What stops one serve (here a setting other than the stored one) stops them all,
    with the same exit code."""
    with ServeProcess(["--processes", "1", "--default-capacity", "2", *shared_store]) as serve:
        serve.wait_listening()
    result = run_cli(["serve", "--port", "0", "--admin-port", "-1", "--processes", "2",
                      "--default-capacity", "3", *shared_store])  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "default_capacity: 3 (given) vs 2 (stored)" in result.stderr


def test_the_embedded_store_cannot_be_shared(capsys, no_leasebroker_env, monkeypatch):
    assert run_main(["serve", "--port", "0", "--admin-port", "-1", "--processes", "2"]) == 2
    assert "--processes 2 needs --redis-url" in capsys.readouterr().err
    monkeypatch.setenv("LEASEBROKER_PROCESSES", "3")
    assert run_main(["serve", "--port", "0", "--admin-port", "-1"]) == 2
    assert "--processes 3 needs --redis-url" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1.5"])
def test_a_bad_process_count_is_a_usage_error(value, capsys):
    assert run_main(["serve", "--port", "0", "--processes", value]) == 2
    assert "--processes" in capsys.readouterr().err
    result = run_cli(["serve"], env=clean_env(LEASEBROKER_PROCESSES=value))
    assert result.returncode == 2 and "usage:" in result.stderr


def test_the_default_is_one_process_per_usable_cpu_with_redis():
    redis = argparse.Namespace(redis_url=REAL_REDIS_URL, processes=None)
    embedded = argparse.Namespace(redis_url=None, processes=None)
    assert process_count(redis) == usable_cpus()
    assert 1 <= usable_cpus() <= len(os.sched_getaffinity(0))
    assert process_count(embedded) == 1
    assert process_count(argparse.Namespace(redis_url=None, processes=1)) == 1
    assert process_count(argparse.Namespace(redis_url=REAL_REDIS_URL, processes=3)) == 3


def _grpc_server(port: int, reuse_port: int) -> grpc.Server | None:
    server = grpc.server(futures.ThreadPoolExecutor(1), options=[("grpc.so_reuseport", reuse_port)])
    try:
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
    except RuntimeError:
        return None
    return server if bound else None


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "localhost"])
def test_a_reserved_port_is_shared_only_with_so_reuseport(host):
    reservation = reserve_port(host, 0)
    sharing: list[grpc.Server | None] = []
    try:
        assert reservation.port > 0
        with pytest.raises(OSError):
            reserve_port(host, reservation.port)  # an unrelated serve --processes N
        assert _grpc_server(reservation.port, 0) is None  # an unrelated serve --processes 1
        sharing = [_grpc_server(reservation.port, 1) for _ in range(2)]
        assert all(sharing)  # the processes of this serve
        with pytest.raises(OSError):
            reserve_port(host, reservation.port)
    finally:
        reservation.close()
        for server in sharing:
            if server is not None:
                server.stop(None)


def test_a_port_someone_listens_on_cannot_be_reserved():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for host in ("127.0.0.1", "0.0.0.0"):
            with pytest.raises(OSError):
                reserve_port(host, port)
