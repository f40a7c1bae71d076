"""The ``leasebroker`` command: serve, try a lease, load inventory, operate on the store.

Every option of ``serve`` (and the store options of the other commands) can
also be set by an environment variable ``LEASEBROKER_<OPTION>``, e.g.
``LEASEBROKER_REDIS_URL``; a flag on the command line wins.

The operator commands (inspect, slots, leases, bookings, release, extend,
events, keys, sweep, inventory show/set) talk to Redis directly; their logic
is in :mod:`leasebroker.operator_cli`.

Exit codes: 0 success; 1 the broker refused the request; 2 bad usage or
input; 3 the broker or its store could not be reached; 4 no such lease or
booking.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import date, datetime, timezone
from typing import Any

from leasebroker.config import BrokerConfig, parse_duration_ms

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_NOT_FOUND = 4
DEFAULT_PORT = 50051
DEFAULT_ADMIN_PORT = 50052
DEFAULT_WORKERS = 32

log = logging.getLogger("leasebroker")

_STREAM_ID_RE = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")


class CliError(Exception):
    """A failure to report on stderr with an exit code, without a traceback."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _env(name: str, default: str | None = None) -> str | None:
    """The option's default from ``LEASEBROKER_<NAME>``, as text: argparse converts string
    defaults with the option's ``type``, so a bad value is a usage error (exit 2)."""
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


def _count_arg(text: str) -> int:
    """A whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def _positive_duration_arg(text: str) -> int:
    value = _duration_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than nothing: {text!r}")
    return value


def _day_arg(text: str) -> date:
    """A UTC calendar day, ``2026-12-01``."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from exc


def _stream_id_arg(text: str) -> str:
    """A Redis stream entry id: ``<ms>-<seq>`` or ``<ms>``."""
    if not _STREAM_ID_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a stream id (e.g. 1764583200000-0): {text!r}")
    return text


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


def _add_operator_command(
    commands: Any, name: str, help: str, *, operator: str | None = None
) -> argparse.ArgumentParser:
    """A command that works on the store directly: the store options, ``--json``, and
    the name :func:`leasebroker.operator_cli.run` dispatches on."""
    parser = commands.add_parser(name, help=help, description=help)
    _add_store_options(parser, required=True)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(operator=operator or name)
    return parser


