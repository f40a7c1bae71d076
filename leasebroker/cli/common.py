"""What every ``leasebroker`` command shares: exit codes, the error that carries one,
the broker settings named by the options, and opening the store.

Exit codes: 0 success; 1 the broker refused the request; 2 bad usage or input;
3 the broker or its store could not be reached; 4 no such lease or booking.
README.md ("Exit codes") is where operators read them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from typing import Any

from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import RedisTls, Store, StoreError, embedded_store, open_redis
from leasebroker.core.stored_settings import differences

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_NOT_FOUND = 4

log = logging.getLogger("leasebroker")


class CliError(Exception):
    """A failure to report on stderr with an exit code, without a traceback."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# The options that name BrokerConfig fields (``--default-hold`` -> default_hold_ms).
CONFIG_OPTIONS = {
    "default_capacity": "default_capacity",
    "default_hold": "default_hold_ms",
    "max_hold": "max_hold_ms",
    "record_retention": "record_retention_ms",
    "events_retention": "events_retention_ms",
    "key_prefix": "key_prefix",
}


def given_fields(args: argparse.Namespace) -> set[str]:
    """The BrokerConfig fields given by a flag or LEASEBROKER_* variable."""
    return {
        field for option, field in CONFIG_OPTIONS.items() if getattr(args, option, None) is not None
    }


def config_from_args(args: argparse.Namespace) -> BrokerConfig:
    """The broker config named by the options (BrokerConfig's defaults for the rest);
    CliError for an inconsistent one."""
    given = {
        field: getattr(args, option)
        for option, field in CONFIG_OPTIONS.items()
        if getattr(args, option, None) is not None
    }
    try:
        return BrokerConfig(**given)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc


def config_default(field: str) -> Any:
    """BrokerConfig's default for ``field``: the one source of the CLI's defaults."""
    return {f.name: f.default for f in dataclasses.fields(BrokerConfig)}[field]


def open_store(args: argparse.Namespace, pool_size: int) -> Store:
    """Connect to --redis-url (checked and sanity-checked) or start the embedded store."""
    if not args.redis_url:
        return embedded_store()
    try:
        store, warnings = open_redis(
            args.redis_url, pool_size=pool_size, cluster=args.redis_cluster, tls=redis_tls(args)
        )
    except StoreError as exc:
        raise CliError(str(exc), EXIT_UNREACHABLE if exc.unreachable else EXIT_USAGE) from exc
    for warning in warnings:
        log.warning("%s", warning)
    return store


def redis_tls(args: argparse.Namespace) -> RedisTls:
    """The --redis-tls-* files (rediss:// only)."""
    return RedisTls(
        getattr(args, "redis_tls_ca", None),
        getattr(args, "redis_tls_cert", None),
        getattr(args, "redis_tls_key", None),
    )


def open_broker(
    args: argparse.Namespace, pool_size: int, *, store_settings: bool = False, settle: bool = True
) -> tuple[Store, LeaseBroker]:
    """The store (see :func:`open_store`) and a broker on it, checked and settled:

    - its Redis user may run every command the broker needs, else exit 2 naming the
      commands, before anything is written (inside a script a denied command fails
      half-way);
    - it uses the settings stored under the key prefix (``store_settings``: storing
      the given ones when none are), and a flag or variable that differs from a stored
      value is exit 2 naming each difference: processes cannot disagree (``settle``
      false: the given settings, for ``config set`` which changes the stored ones).
    """
    given = config_from_args(args)
    store = open_store(args, pool_size)
    broker = LeaseBroker(store.client, given, auto_pipeline=getattr(args, "auto_pipelining", True))
    try:
        _check_permissions(broker)
        if settle:
            _settle(args, broker, given, store_settings)
    except CliError:
        store.close()
        raise
    return store, broker


def _settle(
    args: argparse.Namespace, broker: LeaseBroker, given: BrokerConfig, store_settings: bool
) -> None:
    try:
        stored = broker.settle_settings(given, store=store_settings)
    except BrokerError as exc:
        code = EXIT_UNREACHABLE if exc.reason is Reason.STORE_UNAVAILABLE else EXIT_USAGE
        raise CliError(str(exc.message), code) from exc
    if stored is None:
        return
    clashes = differences(given, stored, given_fields(args))
    if clashes:
        raise CliError(
            f"the given settings differ from those stored at {broker.keys.settings()}, which "
            f"every process on this key prefix uses: {'; '.join(clashes)}. Drop the "
            "flags (or LEASEBROKER_* variables), or change the stored settings for every "
            "process with `leasebroker config set`",
            EXIT_USAGE,
        )
    broker.config = stored


def _check_permissions(broker: LeaseBroker) -> None:
    try:
        denied = broker.denied_commands()
    except BrokerError as exc:
        message = f"cannot check the Redis user's permissions: {exc}"
        unreachable = exc.reason is Reason.STORE_UNAVAILABLE
        raise CliError(message, EXIT_UNREACHABLE if unreachable else EXIT_USAGE) from exc
    if denied:
        raise CliError(
            f"the Redis user may not run {', '.join(denied)}, which leasebroker needs "
            "(docs/operations.md shows the ACL rule that allows every command it uses)",
            EXIT_USAGE,
        )


def unreachable(what: str, exc: Exception) -> CliError:
    return CliError(f"cannot reach {what}: {exc}", EXIT_UNREACHABLE)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))
