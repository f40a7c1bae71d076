"""``serve``'s start-up when Redis may not answer yet: listen first, get ready later.

What blocks the start (exit 2 before anything listens): malformed options, an
inconsistent configuration, unusable TLS files, an unreadable or invalid feed, a port
that cannot be bound. What waits for Redis, retried every :data:`RETRY_S` while the
servers answer health checks (``liveness`` SERVING, readiness ``""`` and the service
names NOT_SERVING) and every other call with UNAVAILABLE: connecting, the version and
cluster checks, the permission probe, taking the stored settings, loading
``--inventory``. When Redis answers but refuses (too old, a user without a command the
broker needs, credentials it rejects, settings that differ from the stored ones, a
cluster node without ``--redis-cluster``), ``serve`` stops with exit 2: that is a
configuration to fix, and no retry would fix it.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

from leasebroker.cli.common import EXIT_UNREACHABLE, CliError, open_broker
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.store import Store

log = logging.getLogger("leasebroker")

# Pause between two start-up attempts while Redis does not answer.
RETRY_S = 1.0


class PendingBroker:
    """Stands in for the broker until start-up has finished: every call made before
    then fails with STORE_UNAVAILABLE (gRPC UNAVAILABLE, safe to retry)."""

    def __init__(self) -> None:
        self.broker: LeaseBroker | None = None

    def __getattr__(self, name: str) -> Any:
        broker = self.__dict__.get("broker")
        if broker is None:
            raise BrokerError(
                Reason.STORE_UNAVAILABLE,
                "the broker is starting and Redis has not answered yet; safe to retry",
            )
        return getattr(broker, name)


def start_when_redis_answers(
    args: argparse.Namespace,
    pool_size: int,
    prepare: Callable[[LeaseBroker], None],
    stopped: Callable[[], bool],
) -> tuple[Store, LeaseBroker] | None:
    """Open the store and the broker (:func:`open_broker`) and ``prepare`` it (load the
    feed), retrying while Redis does not answer; None once ``stopped()`` is true.
    CliError for a refusal (exit 2)."""
    attempts = 0
    while not stopped():
        attempts += 1
        try:
            store, broker = open_broker(args, pool_size=pool_size, store_settings=True)
        except CliError as exc:
            if exc.code != EXIT_UNREACHABLE:
                raise
            _waiting(attempts, exc, stopped)
            continue
        try:
            prepare(broker)
        except CliError as exc:
            store.close()
            if exc.code != EXIT_UNREACHABLE:
                raise
            _waiting(attempts, exc, stopped)
            continue
        if attempts > 1:
            log.warning("Redis answers after %d attempts: starting", attempts)
        return store, broker
    return None


def _waiting(attempts: int, exc: CliError, stopped: Callable[[], bool]) -> None:
    """One warning when the wait starts, one every minute after; then the pause."""
    if attempts == 1 or attempts % max(1, int(60 / RETRY_S)) == 0:
        log.warning(
            "%s; health reports NOT_SERVING and calls get UNAVAILABLE until it answers "
            "(retrying every %.0f s, attempt %d)",
            exc,
            RETRY_S,
            attempts,
        )
    deadline = time.monotonic() + RETRY_S
    while time.monotonic() < deadline and not stopped():
        time.sleep(0.05)
