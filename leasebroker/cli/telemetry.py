"""How ``serve`` can be watched: its log lines (text or JSON, UTC), the access log, the
Prometheus endpoint and OpenTelemetry tracing; the options that set them.

:func:`start_telemetry` runs first in ``serve`` (before any server starts, so the gRPC
instrumentation sees them); :meth:`Telemetry.watch_store` once the store is open;
:meth:`Telemetry.stop` at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import IO, Any

from pythonjsonlogger.json import JsonFormatter

import leasebroker
from leasebroker.cli.common import EXIT_USAGE, CliError
from leasebroker.cli.log_writer import BackgroundStreamHandler
from leasebroker.cli.options import LOG_LEVELS, bool_arg, env
from leasebroker.core.connections import observe_pool_waits
from leasebroker.wire import metrics, tracing
from leasebroker.wire.access import AccessLine, access_log, set_access_sink

log = logging.getLogger("leasebroker")

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# A JSON line's first fields, in order, and their names there.
JSON_FIELDS = ("asctime", "levelname", "name", "message")
JSON_NAMES = {"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"}
# With several serve processes on one stderr, each line says whose it is.
TEXT_FORMAT_PID = "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"
JSON_FIELDS_PID = (*JSON_FIELDS, "process")


def log_time(created: float) -> str:
    """A log line's time (a record's ``created``, a ``time.time()``):
    ``2026-12-01T10:00:00.123Z``, UTC, to the millisecond, with the zone."""
    moment = datetime.fromtimestamp(created, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def access_values(line: AccessLine) -> dict[str, Any]:
    """What a format string may name of an access line, with the values its record has."""
    return {
        "asctime": log_time(line.created),
        "levelname": logging.getLevelName(logging.INFO),
        "name": access_log.name,
        "message": line.message,
        "process": os.getpid(),
    }


class TextFormatter(logging.Formatter):
    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)
        self.line_format = fmt

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return log_time(record.created)

    def format_access(self, line: AccessLine) -> str | None:
        """The access line's text, as :meth:`format` would make it of its record
        (None: the format names something else of the record; format that)."""
        try:
            return self.line_format % access_values(line)
        except (KeyError, TypeError, ValueError):
            return None


class JsonLineFormatter(JsonFormatter):
    """One JSON object per line: time, level, logger, message (and the process id with
    ``pid``), and the record's extras (an access line's service, method, code, reason,
    duration_ms and ids)."""

    def __init__(self, *, pid: bool = False) -> None:
        self.fields = JSON_FIELDS_PID if pid else JSON_FIELDS
        fmt = " ".join(f"%({field})s" for field in self.fields)
        super().__init__(fmt, rename_fields=JSON_NAMES)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return log_time(record.created)

    def format_access(self, line: AccessLine) -> str:
        """The access line's JSON, as :meth:`format` would make it of its record: the
        fields in their order, renamed, then the record's extras."""
        values = access_values(line)
        data = {JSON_NAMES.get(field, field): values[field] for field in self.fields}
        data.update(line.extra)
        return self.serialize_log_record(self.process_log_record(data))


def log_format_arg(text: str) -> str:
    if text.lower() not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_FORMATS)}")
    return text.lower()


def metrics_port_arg(text: str) -> int:
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from exc
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535: {text!r}")
    return value


def add_telemetry_options(serve: argparse.ArgumentParser) -> None:
    """--log-format, --access-log, --metrics-host, --metrics-port (``--log-level`` is
    the parser's)."""
    serve.add_argument(
        "--log-format",
        type=log_format_arg,
        default=env("LOG_FORMAT", "text"),
        help="text, or json: one object per line (times in UTC either way; default: text; "
        "env LEASEBROKER_LOG_FORMAT)",
    )
    serve.add_argument(
        "--access-log",
        type=bool_arg,
        metavar="on|off",
        default=env("ACCESS_LOG", "on"),
        help="one INFO line per RPC: on or off (default: on; env LEASEBROKER_ACCESS_LOG)",
    )
    serve.add_argument(
        "--metrics-host",
        default=env("METRICS_HOST", "127.0.0.1"),
        help="address of the Prometheus endpoint (default: 127.0.0.1; "
        "env LEASEBROKER_METRICS_HOST)",
    )
    serve.add_argument(
        "--metrics-port",
        type=metrics_port_arg,
        default=env("METRICS_PORT"),
        help="serve Prometheus metrics on http://HOST:PORT/metrics (0 picks a free port; "
        "default: no metrics; env LEASEBROKER_METRICS_PORT)",
    )


