"""OpenTelemetry tracing (the otel extra): spans with method, reason and merchant id and
never client data; off without OTEL_*; without the extra, serve works all the same."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from support import MERCHANT, ServeProcess, clean_env, create_booking_request, create_request
from test_metrics_and_logs import SECRETS, secret_client

from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.wire.tracing import requested_exporters

pytest.importorskip("opentelemetry.sdk", reason="the otel extra is not installed")


class ServeWithStdout(ServeProcess):
    """ServeProcess whose stdout (where the console exporter writes) goes to a file."""

    def __init__(self, args: list[str], env: dict[str, str], stdout: Path) -> None:
        super().__init__(args, env)
        self.stdout = stdout

    def __enter__(self) -> ServeWithStdout:
        with self.stdout.open("w") as out:
            self.proc = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.PIPE,
                text=True,
                env=self.env,
            )
        threading.Thread(target=self._drain, daemon=True).start()
        return self


def book(target: str) -> tuple[str, str]:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.BookingServiceStub(channel)
        lease = stub.CreateLease(create_request(), timeout=30).lease
        with pytest.raises(grpc.RpcError):
            stub.CreateLease(create_request(client_reference="ref-2"), timeout=30)
        request = create_booking_request(lease.lease_id, secret_client())
        booking = stub.CreateBooking(request, timeout=30).booking
    return lease.lease_id, booking.booking_id


def spans_in(text: str) -> list[dict]:
    decoder, spans, at = json.JSONDecoder(), [], 0
    while (at := text.find("{", at)) >= 0:
        span, at = decoder.raw_decode(text, at)
        spans.append(span)
    return spans


def test_spans_carry_method_reason_and_merchant_never_the_client(tmp_path: Path) -> None:
    out = tmp_path / "spans.json"
    env = clean_env(OTEL_TRACES_EXPORTER="console", OTEL_SERVICE_NAME="broker-under-test")
    with ServeWithStdout([], env, out) as serve:
        serve.wait_listening()
        book(serve.target)
        assert serve.stop() == 0
    text = out.read_text()
    for value in SECRETS.values():
        assert value not in text
    spans = spans_in(text)
    rpc = {
        (s["attributes"].get("leasebroker.method"), s["attributes"].get("leasebroker.reason")): s
        for s in spans
        if "leasebroker.method" in s["attributes"]
    }
    assert set(rpc) == {
        ("CreateLease", "OK"),
        ("CreateLease", "SLOT_FULL"),
        ("CreateBooking", "OK"),
    }
    for span in rpc.values():
        assert span["kind"] == "SpanKind.SERVER"
        assert span["attributes"]["leasebroker.merchant_id"] == MERCHANT
        assert span["resource"]["attributes"]["service.name"] == "broker-under-test"
    booking_span = rpc["CreateBooking", "OK"]["context"]["span_id"]
    redis_children = [s for s in spans if s["parent_id"] == booking_span]
    assert redis_children, "the Redis instrumentation made no spans"
    assert any("tracing on (console)" in line for line in serve.lines)


def test_tracing_is_off_unless_otel_variables_ask() -> None:
    assert requested_exporters({}) == []
    assert requested_exporters({"OTEL_SERVICE_NAME": "x"}) == []
    assert requested_exporters({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}) == ["otlp"]
    assert requested_exporters({"OTEL_TRACES_EXPORTER": "otlp,console"}) == ["otlp", "console"]
    assert requested_exporters({"OTEL_TRACES_EXPORTER": "none"}) == []
    on_but_disabled = {"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"}
    assert requested_exporters(on_but_disabled) == []


@pytest.mark.parametrize("asked", [False, True])
def test_without_the_extra_serve_works(tmp_path: Path, asked: bool) -> None:
    """A package named opentelemetry that cannot be imported stands for a missing extra."""
    blocker = tmp_path / "opentelemetry"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('not installed')\n")
    env = clean_env(PYTHONPATH=str(tmp_path))
    if asked:
        env["OTEL_TRACES_EXPORTER"] = "console"
    with ServeProcess([], env) as serve:
        serve.wait_listening()
        book(serve.target)
        assert serve.stop() == 0
    said = [line for line in serve.lines if re.search("otel|tracing|opentelemetry", line, re.I)]
    if asked:
        assert len(said) == 1 and "pip install 'leasebroker[otel]'" in said[0]
    else:
        assert said == []
    assert not any("Traceback" in line for line in serve.lines)


IN_MEMORY = """
import json, grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from leasebroker.wire.tracing import setup_tracing
exporter = InMemorySpanExporter()
provider = setup_tracing(exporters=[exporter])
from leasebroker.testing import serving
from test_tracing import book
with serving() as target:
    book(target)
provider.shutdown()
print(json.dumps([dict(s.attributes or {}) for s in exporter.get_finished_spans()]))
"""


def run_traced(program: str, *args: str) -> tuple[str, list]:
    """Run ``program`` (which prints its spans as JSON last) in a fresh interpreter, in
    the tests' folder; its whole output and the spans it printed."""
    tests = str(Path(__file__).resolve().parent)
    done = subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tests,
        env=clean_env(PYTHONPATH=tests),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout, json.loads(done.stdout.splitlines()[-1])


def test_the_in_memory_exporter_sees_the_same_spans() -> None:
    stdout, attributes = run_traced(IN_MEMORY)
    marked = [a for a in attributes if "leasebroker.reason" in a]
    assert [a["leasebroker.reason"] for a in marked] == ["OK", "SLOT_FULL", "OK"]
    assert all(a["leasebroker.merchant_id"] == MERCHANT for a in marked)
    for value in SECRETS.values():
        assert value not in stdout


ON_REDIS = """
import json, sys, uuid, redis
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from leasebroker.wire.tracing import setup_tracing
exporter = InMemorySpanExporter()
provider = setup_tracing(exporters=[exporter])
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import connect
from leasebroker.testing import serving
from test_tracing import book
store = connect(sys.argv[1], pool_size=8)
prefix = "lbtest-trace-" + uuid.uuid4().hex[:8]
try:
    with serving(LeaseBroker(store.client, BrokerConfig(key_prefix=prefix))) as target:
        book(target)
finally:
    keys = list(store.client.scan_iter(match=prefix + ":*"))
    if keys:
        store.client.delete(*keys)
provider.shutdown()
print(json.dumps([
    {"name": s.name, "id": s.context.span_id, "parent": s.parent.span_id if s.parent else None,
     "attributes": dict(s.attributes or {})}
    for s in exporter.get_finished_spans()
]))
"""


def test_on_redis_the_pipelined_commands_are_child_spans_without_values() -> None:
    """On a single-node Redis the BookingService's commands go over its pipelined
    connection, not through redis-py's client: they still get their spans."""
    from conftest import real_redis_or_skip
    from support import REAL_REDIS_URL

    real_redis_or_skip().close()
    stdout, spans = run_traced(ON_REDIS, REAL_REDIS_URL)
    (booking,) = [s for s in spans if s["attributes"].get("leasebroker.method") == "CreateBooking"]
    children = [s for s in spans if s["parent"] == booking["id"]]
    names = [c["name"] for c in children]
    # (A Redis that does not have the script yet answers NOSCRIPT: loaded, sent again.)
    assert names in (["HGETALL", "EVALSHA"], ["HGETALL", "EVALSHA", "SCRIPT", "EVALSHA"])
    for child in children:
        attributes = child["attributes"]
        assert attributes["db.system"] == "redis"
        assert set(attributes["db.statement"].split()[1:]) == {"?"}
    for value in SECRETS.values():
        assert value not in stdout
