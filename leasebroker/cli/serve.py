"""What ``leasebroker serve`` does, after option parsing: serve in this process, or in
``--processes`` spawned ones (cli/processes.py), each of which runs :func:`serve_here`."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from typing import cast

from leasebroker.cli.common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    config_from_args,
)
from leasebroker.cli.inventory_load import load_feed, read_feed_files
from leasebroker.cli.options import EVENTS_OFF_TEXT
from leasebroker.cli.processes import (
    LOADED,
    READY,
    ParentLink,
    WorkerJob,
    process_count,
    serve_in_processes,
)
from leasebroker.cli.startup import PendingBroker, start_when_redis_answers
from leasebroker.cli.telemetry import Telemetry, start_telemetry
from leasebroker.core.background import Periodic
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.sweeper import SweeperThread
from leasebroker.wire.feed import Feed
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
# How long a thread may hold the GIL while another waits for it. The calls are served on
# one event loop thread; the log writer, the sweeper and gRPC's callbacks run in others.
# At Python's 5 ms, a background thread's turn can hold a call up that long and more.
# p99 at half load, as benchmarks/run.py measures it (2-core box, 2026-11-28): 1.2x to
# 2.4x the no-op's in 10 runs with 1 ms, 1.4x to 10.9x in 10 runs with 5 ms; calls/s
# the same.
GIL_SWITCH_INTERVAL_S = 0.001


def serve(args: argparse.Namespace) -> int:
    """``leasebroker serve``: in this process, or in ``--processes`` spawned ones that
    share the port (checked here first, so a bad option is exit 2 before any starts)."""
    count = process_count(args)
    if count > 1:
        check_options(args)
        return serve_in_processes(args, count, serve_process)
    telemetry = start_telemetry(args)  # logs, access log, metrics, tracing
    signals = StopSignals()  # before anything can announce readiness
    tls, inventories = check_options(args)
    return serve_here(args, telemetry, signals, tls, inventories)


def serve_process(args: argparse.Namespace, job: WorkerJob) -> None:
    """One process of ``serve --processes N``, spawned by cli/processes.py: a whole
    serve on the reserved port; exits with serve's exit code."""
    signals = StopSignals()

    def parent_gone() -> None:
        log.warning("the serve process that started this one has ended: stopping")
        signals.received = signal.SIGTERM

    link = ParentLink(job, parent_gone)
    try:
        telemetry = start_telemetry(args, pid=True)
        tls, inventories = check_options(args)
        code = serve_here(args, telemetry, signals, tls, inventories, link)
    except CliError as exc:
        print(f"leasebroker: {exc}", file=sys.stderr, flush=True)
        code = exc.code
    sys.exit(code)


def check_options(args: argparse.Namespace) -> tuple[ServerTls | None, Feed | None]:
    """What stops serve before it listens (exit 2): inconsistent options or settings,
    unusable TLS files, a bad ``--inventory`` feed. The TLS files and the feed, read."""
    if args.workers < 1:
        raise CliError("--workers must be at least 1", EXIT_USAGE)
    if args.admin_port >= 0 and args.admin_port == args.port != 0:
        raise CliError("--admin-port must differ from --port", EXIT_USAGE)
    config_from_args(args)  # an inconsistent configuration: exit 2 before connecting
    try:
        tls = ServerTls.from_options(args.tls_cert, args.tls_key, args.tls_client_ca)
        if tls is not None:
            tls.credentials()  # read the files now: a bad one is a usage error, not a crash
    except TlsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    inventories = read_feed_files([args.inventory]) if args.inventory else None
    return tls, inventories


def serve_here(
    args: argparse.Namespace,
    telemetry: Telemetry,
    signals: StopSignals,
    tls: ServerTls | None,
    inventories: Feed | None,
    link: ParentLink | None = None,
) -> int:
    """Serve in this process until SIGTERM or SIGINT: listen, wait for Redis, get ready.
    ``link``: one of several processes, sharing the port (SO_REUSEPORT) and telling the
    parent when it is ready."""
    admin_enabled = args.admin_port >= 0
    # One connection per handler thread, plus a few spare, so bursts never wait on the pool.
    admin_workers = ADMIN_WORKERS if admin_enabled else 0
    # Listen first, not ready: health answers (liveness SERVING) while Redis does not
    # (cli/startup.py says what waits for Redis and what stops the start).
    pending = PendingBroker()
    stand_in = cast(LeaseBroker, pending)
    try:
        shared = link is not None  # the reserved port, with the other processes
        running = start_server(
            stand_in,
            args.host,
            args.port,
            args.workers,
            tls,
            serving=False,
            reuse_port=shared,
            event_loop=args.event_loop,
        )
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
            if link is not None:
                link.tell(LOADED)
        elif link is not None:  # ready only once process 0 has loaded --inventory
            link.wait_for_inventory(lambda: signals.received is not None)

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
    # What start-up made lives as long as the process: frozen out of the collector's way,
    # a full collection stays short (without this, tens of ms that every call waits out).
    gc.collect()
    gc.freeze()
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
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
        "events retention %s, key prefix %r (settings stored at %s)",
        config.default_capacity,
        config.default_hold_ms,
        config.max_hold_ms,
        config.record_retention_ms,
        f"{config.events_retention_ms} ms" if config.events_on else EVENTS_OFF_TEXT,
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
    if link is not None:
        link.tell(READY)
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
