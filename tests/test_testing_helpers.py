"""leasebroker.testing: what partners use to test against the broker without Redis."""

from __future__ import annotations

import time
from unittest import mock

import grpc
from support import HOUR_NS

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest
from leasebroker.testing import fake_broker, serving


def test_fake_broker_holds_and_expires_with_patched_time():
    broker = fake_broker(default_hold_ms=60_000)
    slot = SlotId("m", "s", time.time_ns() + HOUR_NS, HOUR_NS)
    broker.create_lease(LeaseRequest(slot, "a"))
    try:
        broker.create_lease(LeaseRequest(slot, "b"))
    except BrokerError as error:
        assert error.reason is Reason.SLOT_FULL
    else:
        raise AssertionError("the second lease should not fit")
    with mock.patch("time.time", return_value=time.time() + 61):
        assert broker.create_lease(LeaseRequest(slot, "b")).fence == 2


def test_fake_brokers_do_not_share_a_store():
    slot = SlotId("m", "s", time.time_ns() + HOUR_NS, HOUR_NS)
    assert fake_broker().create_lease(LeaseRequest(slot, "a")).fence == 1
    assert fake_broker().create_lease(LeaseRequest(slot, "a")).fence == 1


def test_serving_answers_create_lease():
    lease = pb.Lease(merchant_id="m", service_id="s", client_reference="r")
    lease.start_time.FromNanoseconds(time.time_ns() + HOUR_NS)
    lease.duration.FromSeconds(1800)
    with serving() as target, grpc.insecure_channel(target) as channel:
        reply = pb_grpc.BookingServiceStub(channel).CreateLease(pb.CreateLeaseRequest(lease=lease))
    assert reply.lease.lease_id.startswith("l.")
