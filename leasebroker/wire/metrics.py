"""Prometheus metrics of a serving broker, and the HTTP endpoint that exposes them.

Every metric lives in prometheus-client's default registry, created at import, so
that prometheus-client's multiprocess mode can be switched on without changing them:
with ``PROMETHEUS_MULTIPROC_DIR`` set before the process starts, each process writes
its values to files there and :func:`scrape_registry` adds them all up for one scrape
(docs/operations.md, "Metrics"). Gauges say how they combine across processes.

Label values are kinds only: services, methods, gRPC codes, reasons, exception
classes and the store's kind; never a merchant, client, lease or booking id.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import start_http_server

from leasebroker.core.observe import Observer, set_observer

RPC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
POOL_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

RPCS = Counter(
    "leasebroker_rpcs",
    "RPCs answered, by service, method and gRPC status code.",
    ["service", "method", "code"],
)
RPC_SECONDS = Histogram(
    "leasebroker_rpc_duration_seconds",
    "Time from the handler's start to its answer, by service and method.",
    ["service", "method"],
    buckets=RPC_BUCKETS,
)
OUTCOMES = Counter(
    "leasebroker_outcomes",
    "Broker outcomes by method and reason (OK, or the ErrorInfo reason: SLOT_FULL, ...).",
    ["service", "method", "reason"],
)
REDIS_ERRORS = Counter(
    "leasebroker_redis_errors",
    "Failed Redis calls, by what the caller got (STORE_UNAVAILABLE, DEADLINE_EXCEEDED, "
    "INTERNAL) and the redis-py exception class.",
    ["kind", "error"],
)
POOL_WAIT_SECONDS = Histogram(
    "leasebroker_redis_pool_wait_seconds",
    "Time a caller waited for a free pooled Redis connection.",
    buckets=POOL_BUCKETS,
)
SWEEP_PASSES = Counter(
    "leasebroker_sweeper_passes",
    "Expiry sweeper passes, by outcome (ok, failed).",
    ["outcome"],
)
LEASES_SWEPT = Counter(
    "leasebroker_sweeper_leases_swept",
    "Leases the expiry sweeper marked expired (each emitted lease.expired).",
)
SWEEP_LATENESS = Gauge(
    "leasebroker_sweeper_lateness_seconds",
    "At the start of the last sweeper pass, how long ago the oldest expiry not yet "
    "swept was (0: none was due).",
    multiprocess_mode="livemax",
)
BUILD_INFO = Gauge(
    "leasebroker_build_info",
    "Always 1: the version of leasebroker and the kind of store (embedded, redis, "
    "cluster, sentinel) this process serves.",
    ["version", "store"],
    multiprocess_mode="liveall",
)

OUTCOME_OK = "OK"


class PrometheusObserver(Observer):
    """The core's hooks (:mod:`leasebroker.core.observe`), counted in the metrics above."""

    def redis_error(self, reason: str, error: BaseException) -> None:
        REDIS_ERRORS.labels(reason, type(error).__name__).inc()

    def pool_wait(self, seconds: float) -> None:
        POOL_WAIT_SECONDS.observe(seconds)

    def sweep_pass(self, swept: int, lateness_s: float) -> None:
        SWEEP_PASSES.labels("ok").inc()
        LEASES_SWEPT.inc(swept)
        SWEEP_LATENESS.set(lateness_s)

    def sweep_failed(self) -> None:
        SWEEP_PASSES.labels("failed").inc()


def observe_core() -> None:
    """Count the core's hooks (Redis errors, pool waits, sweeper passes) in the metrics."""
    set_observer(PrometheusObserver())


# The children of RPCS, RPC_SECONDS and OUTCOMES for each (service, method, code,
# reason) seen: looked up once, not on every call (labels() takes a lock and checks
# its values each time). Few keys: every label is a kind, never an id.
_rpc_children: dict[tuple[str, str, str, str], tuple[Any, Any, Any]] = {}


def record_rpc(service: str, method: str, code: str, reason: str, seconds: float) -> None:
    key = (service, method, code, reason)
    children = _rpc_children.get(key)
    if children is None:
        children = _rpc_children[key] = (
            RPCS.labels(service, method, code),
            RPC_SECONDS.labels(service, method),
            OUTCOMES.labels(service, method, reason),
        )
    rpcs, duration, outcomes = children
    rpcs.inc()
    duration.observe(seconds)
    outcomes.inc()


def set_build_info(version: str, store: str) -> None:
    BUILD_INFO.labels(version, store).set(1)


def scrape_registry() -> CollectorRegistry:
    """What one scrape shows: this process's metrics, or with ``PROMETHEUS_MULTIPROC_DIR``
    set, every process's that writes there, added up."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return registry


def process_ended(pid: int) -> None:
    """In multiprocess mode, drop what a process that has ended left in the live gauges
    (``livemax``, ``liveall``); its counters and histograms keep counting in the sum."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


class MetricsServer:
    """The HTTP server of ``/metrics`` (any path answers the same)."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread
        self.port: int = server.server_port

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_metrics_server(host: str, port: int) -> MetricsServer:
    """Serve the metrics on ``http://host:port/metrics`` from a daemon thread (port 0
    picks a free one); OSError when the address cannot be bound."""
    server, thread = start_http_server(port, addr=host, registry=scrape_registry())
    return MetricsServer(server, thread)
