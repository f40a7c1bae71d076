"""OpenTelemetry tracing, when the ``otel`` extra is installed and ``OTEL_*`` asks for it.

``pip install 'leasebroker[otel]'`` brings the OpenTelemetry SDK, the OTLP exporter and
the maintained gRPC and Redis instrumentations. Tracing is on only when the standard
variables name a destination: ``OTEL_TRACES_EXPORTER`` (``otlp``, ``console``, ...; not
``none``), or ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``;
``OTEL_SDK_DISABLED=true`` turns it off. The exporters read the rest of ``OTEL_*``
themselves (endpoint, headers, protocol, service name, resource attributes).

Each RPC gets the gRPC instrumentation's server span, with the Redis commands it ran
(as ``EVALSHA ? ? ...``: the Redis instrumentation never records arguments) as
children. :func:`annotate` adds the method, the outcome reason and the merchant id to
it; nothing else from the request, so never client information.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.async_pipe import set_command_span

log = logging.getLogger(__name__)

BOOKING_SERVICE = pb.DESCRIPTOR.services_by_name["BookingService"].full_name

ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
EXPORTER_GROUP = "opentelemetry_traces_exporter"

# Set once tracing is on: returns the current span, or None.
_current_span: Callable[[], Any] | None = None


def requested_exporters(environ: dict[str, str] | None = None) -> list[str]:
    """The trace exporters the OTEL_* variables ask for; empty: tracing stays off."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    names = [n.strip() for n in env.get("OTEL_TRACES_EXPORTER", "").split(",") if n.strip()]
    if names:
        return [] if "none" in names else names
    return ["otlp"] if any(env.get(v) for v in ENDPOINT_VARIABLES) else []


def setup_tracing(exporters: list[Any] | None = None) -> Any:
    """Turn tracing on as the OTEL_* variables ask (or with the given span ``exporters``,
    for tests): install a tracer provider and instrument gRPC servers and Redis clients.
    Call it before any server starts. Returns the provider (call its ``shutdown()`` at
    exit to send what is left), or None when tracing stays off."""
    names = requested_exporters() if exporters is None else []
    if exporters is None and not names:
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.grpc import (
            GrpcAioInstrumentorServer,
            GrpcInstrumentorServer,
            filters,
        )
        from opentelemetry.instrumentation.redis import RedisInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_* asks for traces (%s), but the otel extra is not installed: "
            "pip install 'leasebroker[otel]'; serving without tracing",
            ", ".join(names),
        )
        return None
    attributes = {}
    if not os.environ.get("OTEL_SERVICE_NAME") and "service.name" not in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", ""
    ):
        attributes["service.name"] = "leasebroker"
    provider = TracerProvider(resource=Resource.create(attributes))
    if exporters is not None:
        for exporter in exporters:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
    for name in names:
        found = entry_points(group=EXPORTER_GROUP, name=name)
        if not found:
            log.warning("OTEL_TRACES_EXPORTER names %r, which is not installed; skipped", name)
            continue
        exporter = next(iter(found)).load()()
        processor = SimpleSpanProcessor if name == "console" else BatchSpanProcessor
        provider.add_span_processor(processor(exporter))
    trace.set_tracer_provider(provider)
    GrpcInstrumentorServer().instrument()  # the admin service's threaded server
    # The BookingService's grpc.aio server. Only its own methods (coroutines): this
    # instrumentation awaits what it wraps, and health and reflection are plain methods.
    GrpcAioInstrumentorServer(filter_=filters.service_name(BOOKING_SERVICE)).instrument()
    RedisInstrumentor().instrument()
    # The BookingService's pipelined connection does not go through redis-py's client:
    # its calls get the same spans here, named and sanitized as the instrumentation's.
    set_command_span(_redis_span(trace.get_tracer("leasebroker.redis")))
    global _current_span
    _current_span = trace.get_current_span
    log.info("tracing on (%s)", ", ".join(names) or "given exporters")
    return provider


# Longest db.statement of a Redis span, as the Redis instrumentation cuts it.
MAX_STATEMENT_CHARS = 1000


def _redis_span(tracer: Any) -> Callable[[tuple[Any, ...]], Any]:
    """Spans for the pipelined connection's commands, as the Redis instrumentation makes
    them: named by the command, with ``?`` for every argument (never a value)."""
    from opentelemetry.trace import SpanKind

    def span(command: tuple[Any, ...]) -> Any:
        name = command[0].decode() if isinstance(command[0], bytes) else str(command[0])
        statement = " ".join([name] + ["?"] * (len(command) - 1))[:MAX_STATEMENT_CHARS]
        attributes = {
            "db.system": "redis",
            "db.statement": statement,
            "db.redis.args_length": len(command),
        }
        return tracer.start_as_current_span(name, kind=SpanKind.CLIENT, attributes=attributes)

    return span


def annotate(method: str, reason: str, merchant_id: str) -> None:
    """Put an RPC's method, outcome reason and merchant id on its span (when tracing)."""
    if _current_span is None:
        return
    span = _current_span()
    if not span.is_recording():
        return
    span.set_attribute("leasebroker.method", method)
    span.set_attribute("leasebroker.reason", reason)
    if merchant_id:
        span.set_attribute("leasebroker.merchant_id", merchant_id)
