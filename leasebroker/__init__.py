"""leasebroker: a Redis-backed lease broker for the Maps Booking partner API v0.

The broker core is a library (no gRPC needed)::

    from leasebroker import LeaseBroker, BrokerConfig, SlotId, LeaseRequest, BrokerError

and :class:`AsyncBroker` awaits its lease and booking operations in an asyncio program.

The package has three rooms (docs/architecture.md): :mod:`leasebroker.core` (the
broker; the only part that talks to Redis), :mod:`leasebroker.wire` (the gRPC front
ends) and :mod:`leasebroker.cli` (the ``leasebroker`` command). Imports point one way,
cli -> wire -> core. :mod:`leasebroker.testing` runs the broker on fakeredis for
partners' own tests.
"""

from importlib.metadata import PackageNotFoundError, version

from leasebroker.core.async_broker import AsyncBroker
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, FieldViolation, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import (
    Booking,
    BookingRequest,
    BookingStatus,
    CapacitySource,
    InventorySlot,
    InventoryState,
    Lease,
    LeaseRequest,
    LeaseState,
    LeaseView,
    SlotStatus,
)
from leasebroker.core.settings import BrokerConfig

try:
    __version__ = version("leasebroker")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncBroker",
    "Booking",
    "BookingRequest",
    "BookingStatus",
    "BrokerConfig",
    "BrokerError",
    "CapacitySource",
    "FieldViolation",
    "InventorySlot",
    "InventoryState",
    "Lease",
    "LeaseBroker",
    "LeaseRequest",
    "LeaseState",
    "LeaseView",
    "Reason",
    "SlotId",
    "SlotStatus",
    "__version__",
]
