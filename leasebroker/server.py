"""Running the gRPC server: the v0 BookingService, health checking and reflection."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.broker import LeaseBroker
from leasebroker.service import BookingService

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BookingService"].full_name
# Seconds in-flight calls get to finish after SIGTERM/SIGINT.
SHUTDOWN_GRACE_S = 10.0


@dataclass
class RunningServer:
    """A started server and the port it actually bound (useful with port 0)."""

    server: grpc.Server
    port: int
    health: health.HealthServicer

    def stop(self, grace: float | None = SHUTDOWN_GRACE_S) -> None:
        """Report NOT_SERVING, then let in-flight calls finish for ``grace`` seconds."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()


def start_server(broker: LeaseBroker, host: str, port: int, workers: int) -> RunningServer:
    """Start serving on ``host:port`` with ``workers`` handler threads.

    The broker's Redis pool must have at least ``workers`` connections, so a
    burst of calls waits for a thread, never for a connection.
    """
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rpc"))
    pb_grpc.add_BookingServiceServicer_to_server(BookingService(broker), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"could not bind {address}")
    server.start()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server=server, port=bound, health=health_servicer)


def serve_until_signalled(running: RunningServer) -> None:
    """Block until SIGTERM or SIGINT, then stop gracefully."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    stop.wait()
    running.stop()
    log.info("stopped")
