"""Running the gRPC servers: the v0 BookingService and, on its own port, the operators'
LeaseAdmin; each with health checking and reflection.

The BookingService runs on a ``grpc.aio`` server driven by an event loop in a thread of
its own (:class:`AioServer`), so that its calls wait for Redis as coroutines, not as
parked threads (wire/booking_service.py). Its ``workers`` handler threads run the plain
methods (health, reflection) and, for a client with no asyncio twin (a class of
the application's own), the BookingService's core calls. The admin service is a threaded
``grpc.server``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v1 import admin_pb2 as admin_pb
from leasebroker.core.background import OutageLog
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.deadline import call_deadline
from leasebroker.core.errors import BrokerError
from leasebroker.wire.admin_service import SERVICE_NAME as ADMIN_SERVICE_NAME
from leasebroker.wire.admin_service import LeaseAdmin
from leasebroker.wire.booking_service import BookingService
from leasebroker.wire.event_loop import new_event_loop
from leasebroker.wire.feed import MAX_FEED_BYTES
from leasebroker.wire.reflection import enable_reflection
from leasebroker.wire.registration import add_servicer
from leasebroker.wire.tls import ServerTls

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BookingService"].full_name
# The health service name for liveness: SERVING while the process runs, whatever Redis
# does ("" and the service's own name are readiness: they follow Redis).
LIVENESS = "liveness"
# How often serve asks Redis for TIME (health, and the clock offset deadlines use), and
# how long one probe waits: a hanging Redis is reported within about their sum.
HEALTH_INTERVAL_S = 1.0
HEALTH_PROBE_TIMEOUT_S = 1.0
# Seconds in-flight calls get to finish after SIGTERM/SIGINT.
SHUTDOWN_GRACE_S = 10.0
# Handler threads of the admin service (operators only: a few are plenty).
ADMIN_WORKERS = 4
# The largest admin request accepted: LoadInventory carries a whole availability feed.
ADMIN_MAX_MESSAGE_BYTES = MAX_FEED_BYTES


@dataclass
class RunningServer:
    """A started server and the port it actually bound (useful with port 0)."""

    server: Any  # a grpc.Server, or an AioServer (which stops the same way)
    port: int
    health: health.HealthServicer
    service_name: str

    def set_serving(self, serving: bool) -> None:
        """What grpc.health.v1 reports for readiness: the whole server ("") and its
        service. ``liveness`` is not touched."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else (health_pb2.HealthCheckResponse.NOT_SERVING)
        )
        for name in ("", self.service_name):
            self.health.set(name, status)

    def stop(self, grace: float | None = SHUTDOWN_GRACE_S) -> None:
        """Report NOT_SERVING, then let in-flight calls finish for ``grace`` seconds."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


class AioServer:
    """A ``grpc.aio`` server whose event loop (of ``event_loop``'s kind) runs in a
    daemon thread of its own, so the rest of the process stays threaded. :meth:`stop`
    works as ``grpc.Server.stop``."""

    def __init__(
        self, thread_name: str, executor: futures.ThreadPoolExecutor, event_loop: str = "auto"
    ) -> None:
        self.loop = new_event_loop(event_loop)
        self.executor = executor
        self.server: Any = None
        self.service: BookingService | None = None
        self._stopped: threading.Event | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run_loop, name=thread_name, daemon=True)
        self._thread.start()

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        """Run ``coroutine`` on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def stop(self, grace: float | None) -> threading.Event:
        """Stop accepting calls, give those in flight ``grace`` seconds (None: none),
        then end the loop thread; the event is set once all that is done."""
        with self._lock:
            if self._stopped is not None:
                return self._stopped
            stopped = self._stopped = threading.Event()
        threading.Thread(target=self._stop, args=(grace, stopped), daemon=True).start()
        return stopped

    def _stop(self, grace: float | None, stopped: threading.Event) -> None:
        try:
            self.run(self._stop_serving(grace))
        except Exception:
            log.exception("stopping the BookingService server failed")
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self.loop.close()
            self.executor.shutdown(wait=False)
            stopped.set()

    async def _stop_serving(self, grace: float | None) -> None:
        if self.server is not None:
            await self.server.stop(grace)
        if self.service is not None:
            await self.service.close()


def _grpc_options(reuse_port: bool, options: Sequence[tuple[str, Any]]) -> list[tuple[str, Any]]:
    # gRPC sets SO_REUSEPORT by default, and then a second server "binds" a port that
    # is taken, silently splitting calls between two processes: only the processes of
    # one serve, behind its reservation of the port, share it on purpose.
    return [("grpc.so_reuseport", 1 if reuse_port else 0), *options]


def _add_health_and_bind(
    server: Any, service_name: str, host: str, port: int, tls: ServerTls | None
) -> tuple[health.HealthServicer, int]:
    """Add health checking and reflection to ``server`` (threaded or asyncio) and bind
    its port, plaintext or TLS (mutual TLS when ``tls`` names a client CA)."""
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    enable_reflection((service_name, health.SERVICE_NAME), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if tls is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, tls.credentials())
    except RuntimeError as exc:  # grpc.aio says so by raising
        raise OSError(f"could not bind {address}: {exc}") from exc
    if bound == 0:
        raise OSError(f"could not bind {address}")
    return health_servicer, bound


def _ready(
    server: Any, bound: int, health_servicer: health.HealthServicer, name: str, serving: bool
) -> RunningServer:
    running = RunningServer(server, bound, health_servicer, name)
    running.set_serving(serving)
    health_servicer.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
    return running


def _start(
    add_service: Callable[[grpc.Server], None],
    service_name: str,
    host: str,
    port: int,
    workers: int,
    options: Sequence[tuple[str, Any]] = (),
    tls: ServerTls | None = None,
    serving: bool = True,
) -> RunningServer:
    """Start a threaded server for one service, with health checking and reflection.
    Readiness starts as ``serving``; liveness as SERVING."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"),
        options=_grpc_options(False, options),
    )
    add_service(server)
    health_servicer, bound = _add_health_and_bind(server, service_name, host, port, tls)
    server.start()
    return _ready(server, bound, health_servicer, service_name, serving)


def start_server(
    broker: LeaseBroker,
    host: str,
    port: int,
    workers: int,
    tls: ServerTls | None = None,
    serving: bool = True,
    reuse_port: bool = False,
    event_loop: str = "auto",
) -> RunningServer:
    """Start serving on ``host:port`` with ``workers`` handler threads, over TLS when
    ``tls`` is given; readiness starts as ``serving``. ``reuse_port``: share the port
    (SO_REUSEPORT) with the other processes of one ``serve --processes N``.
    ``event_loop``: the kind of loop the calls run on (:func:`new_event_loop`).

    The broker's Redis pool must have at least ``workers`` connections, so a
    burst of calls waits for a thread, never for a connection.
    """
    executor = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc")
    aio = AioServer("booking-service", executor, event_loop)

    async def build() -> tuple[health.HealthServicer, int]:
        aio.server = grpc.aio.server(
            migration_thread_pool=executor, options=_grpc_options(reuse_port, ())
        )
        aio.service = BookingService(broker, executor)
        add_servicer(aio.server, aio.service, pb.DESCRIPTOR.services_by_name["BookingService"])
        found = _add_health_and_bind(aio.server, SERVICE_NAME, host, port, tls)
        await aio.server.start()
        return found

    try:
        health_servicer, bound = aio.run(build())
    except BaseException:
        aio.stop(None).wait()
        raise
    return _ready(aio, bound, health_servicer, SERVICE_NAME, serving)


def start_admin_server(
    broker: LeaseBroker,
    host: str,
    port: int,
    workers: int = ADMIN_WORKERS,
    max_message_bytes: int = ADMIN_MAX_MESSAGE_BYTES,
    serving: bool = True,
) -> RunningServer:
    """Start the operators' LeaseAdmin service on its own ``host:port``.

    Its ``workers`` handler threads need that many Redis connections on top of
    the BookingService's. Requests up to ``max_message_bytes`` are accepted
    (LoadInventory carries a whole feed); larger ones fail RESOURCE_EXHAUSTED.
    """

    def add(server: grpc.Server) -> None:
        add_servicer(server, LeaseAdmin(broker), admin_pb.DESCRIPTOR.services_by_name["LeaseAdmin"])

    options = [("grpc.max_receive_message_length", max_message_bytes)]
    return _start(add, ADMIN_SERVICE_NAME, host, port, workers, options, serving=serving)


def store_health_check(broker: LeaseBroker, servers: Sequence[RunningServer]) -> Callable[[], None]:
    """A check that reports NOT_SERVING on every server while Redis does not answer,
    so load balancers route around a broker whose store is gone, and SERVING again
    once it answers. Each probe waits at most HEALTH_PROBE_TIMEOUT_S, so a Redis that
    hangs (accepts connections, never answers) looks like one that is down."""
    serving = [True]
    # One line when Redis stops answering, one when it answers again (with the count).
    outage = OutageLog(log, "lease store")

    def check() -> None:
        try:
            with call_deadline(HEALTH_PROBE_TIMEOUT_S):
                broker.now_ms()
            ok = True
        except BrokerError as error:
            ok = False
            outage.failed(f"does not answer: {error}")
        else:
            outage.recovered("answers again")
        if ok != serving[0]:
            serving[0] = ok
            for running in servers:
                running.set_serving(ok)

    return check


class StopSignals:
    """Remembers SIGTERM/SIGINT from the moment it is created.

    Install it before the server says it is ready, so a signal that comes early is
    never lost (nor kills the process with the default action). The handler only
    sets a flag: taking a lock in a signal handler can deadlock the main thread.
    """

    POLL_S = 0.2

    def __init__(self) -> None:
        self.received: int | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.received = signum

    def wait(self) -> None:
        """Block until a signal has come (polling, so no wake-up can be missed)."""
        while self.received is None:
            time.sleep(self.POLL_S)
        log.info("received %s, shutting down", signal.Signals(self.received).name)


def serve_until_signalled(
    signals: StopSignals, running: RunningServer, *others: RunningServer
) -> None:
    """Block until SIGTERM or SIGINT, then stop every server gracefully, together."""
    signals.wait()
    servers = (running, *others)
    for each in servers:
        each.health.enter_graceful_shutdown()
    # Every server drains its in-flight calls within the same grace period.
    for done in [each.server.stop(SHUTDOWN_GRACE_S) for each in servers]:
        done.wait()
    log.info("stopped")
