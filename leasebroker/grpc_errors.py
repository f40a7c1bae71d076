"""The one choke point where broker errors become gRPC statuses with rich details.

Every error carries a ``google.rpc.ErrorInfo`` (domain ``leasebroker``, a
stable reason) and, for bad fields, a ``google.rpc.BadRequest``.
"""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from leasebroker.errors import BrokerError, Reason

DOMAIN = "leasebroker"

STATUS_FOR_REASON: dict[Reason, grpc.StatusCode] = {
    Reason.INVALID_FIELD: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.START_TIME_PASSED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.EXPIRY_NOT_IN_FUTURE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.CLIENT_REFERENCE_IN_USE: grpc.StatusCode.ALREADY_EXISTS,
    Reason.SLOT_FULL: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.SLOT_NOT_OFFERED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.LEASE_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    # v0 names no code for an expired lease; "the lease ID is not valid" (NOT_FOUND) fits.
    Reason.LEASE_EXPIRED: grpc.StatusCode.NOT_FOUND,
    Reason.LEASE_RELEASED: grpc.StatusCode.NOT_FOUND,
    Reason.LEASE_ALREADY_BOOKED: grpc.StatusCode.ALREADY_EXISTS,
    Reason.LEASE_CONSUMED: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.FENCING_TOKEN_STALE: grpc.StatusCode.FAILED_PRECONDITION,
    Reason.BOOKING_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    # v0: updates the business logic forbids are INVALID_ARGUMENT.
    Reason.BOOKING_CANCELLED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.SLOT_STARTED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.CONFLICT: grpc.StatusCode.ABORTED,
    Reason.STORE_UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
    Reason.INTERNAL: grpc.StatusCode.INTERNAL,
}


def _packed(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def to_status(error: BrokerError) -> grpc.Status:
    """The gRPC status (code, message, details) for a broker error."""
    code = STATUS_FOR_REASON[error.reason]
    details = [
        _packed(
            error_details_pb2.ErrorInfo(
                reason=error.reason.value, domain=DOMAIN, metadata=error.metadata
            )
        )
    ]
    if error.violations:
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.append(_packed(bad_request))
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=details
    )
    return rpc_status.to_status(status)


def abort(context: grpc.ServicerContext, error: BrokerError) -> None:
    """End the RPC with the error's status (raises, as ServicerContext.abort does)."""
    context.abort_with_status(to_status(error))
