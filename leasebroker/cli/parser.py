"""The ``leasebroker`` command line: every subcommand and option, and ``main``.

Every option of ``serve`` (and the store options of the other commands) can
also be set by an environment variable ``LEASEBROKER_<OPTION>``, e.g.
``LEASEBROKER_REDIS_URL``; a flag on the command line wins.

The operator commands (inspect, slots, leases, bookings, release, extend,
events, keys, sweep, prune, inventory show/set) work on the store directly through
the broker core; their logic is in :mod:`leasebroker.cli.operator_commands`. Exit
codes are in :mod:`leasebroker.cli.common`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from leasebroker import __version__
from leasebroker.cli.common import EXIT_OK, CliError
from leasebroker.cli.options import (
    Parser,
    add_broker_options,
    add_day_option,
    add_merchant_option,
    add_operator_command,
    add_store_options,
    admin_port_arg,
    bool_arg,
    count_arg,
    duration_arg,
    env,
    event_loop_arg,
    instant_arg,
    log_level_arg,
    port_arg,
    positive_duration_arg,
    positive_int_arg,
    seconds_arg,
    stream_id_arg,
)
from leasebroker.cli.telemetry import add_telemetry_options

DEFAULT_PORT = 50051
DEFAULT_ADMIN_PORT = 50052
DEFAULT_WORKERS = 32


def _add_operator_commands(commands: Any, inventory: Any) -> None:
    """inspect, slots, leases, bookings, release, extend, events, keys, sweep, and
    inventory show/set (``inventory`` is the inventory command's subparsers)."""
    inspect = add_operator_command(commands, "inspect", "show a lease or booking")
    inspect.add_argument("id", help="lease id (l.…) or booking id (b.…)")

    slots = add_operator_command(commands, "slots", "how full each slot of a day is")
    add_merchant_option(slots)
    add_day_option(slots, "the day (default: today on Redis's clock)")
    add_broker_options(slots)

    for name, what in (("leases", "live leases"), ("bookings", "bookings")):
        listing = add_operator_command(commands, name, f"list a merchant's {what}")
        add_merchant_option(listing)
        add_day_option(listing, "only slots starting on this day")

    release = add_operator_command(commands, "release", "release a lease now")
    release.add_argument("id", help="lease id (l.…)")
    add_broker_options(release)

    extend = add_operator_command(commands, "extend", "push a lease's expiry later")
    extend.add_argument("id", help="lease id (l.…)")
    extend.add_argument("--by", required=True, type=positive_duration_arg, help="e.g. 5m")
    extend.add_argument("--fence", type=int, help="refuse unless this is the lease's token")
    add_broker_options(extend)

    events = add_operator_command(commands, "events", "print a merchant's event stream")
    add_merchant_option(events)
    events.add_argument("--follow", action="store_true", help="keep printing new events")
    events.add_argument(
        "--count",
        type=count_arg,
        help="at most N events: the last N, or the first N after --since",
    )
    events.add_argument("--since", type=stream_id_arg, help="only events after this stream id")

    keys = add_operator_command(commands, "keys", "print the Redis key layout")
    add_merchant_option(keys, required=False)

    sweep = add_operator_command(commands, "sweep", "mark expired leases as expired")
    sweep.add_argument("--loop", action="store_true", help="keep sweeping until interrupted")
    sweep.add_argument(
        "--interval", type=positive_duration_arg, default="1s", help="pause between passes"
    )

    prune = add_operator_command(
        commands, "prune", "forget bookings and fencing counters of long-past slots"
    )
    add_merchant_option(prune, required=False)
    prune.add_argument(
        "--older-than",
        required=True,
        type=duration_arg,
        help="prune slots that started longer ago than this (e.g. 30d); 0 prunes every "
        "slot that has started",
    )

    show = add_operator_command(
        inventory, "show", "print a merchant's inventory", operator="inventory show"
    )
    add_merchant_option(show)
    add_broker_options(show)
    set_ = add_operator_command(
        inventory, "set", "set one slot's capacity", operator="inventory set"
    )
    add_merchant_option(set_)
    set_.add_argument("--service", required=True)
    set_.add_argument(
        "--start", required=True, type=instant_arg, help="slot start, ISO 8601 with zone"
    )
    set_.add_argument("--duration", required=True, type=duration_arg, help="e.g. 30m")
    set_.add_argument("--staff", default="")
    set_.add_argument("--room", default="")
    set_.add_argument("--capacity", required=True, type=count_arg, help="spots, 0 or more")


def _add_config_commands(commands: Any) -> None:
    """config show / config set: the settings stored under the key prefix."""
    config = commands.add_parser(
        "config", help="show or change the settings every process on a key prefix uses"
    ).add_subparsers(dest="config_command", required=True)
    add_operator_command(config, "show", "print the stored settings", operator="config show")
    change = add_operator_command(
        config, "set", "change the stored settings for every process", operator="config set"
    )
    add_broker_options(change)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="leasebroker", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"leasebroker {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gRPC BookingService")
    serve.add_argument("--host", default=env("HOST", "127.0.0.1"), help="address to bind")
    serve.add_argument(
        "--port",
        type=port_arg,
        default=env("PORT", str(DEFAULT_PORT)),
        help="port to bind (0 picks a free one)",
    )
    add_store_options(serve, required=False)
    serve.add_argument(
        "--tls-cert",
        default=env("TLS_CERT"),
        help="PEM certificate chain: serve the BookingService over TLS",
    )
    serve.add_argument("--tls-key", default=env("TLS_KEY"), help="PEM private key for --tls-cert")
    serve.add_argument(
        "--tls-client-ca",
        default=env("TLS_CLIENT_CA"),
        help="PEM CA bundle: require client certificates that chain to it (mutual TLS)",
    )
    serve.add_argument(
        "--admin-host",
        default=env("ADMIN_HOST", "127.0.0.1"),
        help="address of the admin service (leasebroker.v1.LeaseAdmin)",
    )
    serve.add_argument(
        "--admin-port",
        type=admin_port_arg,
        default=env("ADMIN_PORT", str(DEFAULT_ADMIN_PORT)),
        help="port of the admin service (0 picks a free one, -1 disables it)",
    )
    serve.add_argument(
        "--sweep-interval",
        type=duration_arg,
        default=env("SWEEP_INTERVAL", "1s"),
        help="how often expired leases are swept into lease.expired events (0: never)",
    )
    add_broker_options(serve)
    serve.add_argument(
        "--workers",
        type=positive_int_arg,
        default=env("WORKERS", str(DEFAULT_WORKERS)),
        help="handler threads (and pooled Redis connections) for what runs threaded: health "
        "and reflection (the BookingService's calls run on an event loop over one pipelined "
        "connection per Redis primary)",
    )
    serve.add_argument(
        "--event-loop",
        type=event_loop_arg,
        default=env("EVENT_LOOP", "auto"),
        help="the BookingService's event loop: uvloop, asyncio (its own loop) or auto "
        "(uvloop where installed; default: auto; env LEASEBROKER_EVENT_LOOP)",
    )
    serve.add_argument(
        "--auto-pipelining",
        type=bool_arg,
        metavar="on|off",
        default=env("AUTO_PIPELINING", "on"),
        help="threaded Redis script calls that overlap (admin service, sweeper) go "
        "together, as one pipeline per round trip (off: one round trip per call); the "
        "BookingService's calls on its event loop always share one pipelined connection",
    )
    serve.add_argument(
        "--processes",
        type=positive_int_arg,
        default=env("PROCESSES"),
        help="processes serving --port together (SO_REUSEPORT), each with --workers "
        "handlers (default: the CPUs this process may use with --redis-url, 1 with the "
        "embedded store)",
    )
    serve.add_argument(
        "--inventory",
        default=env("INVENTORY"),
        help="availability feed JSON to load before serving",
    )
    serve.add_argument(
        "--log-level",
        type=log_level_arg,
        default=env("LOG_LEVEL", "INFO"),
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL",
    )
    add_telemetry_options(serve)

    lease = commands.add_parser("lease", help="call the BookingService").add_subparsers(
        dest="lease_command", required=True
    )
    create = lease.add_parser("create", help="call CreateLease and print the lease")
    create.add_argument("--merchant", required=True)
    create.add_argument("--service", required=True)
    create.add_argument(
        "--start", required=True, type=instant_arg, help="slot start, ISO 8601 with zone"
    )
    create.add_argument("--duration", required=True, type=duration_arg, help="e.g. 30m")
    create.add_argument("--client-reference", required=True)
    create.add_argument("--staff", default="")
    create.add_argument("--room", default="")
    create.add_argument("--availability-tag", default="")
    create.add_argument("--expires", type=instant_arg, help="requested lease_expiration_time")
    create.add_argument(
        "--target",
        default=env("TARGET", f"127.0.0.1:{DEFAULT_PORT}"),
        help="broker address host:port",
    )
    create.add_argument("--timeout", type=seconds_arg, default=10.0, help="seconds")
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
    load.add_argument(
        "feed", nargs="+", help="the feed JSON file, or every shard file of one sharded feed"
    )
    load.add_argument(
        "--complete",
        action="store_true",
        help="the feed lists every merchant: merchants missing from it offer nothing after",
    )
    add_store_options(load, required=True)
    _add_operator_commands(commands, inventory)
    _add_config_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "operator", None):
            from leasebroker.cli.operator_commands import run

            return run(args)
        if args.command == "serve":
            from leasebroker.cli.serve import serve

            return serve(args)
        if args.command == "lease":
            from leasebroker.cli.client import create_lease

            return create_lease(args)
        from leasebroker.cli.inventory_load import load_inventory

        return load_inventory(args)
    except CliError as exc:
        print(f"leasebroker: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader went away (`leasebroker events | head`): stop quietly. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