def configure_logging(
    level: str, log_format: str, stream: IO[str] | None = None, *, pid: bool = False
) -> None:
    """Every log line to ``stream`` (stderr) at ``level`` and above, as text or JSON,
    with the process id when ``pid`` (``name[PID]:``, JSON ``"pid"``). A bad level or
    format is a usage error (exit 2)."""
    level = str(level).upper()
    if level not in LOG_LEVELS:
        raise CliError(f"--log-level {level!r} is not one of {', '.join(LOG_LEVELS)}", EXIT_USAGE)
    if log_format not in LOG_FORMATS:
        raise CliError(f"--log-format {log_format!r} is not text or json", EXIT_USAGE)
    # One thread writes every line; an RPC's access line without the RPC waiting for it.
    handler = BackgroundStreamHandler(
        stream if stream is not None else sys.stderr, background=(access_log.name,)
    )
    if log_format == "json":
        handler.setFormatter(JsonLineFormatter(pid=pid))
    else:
        handler.setFormatter(TextFormatter(TEXT_FORMAT_PID if pid else TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # The serving threads hand the writer only an access line's values.
    set_access_sink(handler.take_access)


def store_kind(args: argparse.Namespace) -> str:
    """embedded, redis, cluster or sentinel: the store label of leasebroker_build_info."""
    url = getattr(args, "redis_url", None) or ""
    if not url:
        return "embedded"
    if getattr(args, "redis_cluster", False):
        return "cluster"
    return "sentinel" if url.lower().startswith("redis+sentinel") else "redis"


@dataclass
class Telemetry:
    """What :func:`start_telemetry` started, to stop at the end."""

    metrics_server: metrics.MetricsServer | None = None
    tracer_provider: Any = None

    def watch_store(self, client: Any) -> None:
        """Time the waits for a pooled Redis connection of the opened store."""
        observe_pool_waits(client)

    def stop(self) -> None:
        if self.tracer_provider is not None:
            self.tracer_provider.shutdown()  # sends the spans still waiting
        if self.metrics_server is not None:
            self.metrics_server.stop()


def start_telemetry(args: argparse.Namespace, *, pid: bool = False) -> Telemetry:
    """Logging, the access log, metrics and tracing as the options and OTEL_* ask;
    ``pid``: log lines carry the process id (one of several serve processes)."""
    configure_logging(args.log_level, getattr(args, "log_format", "text"), pid=pid)
    if not getattr(args, "access_log", True):
        access_log.setLevel(logging.WARNING)
    metrics.observe_core()
    metrics.set_build_info(leasebroker.__version__, store_kind(args))
    telemetry = Telemetry(tracer_provider=tracing.setup_tracing())
    try:
        telemetry.metrics_server = start_metrics_endpoint(args)
    except CliError:
        telemetry.stop()
        raise
    return telemetry


def start_metrics_endpoint(args: argparse.Namespace) -> metrics.MetricsServer | None:
    """The Prometheus endpoint ``--metrics-port`` asks for (None without it); a port
    that cannot be bound is a usage error (exit 2)."""
    port = getattr(args, "metrics_port", None)
    if port is None:
        return None
    host = args.metrics_host
    try:
        server = metrics.start_metrics_server(host, port)
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port} (metrics): {exc}", EXIT_USAGE) from exc
    shown = f"[{host}]" if ":" in host else host
    log.info("metrics at http://%s:%d/metrics", shown, server.port)
    return server
