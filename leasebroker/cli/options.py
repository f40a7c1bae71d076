"""Option types and option groups shared by the ``leasebroker`` subcommands.

Every option can also be set by an environment variable ``LEASEBROKER_<OPTION>``;
a flag on the command line wins. Defaults of the broker settings come from
:class:`~leasebroker.core.settings.BrokerConfig`. :class:`Parser` adds each option's
default and variable to its ``--help`` line.
"""

from __future__ import annotations

import argparse
import os
import re
from datetime import date, datetime
from typing import Any

from leasebroker.cli.common import config_default
from leasebroker.core.settings import EVENTS_OFF
from leasebroker.core.store import check_url
from leasebroker.core.units import human_ms, parse_duration_ms
from leasebroker.wire.event_loop import EVENT_LOOPS, uvloop_installed

_STREAM_ID_RE = re.compile(r"[0-9]{1,20}(?:-[0-9]{1,20})?")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# The variables env() was asked for since the last add_argument: the option being
# added reads them (env() runs while its add_argument call's arguments are evaluated).
_ASKED: list[tuple[str, str | None]] = []


def env(name: str, default: str | None = None) -> str | None:
    """The option's default from ``LEASEBROKER_<NAME>``, as text: argparse converts string
    defaults with the option's ``type``, so a bad value is a usage error (exit 2)."""
    _ASKED.append((name, default))
    return os.environ.get(f"LEASEBROKER_{name}", default)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose options name their default and ``LEASEBROKER_*``
    variable in ``--help`` (the built-in default: a variable's value, which may
    hold a password, is never shown). Subcommands get this class too."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        asked, _ASKED[:] = list(_ASKED), []
        action = super().add_argument(*args, **kwargs)
        if not action.option_strings or argparse.SUPPRESS in (action.help, action.default):
            return action
        help = action.help or ""
        notes = []
        if "default" not in help and not action.required:
            fallback = asked[-1][1] if asked else action.default
            notes.append(f"default: {_shown(action, fallback)}")
        if asked and "LEASEBROKER_" not in help:
            notes.append(f"env LEASEBROKER_{asked[-1][0]}")
        if notes:
            action.help = f"{help} ({'; '.join(notes)})".strip()
        return action


def _shown(action: argparse.Action, default: Any) -> str:
    if action.nargs == 0:  # a flag
        return "on" if default is True or str(default).lower() in _TRUE[:-1] else "off"
    if default is None or default == "":
        return "none"
    return str(default).replace("%", "%%")


class Flag(argparse.Action):
    """An on/off option (``--redis-cluster``) whose default may come from a variable:
    the text goes through ``type`` (:func:`bool_arg`), so a bad one is exit 2."""

    def __init__(self, option_strings: Any, dest: str, **kwargs: Any) -> None:
        kwargs.setdefault("type", bool_arg)
        super().__init__(option_strings, dest, nargs=0, **kwargs)

    def __call__(self, parser: Any, namespace: Any, values: Any, option_string: Any = None) -> None:
        setattr(namespace, self.dest, True)


def bool_arg(text: str) -> bool:
    """1/0, true/false, yes/no, on/off in any case; empty is off."""
    word = text.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"not on or off (1/0, true/false, yes/no, on/off): {text!r}")


def redis_url_arg(text: str) -> str:
    try:
        return check_url(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def event_loop_arg(text: str) -> str:
    """serve --event-loop: auto, uvloop or asyncio; uvloop only where it is installed."""
    kind = text.strip().lower()
    if kind not in EVENT_LOOPS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(EVENT_LOOPS)}")
    if kind == "uvloop" and not uvloop_installed():
        raise argparse.ArgumentTypeError("uvloop is not installed (pip install uvloop)")
    return kind


def log_level_arg(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.upper()


def port_arg(text: str, lowest: int = 0) -> int:
    """A TCP port, 0 (pick a free one) to 65535."""
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from exc
    if not lowest <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is {lowest} to 65535: {text!r}")
    return value


def admin_port_arg(text: str) -> int:
    """A port, or -1 (off)."""
    return port_arg(text, lowest=-1)


def positive_int_arg(text: str) -> int:
    value = count_arg(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text!r}")
    return value


def seconds_arg(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from exc
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value


def file_arg(text: str) -> str:
    """A readable file."""
    if not os.path.isfile(text) or not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"not a readable file: {text!r}")
    return text


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


# How --events-retention says "no event streams" (0 works too, as --sweep-interval 0 does).
EVENTS_OFF_TEXT = "off"


def events_retention_arg(text: str) -> int:
    """A duration, or ``off`` (or 0): EVENTS_OFF, no event is written."""
    if text.strip().lower() == EVENTS_OFF_TEXT:
        return EVENTS_OFF
    try:
        return parse_duration_ms(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or {EVENTS_OFF_TEXT}") from exc


def events_retention_text(value_ms: int) -> str:
    """The event retention as options take it: ``1h``, or ``off``."""
    return EVENTS_OFF_TEXT if value_ms == EVENTS_OFF else human_ms(value_ms)


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
        type=redis_url_arg,
        default=env("REDIS_URL"),
        help="Redis to use: redis://, rediss:// (TLS), unix:// or "
        "redis+sentinel://host:port[,host:port...]/service_name[/db]"
        + (
            ""
            if required
            else " (default: an embedded in-process store; env LEASEBROKER_REDIS_URL)"
        ),
    )
    parser.add_argument(
        "--redis-cluster",
        action=Flag,
        default=env("REDIS_CLUSTER", "false"),
        help="treat --redis-url as a seed node of a Redis Cluster",
    )
    for name, what in (
        ("ca", "PEM CA bundle to trust for rediss:// (default: the system's)"),
        ("cert", "PEM client certificate for rediss:// (mutual TLS)"),
        ("key", "PEM private key of --redis-tls-cert"),
    ):
        parser.add_argument(
            f"--redis-tls-{name}",
            type=file_arg,
            default=env(f"REDIS_TLS_{name.upper()}"),
            help=what
            if name != "ca"
            else what.replace(" (default: the system's)", "")
            + " (default: the system's CAs; env LEASEBROKER_REDIS_TLS_CA)",
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
    ("--events-retention", "EVENTS_RETENTION", events_retention_arg, "events_retention_ms",
     "how long each merchant's event stream keeps an event (at least 1s; off: no events)"),
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