def _add_merchant_option(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--merchant", required=required, help="merchant id")


def _add_day_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--day", type=_day_arg, help=help + " (YYYY-MM-DD, UTC)")


# The broker settings (BrokerConfig) as options: flag, env name, type, default, help.
_BROKER_OPTIONS: tuple[tuple[str, str, Any, str, str], ...] = (
    ("--default-capacity", "DEFAULT_CAPACITY", _count_arg, "1",
     "spots per slot for merchants without inventory (0: none offered)"),
    ("--default-hold", "DEFAULT_HOLD", _duration_arg, "10m",
     "lease length when the request sets none (e.g. 10m)"),
    ("--max-hold", "MAX_HOLD", _duration_arg, "30m",
     "longest lease granted; longer requests and extensions are capped (e.g. 30m)"),
    ("--record-retention", "RECORD_RETENTION", _duration_arg, "24h",
     "how long ended lease records stay readable (inspection, retries; at least 1m)"),
)  # fmt: skip


def _add_broker_options(parser: argparse.ArgumentParser) -> None:
    """The broker settings. Operator commands take them too and must be given the values
    the servers use (they read the same LEASEBROKER_* variables). String defaults go
    through ``type``, so a bad variable is a usage error."""
    for flag, env, kind, default, help in _BROKER_OPTIONS:
        parser.add_argument(flag, type=kind, default=_env(env, default), help=help)


def _add_operator_commands(commands: Any, inventory: Any) -> None:
    """inspect, slots, leases, bookings, release, extend, events, keys, sweep, and
    inventory show/set (``inventory`` is the inventory command's subparsers)."""
    inspect = _add_operator_command(commands, "inspect", "show a lease or booking")
    inspect.add_argument("id", help="lease id (l.…) or booking id (b.…)")

    slots = _add_operator_command(commands, "slots", "how full each slot of a day is")
    _add_merchant_option(slots)
    _add_day_option(slots, "the day (default: today on Redis's clock)")
    _add_broker_options(slots)

    for name, what in (("leases", "live leases"), ("bookings", "bookings")):
        listing = _add_operator_command(commands, name, f"list a merchant's {what}")
        _add_merchant_option(listing)
        _add_day_option(listing, "only slots starting on this day")

    release = _add_operator_command(commands, "release", "release a lease now")
    release.add_argument("id", help="lease id (l.…)")
    _add_broker_options(release)

    extend = _add_operator_command(commands, "extend", "push a lease's expiry later")
    extend.add_argument("id", help="lease id (l.…)")
    extend.add_argument("--by", required=True, type=_positive_duration_arg, help="e.g. 5m")
    extend.add_argument("--fence", type=int, help="refuse unless this is the lease's token")
    _add_broker_options(extend)

    events = _add_operator_command(commands, "events", "print a merchant's event stream")
    _add_merchant_option(events)
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.add_argument(
        "--count",
        type=_count_arg,
        help="at most N events: the last N, or the first N after --since",
    )
    events.add_argument("--since", type=_stream_id_arg, help="only events after this stream id")

    keys = _add_operator_command(commands, "keys", "print the Redis key layout")
    _add_merchant_option(keys, required=False)

    sweep = _add_operator_command(commands, "sweep", "mark expired leases as expired")
    sweep.add_argument("--loop", action="store_true", help="keep sweeping until interrupted")
    sweep.add_argument(
        "--interval", type=_positive_duration_arg, default="1s", help="pause between passes"
    )

    prune = _add_operator_command(
        commands, "prune", "forget bookings and fencing counters of long-past slots"
    )
    _add_merchant_option(prune, required=False)
    prune.add_argument(
        "--older-than",
        required=True,
        type=_duration_arg,
        help="prune slots that started longer ago than this (e.g. 30d); 0 prunes every "
        "slot that has started",
    )

    show = _add_operator_command(
        inventory, "show", "print a merchant's inventory", operator="inventory show"
    )
    _add_merchant_option(show)
    set_ = _add_operator_command(
        inventory, "set", "set one slot's capacity", operator="inventory set"
    )
    _add_merchant_option(set_)
    set_.add_argument("--service", required=True)
    set_.add_argument(
        "--start", required=True, type=_instant_arg, help="slot start, ISO 8601 with zone"
    )
    set_.add_argument("--duration", required=True, type=_duration_arg, help="e.g. 30m")
    set_.add_argument("--staff", default="")
    set_.add_argument("--room", default="")
    set_.add_argument("--capacity", required=True, type=_count_arg, help="spots, 0 or more")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="leasebroker", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC BookingService")
    serve.add_argument("--host", default=_env("HOST", "127.0.0.1"), help="address to bind")
    serve.add_argument(
        "--port",
        type=int,
        default=_env("PORT", str(DEFAULT_PORT)),
        help="port to bind (0 picks a free one)",
    )
    _add_store_options(serve, required=False)
    serve.add_argument(
        "--tls-cert",
        default=_env("TLS_CERT"),
        help="PEM certificate chain: serve the BookingService over TLS",
    )
    serve.add_argument("--tls-key", default=_env("TLS_KEY"), help="PEM private key for --tls-cert")
    serve.add_argument(
        "--tls-client-ca",
        default=_env("TLS_CLIENT_CA"),
        help="PEM CA bundle: require client certificates that chain to it (mutual TLS)",
    )
    serve.add_argument(
        "--admin-host",
        default=_env("ADMIN_HOST", "127.0.0.1"),
        help="address of the admin service (leasebroker.v1.LeaseAdmin)",
    )
    serve.add_argument(
        "--admin-port",
        type=int,
        default=_env("ADMIN_PORT", str(DEFAULT_ADMIN_PORT)),
        help="port of the admin service (0 picks a free one, -1 disables it)",
    )
    serve.add_argument(
        "--sweep-interval",
        type=_duration_arg,
        default=_env("SWEEP_INTERVAL", "1s"),
        help="how often expired leases are swept into lease.expired events (0: never)",
    )
    _add_broker_options(serve)
    serve.add_argument(
        "--workers",
        type=int,
        default=_env("WORKERS", str(DEFAULT_WORKERS)),
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
    create.add_argument(
        "--tls", action="store_true", help="connect over TLS (implied by the --tls-* files)"
    )
    create.add_argument("--tls-ca", help="PEM CA bundle to trust (default: the system's)")
    create.add_argument("--tls-cert", help="PEM client certificate, for mutual TLS")
    create.add_argument("--tls-key", help="PEM client key, for mutual TLS")

    inventory = commands.add_parser("inventory", help="manage slot inventory").add_subparsers(
        dest="inventory_command", required=True
    )
    load = inventory.add_parser("load", help="load an availability feed JSON file")
    load.add_argument("feed", help="path to the feed JSON")
    load.add_argument(
        "--complete",
        action="store_true",
        help="the feed lists every merchant: merchants missing from it offer nothing after",
    )
    _add_store_options(load, required=True)
    _add_operator_commands(commands, inventory)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "operator", None):
            from leasebroker.operator_cli import run

            return run(args)
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
    except BrokenPipeError:
        # The reader went away (`leasebroker events | head`): stop quietly. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    """The broker config named by the options; CliError for an inconsistent one."""
    try:
        return BrokerConfig(
            default_capacity=getattr(args, "default_capacity", 1),
            default_hold_ms=getattr(args, "default_hold", 600_000),
            max_hold_ms=getattr(args, "max_hold", 1_800_000),
            record_retention_ms=getattr(args, "record_retention", 24 * 3_600_000),
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
