"""The lease record keeps only what cannot be derived, in short values (Redis keeps it
as a compact listpack), and records written in the earlier layout still work."""

from __future__ import annotations

import hashlib
import time

import msgpack
import pytest
from support import HOUR_NS, booking_request

from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import IdKind, SlotId, make_public_id, parse_public_id
from leasebroker.core.leases import request_fingerprint
from leasebroker.core.model import LeaseRequest, LeaseState

MERCHANT = "salon-42"


def _slot(hours: int = 2, staff: str = "alice") -> SlotId:
    start = (time.time_ns() // 10**9) * 10**9 + hours * HOUR_NS
    return SlotId(MERCHANT, "haircut", start + 500, 1800 * 10**9 + 7, staff, "room 1")


def _record(redis_client, broker, lease_id: str) -> dict[str, bytes]:
    parsed = parse_public_id(lease_id, IdKind.LEASE)
    assert parsed is not None
    raw = redis_client.hgetall(broker.keys.lease(MERCHANT, parsed.token))
    return {k.decode(): v for k, v in raw.items()}


def test_a_held_lease_record_holds_only_what_cannot_be_derived(broker, redis_client):
    slot = _slot()
    lease = broker.create_lease(LeaseRequest(slot, "ref-1", availability_tag="tag-9"))
    record = _record(redis_client, broker, lease.lease_id)
    assert set(record) == {
        "state", "slot_field", "ref", "tag", "fence", "start_ms", "created_ms", "expires_ms",
    }  # fmt: skip
    assert record["slot_field"].decode() == slot.field()
    assert (record["ref"], record["tag"], record["state"]) == (b"ref-1", b"tag-9", b"held")
    # The view puts back every field exactly, to the nanosecond, from the slot's name.
    view = broker.get_lease(lease.lease_id)
    assert (view.slot, view.client_reference, view.availability_tag) == (slot, "ref-1", "tag-9")


def test_no_availability_tag_stores_no_tag_field(broker, redis_client):
    lease = broker.create_lease(LeaseRequest(_slot(), "ref-1"))
    assert "tag" not in _record(redis_client, broker, lease.lease_id)
    assert broker.get_lease(lease.lease_id).availability_tag == ""


def test_the_record_stays_a_listpack(real_broker):
    client = real_broker.client
    lease = real_broker.create_lease(LeaseRequest(_slot(), "ref-1", availability_tag="t"))
    real_broker.extend_lease(lease.lease_id, 60_000)
    token = lease.lease_id.rsplit(".", 1)[1]
    assert client.object("encoding", real_broker.keys.lease(MERCHANT, token)) == b"listpack"


def test_a_client_reference_entry_is_one_string_expiring_with_its_lease(broker, redis_client):
    request = LeaseRequest(_slot(), "ref-1")
    lease = broker.create_lease(request)
    ref = broker.keys.client_ref(MERCHANT, "ref-1")
    fingerprint = request_fingerprint(request)
    expected = f"{lease.lease_id} {fingerprint} {lease.expires_at_ms} {lease.fence}"
    assert redis_client.get(ref).decode() == expected
    assert redis_client.pexpiretime(ref) == lease.expires_at_ms
    extended = broker.extend_lease(lease.lease_id, 60_000)
    moved = f"{lease.lease_id} {fingerprint} {extended.expires_at_ms} {lease.fence}"
    assert redis_client.get(ref).decode() == moved
    assert redis_client.pexpiretime(ref) == extended.expires_at_ms


def _old_layout_lease(broker, redis_client, slot: SlotId, reference: str, tag: str) -> str:
    """A held lease as the earlier layout wrote it: the public id, both keys and a
    msgpack map in the record, and a 64-digit fingerprint in its client reference."""
    merchant, token = slot.merchant_id, "AAAAAAAAAAAAAAAAAAAAAA"
    lease_id = make_public_id(IdKind.LEASE, merchant, token)
    now = broker.now_ms()
    expires = now + 600_000
    request = LeaseRequest(slot, reference, availability_tag=tag)
    canonical = msgpack.packb(
        [
            slot.merchant_id, slot.service_id, slot.start_ns, slot.duration_ns, slot.staff_id,
            slot.room_id, tag, reference,
        ]
    )  # fmt: skip
    fingerprint = hashlib.sha256(canonical).hexdigest()
    assert fingerprint.startswith(request_fingerprint(request))
    data = {
        "v": 1, "merchant_id": merchant, "service_id": slot.service_id,
        "start_ns": slot.start_ns, "duration_ns": slot.duration_ns, "staff_id": slot.staff_id,
        "room_id": slot.room_id, "availability_tag": tag, "client_reference": reference,
    }  # fmt: skip
    keys = broker.keys
    field = slot.field()
    redis_client.hset(keys.lease(merchant, token), mapping={
        "lease_id": lease_id, "state": "held", "slot": keys.slot(slot), "slot_field": field,
        "client_ref": keys.client_ref(merchant, reference), "fp": fingerprint, "fence": 1,
        "start_ms": slot.start_ns // 10**6, "created_ms": now, "expires_ms": expires,
        "data": msgpack.packb(data),
    })  # fmt: skip
    redis_client.hset(keys.client_ref(merchant, reference), mapping={
        "lease": lease_id, "fp": fingerprint, "expires_ms": expires, "fence": 1,
    })  # fmt: skip
    redis_client.hset(keys.fences(merchant), field, 1)
    redis_client.zadd(keys.slot(slot), {lease_id: expires})
    redis_client.zadd(keys.lease_index(merchant), {lease_id: expires})
    return lease_id


def test_a_lease_in_the_earlier_layout_reads_replays_extends_and_releases(broker, redis_client):
    slot = _slot()
    lease_id = _old_layout_lease(broker, redis_client, slot, "old-ref", "tag-1")
    view = broker.get_lease(lease_id)
    assert (view.slot, view.client_reference, view.availability_tag) == (slot, "old-ref", "tag-1")
    assert [v.lease_id for v in broker.list_leases(MERCHANT)] == [lease_id]
    # Its retry is still recognised by the first half of the longer fingerprint.
    replay = broker.create_lease(LeaseRequest(slot, "old-ref", availability_tag="tag-1"))
    assert (replay.lease_id, replay.replayed) == (lease_id, True)
    with pytest.raises(BrokerError) as refused:
        broker.create_lease(LeaseRequest(slot, "old-ref", availability_tag="other"))
    assert refused.value.reason is Reason.CLIENT_REFERENCE_IN_USE

    extended = broker.extend_lease(lease_id, 60_000)
    assert extended.expires_at_ms == view.expires_at_ms + 60_000
    # The extension rewrites the entry in today's layout, fingerprint as it was.
    entry = redis_client.get(broker.keys.client_ref(MERCHANT, "old-ref")).decode().split()
    assert (entry[0], len(entry[1]), entry[2]) == (lease_id, 64, str(extended.expires_at_ms))
    assert broker.release_lease(lease_id).state is LeaseState.RELEASED
    assert redis_client.exists(broker.keys.client_ref(MERCHANT, "old-ref")) == 0
    assert broker.create_lease(LeaseRequest(slot, "new-ref")).fence == 2


def test_a_lease_in_the_earlier_layout_can_be_booked(broker, redis_client):
    slot = _slot(staff="bob")
    lease_id = _old_layout_lease(broker, redis_client, slot, "old-ref", "tag-2")
    booking = broker.create_booking(booking_request(lease_id))
    assert (booking.slot, booking.availability_tag) == (slot, "tag-2")
    assert broker.get_lease(lease_id).state is LeaseState.CONSUMED
