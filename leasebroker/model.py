"""Plain data the broker core takes and returns; no gRPC or Redis types here.

Times are integers: instants in nanoseconds since the Unix epoch (UTC) and
spans in nanoseconds, so nothing a protobuf Timestamp carries is rounded away.
Lease expiry is in milliseconds, the resolution Redis keeps it in.
"""

from __future__ import annotations

from dataclasses import dataclass

from leasebroker.keys import SlotId

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class LeaseRequest:
    """A CreateLease request: the slot, who asks, and optionally when the hold should end."""

    slot: SlotId
    client_reference: str
    availability_tag: str = ""
    requested_expiry_ns: int | None = None


@dataclass(frozen=True)
class Lease:
    """A granted lease.

    ``fence`` is the slot's fencing token for this lease: it only grows from one
    lease of a slot to the next. ``replayed`` is True when an identical earlier
    request's lease came back.
    """

    lease_id: str
    slot: SlotId
    client_reference: str
    availability_tag: str
    expires_at_ms: int
    fence: int
    replayed: bool = False

    @property
    def expires_at_ns(self) -> int:
        return self.expires_at_ms * NS_PER_MS
