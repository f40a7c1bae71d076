"""Option types and option groups shared by the ``leasebroker`` subcommands.

Every option can also be set by an environment variable ``LEASEBROKER_<OPTION>``;
a flag on the command line wins. Defaults of the broker settings come from
:class:`~leasebroker.core.settings.BrokerConfig`.
"""

from __future__ import annotations

import argparse
import os
import re
from datetime import date, datetime
from typing import Any

from leasebroker.cli.common import config_default
from leasebroker.core.units import human_ms, parse_duration_ms

_STREAM_ID_RE = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")


def env(name: str, default: str | None = None) -> str | None:
    """The option's default from ``LEASEBROKER_<NAME>``, as text: argparse converts string
    defaults with the option's ``type``, so a bad value is a usage error (exit 2)."""
    return os.environ.get(f"LEASEBROKER_{name}", default)


def duration_arg(text: str) -> int:
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def instant_arg(text: str) -> datetime:
    """An ISO 8601 instant with a zone (``2026-12-01T10:00:00Z`` or ``+01:00``)."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a zone, e.g. 2026-12-01T10:00:00Z")
    return value


def count_arg(text: str) -> int:
    """A whole number, 0 or more."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from exc
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more: {text!r}")
    return value


def positive_duration_arg(text: str) -> int:
    value = duration_arg(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be longer than nothing: {text!r}")
    return value


def day_arg(text: str) -> date:
    """A UTC calendar day, ``2026-12-01``."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD): {text!r}") from exc


def stream_id_arg(text: str) -> str:
    """A Redis stream entry id: ``<ms>-<seq>`` or ``<ms>``."""
    if not _STREAM_ID_RE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a stream id (e.g. 1764583200000-0): {text!r}")
    return text


def add_store_options(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--redis-url",
        default=env("REDIS_URL"),
        help="Redis to use, e.g. redis://127.0.0.1:6379/0"
        + ("" if required else " (default: an embedded in-process store)"),
    )
    parser.add_argument(
        "--redis-cluster",
        action="store_true",
        default=env("REDIS_CLUSTER", "") in ("1", "true", "yes"),
        help="treat --redis-url as a seed node of a Redis Cluster",
    )
    parser.add_argument(
        "--key-prefix", default=env("KEY_PREFIX", config_default("key_prefix")), help="key prefix"
    )


def add_operator_command(
    commands: Any, name: str, help: str, *, operator: str | None = None
) -> argparse.ArgumentParser:
    """A command that works on the store directly: the store options, ``--json``, and
    the name :func:`leasebroker.cli.operator_commands.run` dispatches on."""
    parser = commands.add_parser(name, help=help, description=help)
    add_store_options(parser, required=True)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(operator=operator or name)
    return parser


def add_merchant_option(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    parser.add_argument("--merchant", required=required, help="merchant id")


def add_day_option(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--day", type=day_arg, help=help + " (YYYY-MM-DD, UTC)")


# The broker settings (BrokerConfig) as options: flag, env name, type, default, help.
# The broker settings as options: flag, env name, type, BrokerConfig field, help.
BROKER_OPTIONS: tuple[tuple[str, str, Any, str, str], ...] = (
    ("--default-capacity", "DEFAULT_CAPACITY", count_arg, "default_capacity",
     "spots per slot for merchants without inventory (0: none offered)"),
    ("--default-hold", "DEFAULT_HOLD", duration_arg, "default_hold_ms",
     "lease length when the request sets none (e.g. 10m)"),
    ("--max-hold", "MAX_HOLD", duration_arg, "max_hold_ms",
     "longest lease granted; longer requests and extensions are capped (e.g. 30m)"),
    ("--record-retention", "RECORD_RETENTION", duration_arg, "record_retention_ms",
     "how long ended lease records stay readable (inspection, retries; at least 1m)"),
)  # fmt: skip


def _default_text(field: str) -> str:
    """BrokerConfig's default as option text (durations as ``10m``)."""
    value = config_default(field)
    return human_ms(value) if field.endswith("_ms") else str(value)


def add_broker_options(parser: argparse.ArgumentParser) -> None:
    """The deciding settings. Unset (None) unless given as a flag or ``LEASEBROKER_*``
    variable: then the settings stored under the key prefix apply, or BrokerConfig's
    defaults where none are stored (see :func:`leasebroker.cli.common.open_broker`).
    A variable's text goes through ``type``, so a bad one is a usage error."""
    for flag, variable, kind, field, help in BROKER_OPTIONS:
        parser.add_argument(
            flag,
            type=kind,
            default=env(variable),
            help=f"{help} (default: the stored setting, else {_default_text(field)}; "
            f"env LEASEBROKER_{variable})",
        )
