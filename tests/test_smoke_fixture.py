import time

from leasebroker.api.v0 import booking_service_pb2 as pb


def test_create_lease_through_grpc(stub, backend):
    lease = pb.Lease(merchant_id="m", service_id="s", client_reference="r")
    lease.start_time.FromNanoseconds(time.time_ns() + 3600 * 10**9)
    lease.duration.FromSeconds(1800)
    reply = stub.CreateLease(pb.CreateLeaseRequest(lease=lease))
    assert reply.lease.lease_id.startswith("l.")
