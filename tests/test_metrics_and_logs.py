"""serve can be watched: /metrics over HTTP, one access line per RPC (text or JSON, UTC,
never client data), usage errors for bad log options, outages logged once, and a
Grafana dashboard that names only metrics that exist."""

from __future__ import annotations

import json
import logging
import re
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import real_redis_or_skip
from support import (
    MERCHANT,
    REAL_REDIS_URL,
    ServeProcess,
    clean_env,
    create_booking_request,
    create_request,
    run_cli,
)

import leasebroker
from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.api.v1 import admin_pb2, admin_pb2_grpc
from leasebroker.core.background import OutageLog, Periodic
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.connections import observe_pool_waits
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.observe import set_observer
from leasebroker.core.store import connect
from leasebroker.wire import metrics
from leasebroker.wire.access import call_ids

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "leasebroker.json"
METRICS_RE = re.compile(r"metrics at (?P<url>http://\S+/metrics)")
ADMIN_RE = re.compile(r"admin listening on \S+:(?P<port>\d+)")

# A client nobody else has: none of these may ever appear in a log line.
SECRETS = {
    "given_name": "Zephyrine",
    "family_name": "Quillfeather",
    "telephone": "+44 20 7946 0999",
    "email": "zq.private@example.org",
    "street": "17 Hiddenmews Lane",
    "postal_code": "ZZ9 9QQ",
}


def secret_client() -> pb.ClientInformation:
    info = pb.ClientInformation(
        given_name=SECRETS["given_name"],
        family_name=SECRETS["family_name"],
        telephone=SECRETS["telephone"],
        email=SECRETS["email"],
    )
    info.address.street_address = SECRETS["street"]
    info.address.postal_code = SECRETS["postal_code"]
    return info


def traffic(serve: ServeProcess) -> dict[str, str]:
    """A lease, a SLOT_FULL refusal, a booking with the secret client, an admin GetLease
    and a malformed booking id; the ids."""
    with grpc.insecure_channel(serve.target) as channel:
        stub = pb_grpc.BookingServiceStub(channel)
        lease = stub.CreateLease(create_request(), timeout=30).lease
        with pytest.raises(grpc.RpcError) as full:
            stub.CreateLease(create_request(client_reference="ref-2"), timeout=30)
        assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        request = create_booking_request(lease.lease_id, secret_client())
        booking = stub.CreateBooking(request, timeout=30).booking
    with grpc.insecure_channel(f"127.0.0.1:{serve.admin_port}") as channel:
        admin = admin_pb2_grpc.LeaseAdminStub(channel)
        admin.GetLease(admin_pb2.GetLeaseRequest(lease_id=lease.lease_id), timeout=30)
    return {"lease_id": lease.lease_id, "booking_id": booking.booking_id}


def start(serve: ServeProcess) -> None:
    """Wait for the admin port, the metrics URL (when asked for) and the BookingService."""
    serve.admin_port = 0
    serve.metrics_url = ""
    wanted = {"admin", "metrics"} if "--metrics-port" in serve.args else {"admin"}
    while wanted:
        match = serve.wait_for(re.compile(f"{ADMIN_RE.pattern}|{METRICS_RE.pattern}"))
        if match["port"]:
            serve.admin_port = int(match["port"])
            wanted.discard("admin")
        else:
            serve.metrics_url = match["url"]
            wanted.discard("metrics")
    # "listening on" comes before "admin listening on"; it is in the lines already.
    found = [
        m for line in serve.lines if (m := re.search(r"(?<!admin )listening on \S+:(\d+)", line))
    ]
    serve.port = int(found[0][1])


