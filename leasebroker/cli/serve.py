"""What ``leasebroker serve`` and ``leasebroker inventory load`` do, after option parsing."""

from __future__ import annotations

import argparse
import logging
from typing import cast

from leasebroker.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    config_from_args,
)
from leasebroker.cli.inventory_load import load_feed, read_feed_files
from leasebroker.cli.startup import PendingBroker, start_when_redis_answers
from leasebroker.cli.telemetry import start_telemetry
from leasebroker.core.background import Periodic
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.sweeper import SweeperThread
from leasebroker.wire.server import (
    ADMIN_WORKERS,
    HEALTH_INTERVAL_S,
    RunningServer,
    StopSignals,
    serve_until_signalled,
    start_admin_server,
    start_server,
    store_health_check,
)
from leasebroker.wire.tls import ServerTls, TlsError

log = logging.getLogger("leasebroker")

# How often serve takes the settings stored under its key prefix (config set).
SETTINGS_RELOAD_S = 5.0


def serve(args: argparse.Namespace) -> int:
    telemetry = start_telemetry(args)  # logs, access log, metrics, tracing
    signals = StopSignals()  # before anything can announce readiness
    if args.workers < 1:
        raise CliError("--workers must be at least 1", EXIT_USAGE)
    admin_enabled = args.admin_port >= 0
    if admin_enabled and args.admin_port == args.port != 0:
        raise CliError("--admin-port must differ from --port", EXIT_USAGE)
    config_from_args(args)  # an inconsistent configuration: exit 2 before connecting
    try:
        tls = ServerTls.from_options(args.tls_cert, args.tls_key, args.tls_client_ca)
        if tls is not None:
            tls.credentials()  # read the files now: a bad one is a usage error, not a crash
    except TlsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    inventories = read_feed_files([args.inventory]) if args.inventory else None
    # One connection per handler thread, plus a few spare, so bursts never wait on the pool.
    admin_workers = ADMIN_WORKERS if admin_enabled else 0
    # Listen first, not ready: health answers (liveness SERVING) while Redis does not
    # (cli/startup.py says what waits for Redis and what stops the start).
    pending = PendingBroker()
    stand_in = cast(LeaseBroker, pending)
    try:
        running = start_server(stand_in, args.host, args.port, args.workers, tls, serving=False)
    except (OSError, RuntimeError) as exc:
        raise CliError(f"cannot listen on {args.host}:{args.port}: {exc}", EXIT_USAGE) from exc
    admin: list[RunningServer] = []
    if admin_enabled:
        try:
            admin.append(
                start_admin_server(stand_in, args.admin_host, args.admin_port, serving=False)
            )
        except (OSError, RuntimeError) as exc:
            running.stop(grace=None)
            where = f"{args.admin_host}:{args.admin_port}"
            raise CliError(f"cannot listen on {where} (admin): {exc}", EXIT_USAGE) from exc
    log.info(
        "bound %s:%d%s; not ready (health NOT_SERVING) until the store answers",
        args.host,
        running.port,
        "".join(f", admin {args.admin_host}:{each.port}" for each in admin),
    )

    def prepare(broker: LeaseBroker) -> None:
        if inventories is not None:
            load_feed(
                broker,
                inventories,
                args.inventory,
                report=log.info,
                warn=log.warning,
                skip_outdated=True,
            )

    try:
        started = start_when_redis_answers(
            args, args.workers + admin_workers + 4, prepare, lambda: signals.received is not None
        )
    except CliError:
        for each in (running, *admin):
            each.stop(grace=None)
        raise
    if started is None:  # SIGTERM or SIGINT before Redis answered
        for each in (running, *admin):
            each.stop(grace=None)
        log.info("stopped before Redis answered")
        return EXIT_OK
    store, broker = started
    pending.broker = broker
    for each in (running, *admin):
        each.set_serving(True)
    config = broker.config
    telemetry.watch_store(store.client)
    if store.embedded:
        log.warning("no --redis-url given: using the %s", store.description)
    else:
        log.info("using %s", store.description)
    log.info(
        "default capacity %d, default hold %d ms, max hold %d ms, record retention %d ms, "
        "key prefix %r (settings stored at %s)",
        config.default_capacity,
        config.default_hold_ms,
        config.max_hold_ms,
        config.record_retention_ms,
        config.key_prefix,
        broker.keys.settings(),
    )
    log.info(
        "listening on %s:%d (%s)",
        args.host,
        running.port,
        "plaintext" if tls is None else "mutual TLS" if tls.client_ca else "TLS",
    )
    for each in admin:
        log.info("admin listening on %s:%d", args.admin_host, each.port)
    background = [
        Periodic("store-health", store_health_check(broker, [running, *admin]), HEALTH_INTERVAL_S),
        # `leasebroker config set` reaches every running process within this interval.
        Periodic("settings-reload", broker.reload_settings, SETTINGS_RELOAD_S),
    ]
    if args.sweep_interval > 0:
        background.append(SweeperThread(broker, interval_s=args.sweep_interval / 1000))
    for thread in background:
        thread.start()
    try:
        serve_until_signalled(signals, running, *admin)
    finally:
        for thread in background:
            thread.stop()
        telemetry.stop()
    return EXIT_OK
