"""The broker core: every lease operation, usable as a library without gRPC.

Each operation validates its input, builds its keys with :class:`KeyBuilder`,
makes one script call (one Redis round trip), and turns the script's outcome
into a result or a :class:`BrokerError`.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any

import msgpack
import redis.exceptions

from leasebroker.config import BrokerConfig
from leasebroker.errors import BrokerError, Reason
from leasebroker.feed import InventorySlot
from leasebroker.keys import IdKind, KeyBuilder, make_public_id, new_token
from leasebroker.model import NS_PER_MS, Lease, LeaseRequest
from leasebroker.outcomes import Outcome
from leasebroker.scripts import Scripts
from leasebroker.validation import lease_request_violations, raise_if_invalid

log = logging.getLogger(__name__)

# Redis errors after which nothing was written, or the write is safe to retry:
# every script is atomic and every mutation is idempotent by its reference.
_UNAVAILABLE = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,  # a replica after failover, before clients move on
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
)

# Script outcomes that are refusals, and the reason each one is reported with.
_REFUSALS = {
    Outcome.CLIENT_REFERENCE_IN_USE: (
        Reason.CLIENT_REFERENCE_IN_USE,
        "client_reference already holds a live lease for a different request",
    ),
    Outcome.SLOT_FULL: (Reason.SLOT_FULL, "every spot of this slot is held or booked"),
    Outcome.SLOT_NOT_OFFERED: (Reason.SLOT_NOT_OFFERED, "this slot is not offered"),
    Outcome.START_TIME_PASSED: (Reason.START_TIME_PASSED, "the slot's start_time has passed"),
    Outcome.EXPIRY_NOT_IN_FUTURE: (
        Reason.EXPIRY_NOT_IN_FUTURE,
        "lease_expiration_time is not in the future",
    ),
}


def _floor_ms(ns: int) -> int:
    return ns // NS_PER_MS


def request_fingerprint(request: LeaseRequest) -> str:
    """A digest of everything that makes two CreateLease requests "the same request"."""
    s = request.slot
    canonical = msgpack.packb(
        [
            s.merchant_id,
            s.service_id,
            s.start_ns,
            s.duration_ns,
            s.staff_id,
            s.room_id,
            request.availability_tag,
            request.client_reference,
            request.requested_expiry_ns,
        ]
    )
    return hashlib.sha256(canonical).hexdigest()


def _lease_data(request: LeaseRequest) -> bytes:
    """The lease as stored in its record (msgpack; Lua keeps it as opaque bytes)."""
    s = request.slot
    return msgpack.packb(
        {
            "v": 1,
            "merchant_id": s.merchant_id,
            "service_id": s.service_id,
            "start_ns": s.start_ns,
            "duration_ns": s.duration_ns,
            "staff_id": s.staff_id,
            "room_id": s.room_id,
            "availability_tag": request.availability_tag,
            "client_reference": request.client_reference,
        }
    )


class LeaseBroker:
    """Lease operations over one Redis client (real, cluster, or fakeredis)."""

    def __init__(self, client: Any, config: BrokerConfig | None = None) -> None:
        self.client = client
        self.config = config or BrokerConfig()
        self.keys = KeyBuilder(self.config.key_prefix)
        self.scripts = Scripts(client)

    def _call(self, name: str, keys: Sequence[str], args: Sequence[str | bytes | int]) -> list:
        """Run one script; store failures become STORE_UNAVAILABLE, anything else INTERNAL."""
        try:
            reply = self.scripts[name](keys, args)
        except _UNAVAILABLE as exc:
            raise BrokerError(
                Reason.STORE_UNAVAILABLE, "the lease store is unreachable; safe to retry"
            ) from exc
        except redis.exceptions.RedisError as exc:
            log.exception("script %s failed", name)
            raise BrokerError(Reason.INTERNAL, "internal error") from exc
        return reply

    def create_lease(self, request: LeaseRequest) -> Lease:
        """Hold one spot of ``request.slot`` until the lease expires.

        Raises :class:`BrokerError`; on any error nothing was held.
        """
        raise_if_invalid(lease_request_violations(request))
        slot = request.slot
        lease_id = make_public_id(IdKind.LEASE, slot.merchant_id, new_token())
        token = lease_id.rsplit(".", 1)[1]
        keys = [
            self.keys.slot(slot),
            self.keys.inventory(slot.merchant_id),
            self.keys.client_ref(slot.merchant_id, request.client_reference),
            self.keys.lease(slot.merchant_id, token),
            self.keys.fences(slot.merchant_id),
            self.keys.lease_index(slot.merchant_id),
            self.keys.events(slot.merchant_id),
        ]
        expiry = request.requested_expiry_ns
        args = [
            lease_id,
            request_fingerprint(request),
            slot.field(),
            self.config.default_capacity,
            _floor_ms(slot.start_ns),
            "" if expiry is None else _floor_ms(expiry),
            self.config.default_hold_ms,
            self.config.max_hold_ms,
            _lease_data(request),
            self.config.record_retention_ms,
            self.config.events_maxlen,
        ]
        reply = self._call("create_lease", keys, args)
        outcome = Outcome(int(reply[0]))
        if outcome in (Outcome.OK, Outcome.REPLAYED):
            return Lease(
                lease_id=reply[1].decode(),
                slot=slot,
                client_reference=request.client_reference,
                availability_tag=request.availability_tag,
                expires_at_ms=int(reply[2]),
                fence=int(reply[3]),
                replayed=outcome is Outcome.REPLAYED,
            )
        raise self._refusal(outcome)

    def replace_inventory(self, merchant_id: str, slots: Sequence[InventorySlot]) -> int:
        """Make ``slots`` the merchant's complete inventory, atomically; returns the slot count.

        From then on the merchant offers only these slots. Existing leases and
        bookings are not touched.
        """
        if not slots:
            raise ValueError("an inventory needs at least one slot")
        if any(item.slot.merchant_id != merchant_id for item in slots):
            raise ValueError(f"every slot must belong to merchant {merchant_id!r}")
        args: list[str | int] = []
        for item in slots:
            args += [item.slot.field(), item.capacity]
        reply = self._call("replace_inventory", [self.keys.inventory(merchant_id)], args)
        return int(reply[1])

    @staticmethod
    def _refusal(outcome: Outcome) -> BrokerError:
        try:
            reason, message = _REFUSALS[outcome]
        except KeyError:
            log.error("unexpected script outcome %s", outcome)
            return BrokerError(Reason.INTERNAL, "internal error")
        return BrokerError(reason, message)
