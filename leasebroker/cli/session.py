"""One operator command's run: its options, its broker (connected on first use, closed
after), how it prints, and the one mapping of broker failures to exit codes
(:meth:`Session.failure`; README.md's "Exit codes" says what each code means)."""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any

from leasebroker.cli.common import (
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    config_from_args,
    open_broker,
)
from leasebroker.cli.tables import json_text
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import KeyBuilder
from leasebroker.core.store import Store, safe_url
from leasebroker.core.units import DAY_NS, day_start_ns


class Session:
    """One command's options, and its broker, connected on first use and closed after."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.config = config_from_args(args)  # a bad prefix or setting: exit 2, no connection
        self._store: Store | None = None
        self._broker: LeaseBroker | None = None

    @property
    def broker(self) -> LeaseBroker:
        if self._broker is None:
            if not self.args.redis_url:
                raise CliError(
                    f"{self.args.operator} needs --redis-url (or LEASEBROKER_REDIS_URL)",
                    EXIT_USAGE,
                )
            settle = not self.args.operator.startswith("config")
            self._store, self._broker = open_broker(self.args, pool_size=2, settle=settle)
            self.config = self._broker.config
        return self._broker

    @property
    def keys(self) -> KeyBuilder:
        return KeyBuilder(self.config.key_prefix)

    def show(self, data: Any, text: str) -> None:
        """Print ``data`` as JSON under --json, else ``text``."""
        print(json_text(data) if self.args.json else text)

    def close(self) -> None:
        if self._store is not None:
            self._store.close()

    def failure(self, exc: BrokerError) -> CliError:
        """The CliError (message and exit code) for a broker failure."""
        if exc.reason is Reason.STORE_UNAVAILABLE:
            # Redis's own words (in the cause) say more to an operator than ours.
            detail = str(exc.__cause__) if exc.__cause__ is not None else exc.message
            where = safe_url(self.args.redis_url)
            return CliError(f"cannot reach Redis at {where}: {detail}", EXIT_UNREACHABLE)
        if exc.reason in (Reason.LEASE_NOT_FOUND, Reason.BOOKING_NOT_FOUND):
            noun = "lease" if exc.reason is Reason.LEASE_NOT_FOUND else "booking"
            return CliError(f"no such {noun}: {getattr(self.args, 'id', '')}", EXIT_NOT_FOUND)
        details = "".join(f"\n  {v.field}: {v.description}" for v in exc.violations)
        return CliError(f"{exc}{details}", EXIT_REFUSED)


def day_window(day: date | None) -> tuple[int | None, int | None]:
    """Slot starts ``[from, before)`` of a UTC day; no bounds without one."""
    if day is None:
        return None, None
    start = day_start_ns(day)
    return start, start + DAY_NS