def finish(serve: ServeProcess) -> list[str]:
    """Stop serve; every line it wrote to stderr."""
    assert serve.stop() == 0
    assert serve.proc is not None and serve.proc.stderr is not None
    serve.wait_for(re.compile(r"stopped"), timeout=10)
    return serve.lines


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        return reply.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    """The value of one sample of an exposition text (0 when it is not there)."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        got_name, _, rest = head.partition("{")
        if got_name != name:
            continue
        pairs = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if all(pairs.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


@pytest.fixture(scope="module")
def watched() -> dict[str, Any]:
    """One serve with metrics and JSON logs, after some traffic: the scrape, the log
    lines and the ids."""
    args = ["--metrics-port", "0", "--log-format", "json", "--sweep-interval", "100ms"]
    with ServeProcess(args) as serve:
        start(serve)
        ids = traffic(serve)
        serve.wait_for(re.compile("GetLease"))
        deadline = time.monotonic() + 10
        while not sample(text := scrape(serve.metrics_url), "leasebroker_sweeper_passes_total"):
            assert time.monotonic() < deadline, "no sweeper pass counted"
            time.sleep(0.1)
        lines = finish(serve)
    return {"metrics": text, "lines": lines, **ids}


def test_metrics_count_rpcs_outcomes_sweeps_and_the_build(watched: dict[str, Any]) -> None:
    text = watched["metrics"]
    booking = {"service": "BookingService"}
    assert sample(text, "leasebroker_rpcs_total", **booking, method="CreateLease", code="OK") == 1
    assert (
        sample(
            text,
            "leasebroker_rpcs_total",
            **booking,
            method="CreateLease",
            code="RESOURCE_EXHAUSTED",
        )
        == 1
    )
    assert sample(text, "leasebroker_outcomes_total", method="CreateLease", reason="SLOT_FULL") == 1
    assert sample(text, "leasebroker_outcomes_total", method="CreateBooking", reason="OK") == 1
    assert sample(text, "leasebroker_rpcs_total", service="LeaseAdmin", method="GetLease") == 1
    assert sample(text, "leasebroker_rpc_duration_seconds_count", method="CreateLease") == 2
    assert sample(text, "leasebroker_sweeper_passes_total", outcome="ok") >= 1
    assert "leasebroker_sweeper_lateness_seconds " in text
    version = leasebroker.__version__
    assert sample(text, "leasebroker_build_info", version=version, store="embedded") == 1


def test_metric_labels_never_hold_ids(watched: dict[str, Any]) -> None:
    text = watched["metrics"]
    for secret in (MERCHANT, watched["lease_id"], watched["booking_id"], "ref-1", "ref-2"):
        assert secret not in text


def test_one_json_access_line_per_rpc_in_utc(watched: dict[str, Any]) -> None:
    records = [json.loads(line) for line in watched["lines"]]
    for record in records:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"]), record
        assert {"level", "logger", "message"} <= set(record)
    access = [r for r in records if r["logger"] == "leasebroker.access"]
    assert [(r["method"], r["code"], r["reason"]) for r in access] == [
        ("CreateLease", "OK", "OK"),
        ("CreateLease", "RESOURCE_EXHAUSTED", "SLOT_FULL"),
        ("CreateBooking", "OK", "OK"),
        ("GetLease", "OK", "OK"),
    ]
    assert all(r["level"] == "INFO" and r["merchant_id"] == MERCHANT for r in access)
    assert access[0]["lease_id"] == watched["lease_id"]
    assert access[2]["booking_id"] == watched["booking_id"]
    assert access[3]["service"] == "LeaseAdmin"
    assert all(isinstance(r["duration_ms"], float) for r in access)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_no_log_line_names_the_client(log_format: str) -> None:
    with ServeProcess(["--log-format", log_format, "--log-level", "DEBUG"]) as serve:
        start(serve)
        ids = traffic(serve)
        lines = finish(serve)
    access = [line for line in lines if "CreateBooking" in line]
    assert len(access) == 1 and ids["booking_id"] in access[0]
    if log_format == "text":
        assert re.match(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO leasebroker\.access", access[0]
        )
    for line in lines:
        for value in SECRETS.values():
            assert value not in line, (value, line)
            assert value.split()[-1] not in line, (value, line)


def test_access_log_off() -> None:
    with ServeProcess(["--access-log", "off"]) as serve:
        start(serve)
        traffic(serve)
        lines = finish(serve)
    assert lines and not any("leasebroker.access" in line for line in lines)


@pytest.mark.parametrize(
    ("args", "variables"),
    [
        (["--log-format", "xml"], {}),
        (["--log-level", "LOUD"], {}),
        (["--access-log", "maybe"], {}),
        (["--metrics-port", "70000"], {}),
        ([], {"LEASEBROKER_LOG_FORMAT": "yaml"}),
        ([], {"LEASEBROKER_METRICS_PORT": "nine"}),
    ],
)
def test_bad_log_and_metrics_options_are_usage_errors(
    args: list[str], variables: dict[str, str]
) -> None:
    done = run_cli(["serve", "--port", "0", "--admin-port", "-1", *args], clean_env(**variables))
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "usage:" in done.stderr


def test_a_metrics_port_in_use_is_a_usage_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_cli(["serve", "--port", "0", "--admin-port", "-1", "--metrics-port", str(port)])
    assert done.returncode == 2, done.stderr
    assert "(metrics)" in done.stderr and "Traceback" not in done.stderr


def test_the_dashboard_names_only_metrics_that_exist(watched: dict[str, Any]) -> None:
    exposed = {
        line.split("{")[0].split(" ")[0]
        for line in watched["metrics"].splitlines()
        if line and not line.startswith("#")
    }
    # A family with no sample yet still has its # TYPE line: its sample names exist too.
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", watched["metrics"], re.M):
        suffixes = ["_bucket", "_count", "_sum"] if kind == "histogram" else [""]
        exposed |= {name + s for s in suffixes}
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"])
    functions = {"sum", "rate", "histogram_quantile", "max", "by", "label_values"}
    named = set()
    for expr in exprs:
        bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
        named |= {w for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare) if w not in functions}
    named -= {"le", "code", "method", "reason", "kind", "error", "outcome", "version", "store"}
    named -= {"job"}
    assert named, exprs
    assert named <= exposed, named - exposed
    titles = " ".join(p["title"] for p in dashboard["panels"])
    for topic in ("code", "p50", "p99", "SLOT_FULL", "Redis errors", "Sweeper lag"):
        assert topic in titles


# ---------------------------------------------------------------- in process


def test_redis_errors_are_counted_by_kind_and_class() -> None:
    metrics.observe_core()
    try:
        store = connect("redis://127.0.0.1:1/0", pool_size=2)
        broker = LeaseBroker(store.client)
        before = metrics.REGISTRY.get_sample_value(
            "leasebroker_redis_errors_total",
            {"kind": "STORE_UNAVAILABLE", "error": "ConnectionError"},
        )
        with pytest.raises(BrokerError) as caught:
            broker.now_ms()
        assert caught.value.reason is Reason.STORE_UNAVAILABLE
        after = metrics.REGISTRY.get_sample_value(
            "leasebroker_redis_errors_total",
            {"kind": "STORE_UNAVAILABLE", "error": "ConnectionError"},
        )
        assert after == (before or 0) + 1
    finally:
        set_observer(None)
        store.close()


def test_waits_for_a_pooled_connection_are_timed() -> None:
    real_redis_or_skip()
    metrics.observe_core()
    store = connect(REAL_REDIS_URL, pool_size=2)
    try:
        assert observe_pool_waits(store.client) == 1
        before = metrics.REGISTRY.get_sample_value("leasebroker_redis_pool_wait_seconds_count")
        for _ in range(3):
            store.client.ping()
        after = metrics.REGISTRY.get_sample_value("leasebroker_redis_pool_wait_seconds_count")
        assert after == (before or 0) + 3
    finally:
        set_observer(None)
        store.close()


def test_call_ids_read_only_ids_never_client_fields() -> None:
    lease_id = "l.bWVyY2hhbnQtMQ.AAAAAAAAAAAAAAAAAAAAAA"
    request = create_booking_request(lease_id, secret_client())
    assert call_ids(request) == {"merchant_id": MERCHANT, "lease_id": lease_id}


def test_an_outage_is_logged_once_with_a_count_and_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger("test.outage")
    outage = OutageLog(logger, "lease store")
    with caplog.at_level(logging.WARNING, logger="test.outage"):
        for _ in range(50):
            outage.failed("does not answer: down")
        outage.recovered("answers again")
        outage.recovered("answers again")
    assert [r.getMessage() for r in caplog.records] == [
        "lease store does not answer: down",
        "lease store answers again after 0 s (50 failures)",
    ]


def test_a_failing_periodic_task_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    def task() -> None:
        calls.append(1)
        if len(calls) <= 10:
            raise BrokerError(Reason.STORE_UNAVAILABLE, "the lease store is unreachable")

    thread = Periodic("lease-sweeper", task, 0.01)
    with caplog.at_level(logging.WARNING, logger="leasebroker.core.background"):
        thread.start()
        while len(calls) < 15:
            thread.join(0.01)
        thread.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "lease-sweeper failed: STORE_UNAVAILABLE: the lease store is unreachable"
    assert re.fullmatch(r"lease-sweeper works again after \d+ s \(10 failures\)", messages[1])
    assert len(messages) == 2


def test_processes_sharing_a_multiprocess_directory_are_one_scrape(tmp_path: Path) -> None:
    """prometheus-client's multiprocess mode: two serve processes write to one
    PROMETHEUS_MULTIPROC_DIR, and the one that serves /metrics shows both's calls."""
    env = clean_env(PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    with ServeProcess(["--metrics-port", "0"], env=env) as first:
        start(first)
        with ServeProcess([], env=env) as second:
            start(second)
            for serve in (first, second):
                with grpc.insecure_channel(serve.target) as channel:
                    pb_grpc.BookingServiceStub(channel).CreateLease(create_request(), timeout=30)
            text = scrape(first.metrics_url)
    ok = {"service": "BookingService", "method": "CreateLease", "code": "OK"}
    assert sample(text, "leasebroker_rpcs_total", **ok) == 2
