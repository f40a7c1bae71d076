"""Lease operations: create (v0 CreateLease), inspect, list, release, extend."""

from __future__ import annotations

import hashlib
import logging

import msgpack

from leasebroker.core.base import Refusals
from leasebroker.core.due import DueOps
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import (
    NOTHING_OFFERED_FIELD,
    IdKind,
    ParsedId,
    SlotId,
    make_public_id,
    new_token,
    service_field,
)
from leasebroker.core.model import Lease, LeaseRequest, LeaseState, LeaseView
from leasebroker.core.outcomes import Outcome
from leasebroker.core.settings import MAX_DURATION_MS
from leasebroker.core.units import floor_ms
from leasebroker.core.validation import (
    check_fence,
    check_int,
    lease_request_violations,
    raise_if_invalid,
)

# Digits of the request fingerprint kept (128 bits; see request_fingerprint).
FINGERPRINT_HEX_DIGITS = 32

# The most leases one sweep_expired call marks.
MAX_SWEEP_BATCH = 10_000

log = logging.getLogger(__name__)

_CREATE_REFUSALS: Refusals = {
    Outcome.CLIENT_REFERENCE_IN_USE: (
        Reason.CLIENT_REFERENCE_IN_USE,
        "client_reference already holds a live lease for a different request",
    ),
    Outcome.SLOT_FULL: (Reason.SLOT_FULL, "every spot of this slot is held or booked"),
    Outcome.SLOT_NOT_OFFERED: (Reason.SLOT_NOT_OFFERED, "this slot is not offered"),
    Outcome.UNKNOWN_MERCHANT: (
        Reason.UNKNOWN_MERCHANT,
        "no such merchant: it has no inventory and there is no default capacity",
        "merchant_id",
    ),
    Outcome.UNKNOWN_SERVICE: (
        Reason.UNKNOWN_SERVICE,
        "no such service: the merchant's inventory has no slot of it",
        "service_id",
    ),
    Outcome.START_TIME_PASSED: (
        Reason.START_TIME_PASSED,
        "the slot's start_time has passed",
        "start_time",
    ),
    Outcome.EXPIRY_NOT_IN_FUTURE: (
        Reason.EXPIRY_NOT_IN_FUTURE,
        "lease_expiration_time is not in the future",
        "requested_expiry",
    ),
}

# Refusals shared by every operation on an existing lease.
LEASE_REFUSALS: Refusals = {
    Outcome.LEASE_NOT_FOUND: (Reason.LEASE_NOT_FOUND, "no such lease"),
    Outcome.LEASE_EXPIRED: (Reason.LEASE_EXPIRED, "the lease has expired"),
    Outcome.LEASE_RELEASED: (Reason.LEASE_RELEASED, "the lease was released"),
    Outcome.LEASE_CONSUMED: (Reason.LEASE_CONSUMED, "the lease has become a booking"),
    Outcome.FENCE_MISMATCH: (
        Reason.FENCING_TOKEN_STALE,
        "the fencing token given is not this lease's",
    ),
}


def request_fingerprint(request: LeaseRequest) -> str:
    """A digest of everything that makes two CreateLease requests "the same request":
    the slot and the availability tag. Not the requested ``lease_expiration_time``: a
    client that recomputes it on a retry (Google's do) must still learn its lease id,
    so such a retry returns the original lease, with the original expiry.

    128 bits of SHA-256 (32 hex digits): it only tells requests with one
    client_reference apart, and a shorter value keeps the entry small in Redis."""
    s = request.slot
    canonical = msgpack.packb(
        [
            s.merchant_id, s.service_id, s.start_ns, s.duration_ns, s.staff_id, s.room_id,
            request.availability_tag, request.client_reference,
        ]
    )  # fmt: skip
    return hashlib.sha256(canonical).hexdigest()[:FINGERPRINT_HEX_DIGITS]


def lease_slot(merchant_id: str, record: dict[str, bytes]) -> SlotId:
    """The slot a lease record names: its ``slot_field`` is the slot's name, which
    holds the service, start, duration, staff and room exactly (SlotId.from_field)."""
    return SlotId.from_field(merchant_id, record["slot_field"].decode())


def lease_texts(record: dict[str, bytes]) -> tuple[str, str]:
    """A lease record's client_reference and availability tag ("" when none)."""
    if "data" in record:
        # A record written before the compact layout keeps both in a msgpack map; such
        # records are gone a day (the record retention) after their lease ended.
        data = msgpack.unpackb(record["data"])
        return data["client_reference"], data["availability_tag"]
    return record["ref"].decode(), record.get("tag", b"").decode()


def _optional_int(value: bytes | None) -> int | None:
    return None if value is None else int(value)


