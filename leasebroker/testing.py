"""Helpers for partners' own test suites: the broker on fakeredis, no Redis server needed.

    from leasebroker.testing import fake_broker, serving

    broker = fake_broker(default_capacity=2)
    with serving(broker) as target:          # "127.0.0.1:<port>", a real gRPC server
        channel = grpc.insecure_channel(target)
        ...

To let holds expire without waiting, patch ``time.time``: fakeredis takes both
Redis ``TIME`` and key expiry from it (``unittest.mock.patch("time.time", ...)``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from leasebroker.core.broker import LeaseBroker
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.store import embedded_store
from leasebroker.wire.server import start_server


def fake_broker(**config: Any) -> LeaseBroker:
    """A broker on a fresh, private fakeredis store; ``config`` as for BrokerConfig."""
    return LeaseBroker(embedded_store().client, BrokerConfig(**config))


@contextmanager
def serving(broker: LeaseBroker | None = None, workers: int = 8) -> Iterator[str]:
    """Serve the v0 BookingService for ``broker`` (default: :func:`fake_broker`) on an
    ephemeral loopback port for the duration of the block; yields ``host:port``."""
    running = start_server(broker or fake_broker(), "127.0.0.1", 0, workers)
    try:
        yield f"127.0.0.1:{running.port}"
    finally:
        running.stop(grace=None)
