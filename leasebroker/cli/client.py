"""``leasebroker lease create``: a small gRPC client for trying the broker out."""

from __future__ import annotations

import argparse
import sys

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.api.v0 import booking_service_pb2_grpc as pb_grpc
from leasebroker.cli.common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
    print_json,
)
from leasebroker.core.units import NS_PER_S, utc_text
from leasebroker.wire.tls import TlsError, channel_credentials

_UNREACHABLE_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def _channel(args: argparse.Namespace) -> grpc.Channel:
    """Plaintext, or TLS when --tls or any --tls-* file is given."""
    if not (args.tls or args.tls_ca or args.tls_cert or args.tls_key):
        return grpc.insecure_channel(args.target)
    try:
        credentials = channel_credentials(args.tls_ca, args.tls_cert, args.tls_key)
    except TlsError as exc:
        raise CliError(str(exc), EXIT_USAGE) from exc
    return grpc.secure_channel(args.target, credentials)


def create_lease(args: argparse.Namespace) -> int:
    lease = pb.Lease(
        merchant_id=args.merchant,
        service_id=args.service,
        client_reference=args.client_reference,
        availability_tag=args.availability_tag,
    )
    lease.start_time.FromDatetime(args.start)
    lease.duration.FromMilliseconds(args.duration)
    if args.staff or args.room:
        lease.resources.staff_id, lease.resources.room_id = args.staff, args.room
    if args.expires:
        lease.lease_expiration_time.FromDatetime(args.expires)
    with _channel(args) as channel:
        stub = pb_grpc.BookingServiceStub(channel)
        try:
            reply = stub.CreateLease(pb.CreateLeaseRequest(lease=lease), timeout=args.timeout)
        except grpc.RpcError as error:
            return _report_error(error)
    got = reply.lease
    print_json(
        {
            "lease_id": got.lease_id,
            "merchant_id": got.merchant_id,
            "service_id": got.service_id,
            "start_time": utc_text(got.start_time.seconds * NS_PER_S + got.start_time.nanos),
            "duration_ms": got.duration.ToMilliseconds(),
            "resources": {"staff_id": got.resources.staff_id, "room_id": got.resources.room_id},
            "availability_tag": got.availability_tag,
            "client_reference": got.client_reference,
            "lease_expiration_time": utc_text(
                got.lease_expiration_time.seconds * NS_PER_S + got.lease_expiration_time.nanos
            ),
        }
    )
    return EXIT_OK


def _report_error(error: grpc.RpcError) -> int:
    """Print ``CODE REASON: message`` and any bad fields; exit code by kind of failure."""
    code = error.code()
    reason = ""
    violations: list[str] = []
    status = rpc_status.from_call(error)
    for detail in status.details if status else ():
        info = error_details_pb2.ErrorInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info):
            reason = info.reason
        elif detail.Unpack(bad):
            violations += [f"  {v.field}: {v.description}" for v in bad.field_violations]
    label = f"{code.name} {reason}" if reason else code.name
    print(f"error: {label}: {error.details()}", file=sys.stderr)
    for line in violations:
        print(line, file=sys.stderr)
    return EXIT_UNREACHABLE if code in _UNREACHABLE_CODES else EXIT_REFUSED