class LeaseOps(DueOps):
    """Creating and managing leases."""

    def create_lease(self, request: LeaseRequest) -> Lease:
        """Hold one spot of ``request.slot`` until the lease expires.

        Raises :class:`BrokerError`: on a refusal nothing was held; after
        STORE_UNAVAILABLE retry with the same request, which returns the lease if
        the first attempt did get through.
        """
        keys, args = self.create_lease_call(request)
        reply = self._call("create_lease", keys, args)
        lease = self.lease_from_reply(request, reply)
        # Only once the hold exists: a refused request writes nothing at all.
        self.drive(self.after_grant_steps(lease))
        return lease

    def create_lease_call(self, request: LeaseRequest) -> tuple[list[str], list[str | int]]:
        """The KEYS and ARGV of the create_lease script for ``request`` (validated first:
        raises INVALID_FIELD). Shared by :meth:`create_lease` and the asyncio front end's
        (core/async_broker.py), so both send exactly the same script call."""
        raise_if_invalid(lease_request_violations(request))
        slot = request.slot
        merchant = slot.merchant_id
        token = new_token()
        field = slot.field()  # once: the key and the script both need it
        keys = [
            self.keys.slot(slot, field),
            self.keys.inventory(merchant),
            self.keys.client_ref(merchant, request.client_reference),
            self.keys.lease(merchant, token),
            self.keys.fences(merchant),
            self.keys.lease_index(merchant),
            self.keys.events(merchant),
        ]
        expiry = request.requested_expiry_ns
        config = self.config  # once: a settings reload must not mix old and new values
        args: list[str | int] = [
            make_public_id(IdKind.LEASE, merchant, token),
            request_fingerprint(request),
            field,
            config.default_capacity,
            floor_ms(slot.start_ns),
            "" if expiry is None else floor_ms(expiry),
            config.default_hold_ms,
            config.max_hold_ms,
            request.client_reference,
            config.record_retention_ms,
            config.events_retention_ms,
            self._deadline_arg(),
            service_field(slot.service_id),
            NOTHING_OFFERED_FIELD,
            request.availability_tag,
        ]
        return keys, args

    def lease_from_reply(self, request: LeaseRequest, reply: list) -> Lease:
        """The granted (or replayed) lease a create_lease reply names; raises the
        refusal's BrokerError for any other outcome."""
        outcome = Outcome(int(reply[0]))
        if outcome not in (Outcome.OK, Outcome.REPLAYED):
            raise self._refuse(outcome, _CREATE_REFUSALS)
        return Lease(
            lease_id=reply[1].decode(),
            slot=request.slot,
            client_reference=request.client_reference,
            availability_tag=request.availability_tag,
            expires_at_ms=int(reply[2]),
            fence=int(reply[3]),
            replayed=outcome is Outcome.REPLAYED,
        )

    def lease_view(self, parsed: ParsedId, record: dict[str, bytes], now_ms: int) -> LeaseView:
        """A record read from Redis (of the lease ``parsed``) as a :class:`LeaseView`."""
        state = LeaseState(record["state"].decode())
        expires = int(record["expires_ms"])
        if state is LeaseState.HELD and expires <= now_ms:
            state = LeaseState.EXPIRED
        booking = record.get("booking_id")
        reference, tag = lease_texts(record)
        return LeaseView(
            lease_id=make_public_id(IdKind.LEASE, parsed.merchant_id, parsed.token),
            slot=lease_slot(parsed.merchant_id, record),
            client_reference=reference,
            availability_tag=tag,
            state=state,
            fence=int(record["fence"]),
            created_ms=int(record["created_ms"]),
            expires_at_ms=expires,
            ended_ms=_optional_int(record.get("ended_ms")),
            booking_id=booking.decode() if booking else None,
        )

    def get_lease(self, lease_id: str) -> LeaseView:
        """A lease by id, live or ended (ended ones until their retention passes)."""
        parsed, _key, record = self._load(IdKind.LEASE, lease_id)
        return self.lease_view(parsed, record, self.now_ms())

    def list_leases(
        self,
        merchant_id: str,
        slot: SlotId | None = None,
        start_from_ns: int | None = None,
        start_before_ns: int | None = None,
    ) -> list[LeaseView]:
        """The merchant's leases not yet swept (live ones, and expired ones for a few
        seconds), optionally only of one slot or of slots starting in [from, before)."""
        self.check_selection(merchant_id, slot, start_from_ns, start_before_ns)
        ids = self._read(self.client.zrange, self.keys.lease_index(merchant_id), 0, -1)
        now = self.now_ms()
        views = []
        for lease_id in ids:
            try:
                parsed, _key, record = self._load(IdKind.LEASE, lease_id.decode())
            except BrokerError as error:
                if error.reason is Reason.LEASE_NOT_FOUND:
                    continue
                raise
            view = self.lease_view(parsed, record, now)
            if slot_matches(view.slot, slot, start_from_ns, start_before_ns):
                views.append(view)
        return sorted(views, key=lambda v: (v.slot.start_ns, v.created_ms, v.lease_id))

    def _lease_change_keys(self, lease_id: str) -> tuple[list[str], dict[str, bytes]]:
        """KEYS of release_lease and extend_lease (record, its slot, its client
        reference, lease index, events), and the record they were read from."""
        parsed, key, record = self._load(IdKind.LEASE, lease_id)
        merchant = parsed.merchant_id
        keys = [
            key,
            self.keys.slot_named(merchant, record["slot_field"].decode()),
            self.keys.client_ref(merchant, lease_texts(record)[0]),
            self.keys.lease_index(merchant),
            self.keys.events(merchant),
        ]
        return keys, record

    def release_lease(self, lease_id: str) -> LeaseView:
        """End a live lease now and free its spot. Releasing a released or expired
        lease changes nothing; a consumed lease raises LEASE_CONSUMED."""
        keys, _record = self._lease_change_keys(lease_id)
        reply = self._call(
            "release_lease",
            keys,
            [lease_id, self.config.record_retention_ms, self.config.events_retention_ms],
        )
        outcome = Outcome(int(reply[0]))
        if outcome not in (Outcome.OK, Outcome.UNCHANGED):
            raise self._refuse(outcome, LEASE_REFUSALS)
        return self.get_lease(lease_id)

    def extend_lease(
        self, lease_id: str, by_ms: int, expected_fence: int | None = None
    ) -> LeaseView:
        """Push a live lease's expiry ``by_ms`` later, capped at its creation plus the
        maximum hold and at the slot's start. Expired, released and consumed leases
        cannot be extended; a stale ``expected_fence`` is refused."""
        raise_if_invalid(
            [check_int(by_ms, "extension", 1, MAX_DURATION_MS), check_fence(expected_fence)]
        )
        keys, record = self._lease_change_keys(lease_id)
        reply = self._call(
            "extend_lease",
            keys,
            [
                lease_id,
                # A target, not an increment: a retried call cannot extend twice.
                int(record["expires_ms"]) + by_ms,
                self.config.max_hold_ms,
                "" if expected_fence is None else expected_fence,
                self.config.record_retention_ms,
                self.config.events_retention_ms,
            ],
        )
        outcome = Outcome(int(reply[0]))
        if outcome is not Outcome.OK:
            raise self._refuse(outcome, LEASE_REFUSALS)
        return self.get_lease(lease_id)

    def sweep_expired(self, merchant_id: str, batch: int) -> int:
        """Mark up to ``batch`` of the merchant's expired leases as expired (emitting
        lease.expired once each) and drop their index entries; returns how many."""
        return self.sweep_merchant(merchant_id, batch)[0]

    def sweep_merchant(self, merchant_id: str, batch: int) -> tuple[int, int]:
        """:meth:`sweep_expired`, and how many ms past its expiry the oldest lease due
        was when it started (0: none was due): how late the sweeper is."""
        raise_if_invalid([check_int(batch, "batch", 1, MAX_SWEEP_BATCH)])
        index = self.keys.lease_index(merchant_id)
        now = self.now_ms()
        due = self._read(
            lambda: self.client.zrangebyscore(index, "-inf", now, 0, batch, withscores=True)
        )
        lateness_ms = max(0, now - int(due[0][1])) if due else 0
        expired = 0
        for raw_id, _expires in due:
            lease_id = raw_id.decode()
            try:
                _parsed, key, record = self._load(IdKind.LEASE, lease_id)
                slot_key = self.keys.slot_named(merchant_id, record["slot_field"].decode())
            except BrokerError as error:
                if error.reason is not Reason.LEASE_NOT_FOUND:
                    raise
                # The record is gone: the script only drops the index entry, and needs
                # some key of this merchant in the record and slot positions.
                key = slot_key = self.keys.lease(merchant_id, "gone")
            reply = self._call(
                "sweep_lease",
                [index, key, slot_key, self.keys.events(merchant_id)],
                [lease_id, self.config.events_retention_ms],
            )
            expired += Outcome(int(reply[0])) is Outcome.OK
        return expired, lateness_ms


def slot_matches(
    candidate: SlotId, slot: SlotId | None, start_from_ns: int | None, start_before_ns: int | None
) -> bool:
    """Is ``candidate`` the given slot (if any) and does it start in [from, before)?"""
    if slot is not None and candidate != slot:
        return False
    if start_from_ns is not None and candidate.start_ns < start_from_ns:
        return False
    return start_before_ns is None or candidate.start_ns < start_before_ns
