"""The ``leasebroker`` command: serve, try a lease, load inventory.

Every option of ``serve`` (and the store options of the other commands) can
also be set by an environment variable ``LEASEBROKER_<OPTION>``, e.g.
``LEASEBROKER_REDIS_URL``; a flag on the command line wins.

Exit codes: 0 success; 1 the broker refused the request; 2 bad usage or
input; 3 the broker or its store could not be reached.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from leasebroker.config import BrokerConfig, parse_duration_ms

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEFAULT_PORT = 50051
DEFAULT_WORKERS = 32

log = logging.getLogger("leasebroker")


class CliError(Exception):
    """A failure to report on stderr with an exit code, without a traceback."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(f"LEASEBROKER_{name}", default)


def _duration_arg(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _instant_arg(text: str) -> datetime:
    """An ISO 8601 instant with a zone (``2026-12-01T10:00:00Z`` or ``+01:00``)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a zone, e.g. 2026-12-01T10:00:00Z")
    return value


def _add_store_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--redis-url",
        default=_env("REDIS_URL"),
        help="Redis to use, e.g. redis://127.0.0.1:6379/0"
        + ("" if required else " (default: an embedded in-process store)"),
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        default=_env("REDIS_CLUSTER", "") in ("1", "true", "yes"),
        help="treat --redis-url as a seed node of a Redis Cluster",
    )
    parser.add_argument("--key-prefix", default=_env("KEY_PREFIX", "lb"), help="key prefix")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leasebroker", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC BookingService")
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to bind")
    serve.add_argument(
        "--port",
        type=int,
        default=int(_env("PORT", str(DEFAULT_PORT))),
        help="port to bind (0 picks a free one)",
    )
    _add_store_options(serve, required=False)
    serve.add_argument(
        "--default-capacity",
        type=int,
        default=int(_env("DEFAULT_CAPACITY", "1")),
        help="spots per slot for merchants without inventory (0: none offered)",
    )
    serve.add_argument(
        "--default-hold",
        type=_duration_arg,
        default=_duration_arg(_env("DEFAULT_HOLD", "10m")),
        help="lease length when the request sets none (e.g. 10m)",
    )
    serve.add_argument(
        "--max-hold",
        type=_duration_arg,
        default=_duration_arg(_env("MAX_HOLD", "30m")),
        help="longest lease granted; longer requests are shortened (e.g. 30m)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=int(_env("WORKERS", str(DEFAULT_WORKERS))),
        help="concurrent request handlers (and Redis connections)",
    )
    serve.add_argument(
        "--inventory",
        default=_env("INVENTORY"),
        help="availability feed JSON to load before serving",
    )
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "INFO"))

    lease = commands.add_parser("lease", help="call the BookingService").add_subparsers(
        dest="lease_command", required=True
    )
    create = lease.add_parser("create", help="call CreateLease and print the lease")
    create.add_argument("--merchant", required=True)
    create.add_argument("--service", required=True)
    create.add_argument(
        "--start", required=True, type=_instant_arg, help="slot start, ISO 8601 with zone"
    )
    create.add_argument("--duration", required=True, type=_duration_arg, help="e.g. 30m")
    create.add_argument("--client-reference", required=True)
    create.add_argument("--staff", default="")
    create.add_argument("--room", default="")
    create.add_argument("--availability-tag", default="")
    create.add_argument("--expires", type=_instant_arg, help="requested lease_expiration_time")
    create.add_argument(
        "--target",
        default=_env("TARGET", f"127.0.0.1:{DEFAULT_PORT}"),
        help="broker address host:port",
    )
    create.add_argument("--timeout", type=float, default=10.0, help="seconds")

    inventory = commands.add_parser("inventory", help="manage slot inventory").add_subparsers(
        dest="inventory_command", required=True
    )
    load = inventory.add_parser("load", help="load an availability feed JSON file")
    load.add_argument("feed", help="path to the feed JSON")
    _add_store_options(load, required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from leasebroker.run import serve

            return serve(args)
        if args.command == "lease":
            from leasebroker.client import create_lease

            return create_lease(args)
        from leasebroker.run import load_inventory

        return load_inventory(args)
    except CliError as exc:
        print(f"leasebroker: {exc}", file=sys.stderr)
        return exc.code


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    """The broker config named by the options; CliError for an inconsistent one."""
    try:
        return BrokerConfig(
            default_capacity=getattr(args, "default_capacity", 1),
            default_hold_ms=getattr(args, "default_hold", 600_000),
            max_hold_ms=getattr(args, "max_hold", 1_800_000),
            key_prefix=args.key_prefix,
        )
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def unreachable(what: str, exc: Exception) -> CliError:
    return CliError(f"cannot reach {what}: {exc}", EXIT_UNREACHABLE)


def to_utc_text(epoch_ns: int) -> str:
    seconds, nanos = divmod(epoch_ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{nanos:09d}".rstrip("0") if nanos else "") + "Z"


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))
