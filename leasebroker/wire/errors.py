"""The one choke point where broker errors become gRPC statuses with rich details.

Every error carries a ``google.rpc.ErrorInfo`` (domain ``leasebroker``, a
stable reason) and, for bad fields, a ``google.rpc.BadRequest``. The core names
bad fields in its own terms; :class:`FieldPaths` turns them into the paths of
the request message that carried them.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from leasebroker.core.deadline import call_deadline
from leasebroker.core.errors import BrokerError, FieldViolation, Reason
from leasebroker.core.validation import raise_if_invalid
from leasebroker.wire.access import observed
from leasebroker.wire.registration import UndecodableRequest

log = logging.getLogger(__name__)

DOMAIN = "leasebroker"
Reply = TypeVar("Reply")
# How raise_if_invalid's messages start; the field names after it are renamed too.
INVALID_REQUEST = "invalid request: "

STATUS_FOR_REASON: dict[Reason, grpc.StatusCode] = {
    Reason.INVALID_FIELD: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.START_TIME_PASSED: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.EXPIRY_NOT_IN_FUTURE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.CLIENT_REFERENCE_IN_USE: grpc.StatusCode.ALREADY_EXISTS,
    Reason.SLOT_FULL: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Reason.SLOT_NOT_OFFERED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    # v0: "an invalid merchant ID, service ID or slot time specification" is INVALID_ARGUMENT.
    Reason.UNKNOWN_MERCHANT: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.UNKNOWN_SERVICE: grpc.StatusCode.INVALID_ARGUMENT,
    Reason.FEED_OUTDATED: grpc.StatusCode.FAILED_PRECONDITION,
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
    Reason.DEADLINE_EXCEEDED: grpc.StatusCode.DEADLINE_EXCEEDED,
    Reason.MALFORMED_REQUEST: grpc.StatusCode.INVALID_ARGUMENT,
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


def _admit(request: Any, context: Any) -> float | None:
    """The seconds the call's client still waits (None: no deadline); raises for a
    request that did not decode and a call whose deadline has already passed (neither
    runs at all)."""
    if isinstance(request, UndecodableRequest):
        raise BrokerError(
            Reason.MALFORMED_REQUEST,
            f"the request is not a valid {request.message_type}: {request.problem}",
        )
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise BrokerError(Reason.DEADLINE_EXCEEDED, "the call's deadline had passed")
    return remaining


def _unexpected(method: Callable) -> BrokerError:
    log.exception("%s failed", method.__name__)
    return BrokerError(Reason.INTERNAL, "internal error")


def _observe_refusal(
    servicer: Any, method: Callable, request: Any, failed: BrokerError, started: float
) -> grpc.Status:
    """Count and log a refused call; its status."""
    code = STATUS_FOR_REASON[failed.reason].name
    _observe(servicer, method, request, None, code, failed.reason.value, started)
    return to_status(failed)


def rpc(method: Callable[[Any, Any, grpc.ServicerContext], Reply]) -> Callable[..., Reply]:
    """Run one RPC (in a handler thread): refuse an undecodable request and a call whose
    deadline has already passed (neither runs at all), turn BrokerError into its status
    and any other exception into a bare INTERNAL."""

    @functools.wraps(method)
    def handler(self: Any, request: Any, context: grpc.ServicerContext) -> Reply:
        started = time.monotonic()
        try:
            with call_deadline(_admit(request, context)):
                reply = method(self, request, context)
        except BrokerError as error:
            failed = error
        except Exception:
            failed = _unexpected(method)
        else:
            _observe(self, method, request, reply, "OK", "OK", started)
            return reply
        status = _observe_refusal(self, method, request, failed, started)
        # The error's traceback holds this frame: without the error in a local of it,
        # a refusal leaves no reference cycle for the garbage collector to find.
        del failed
        # What abort_with_status does, spelled so that it also works on the context a
        # grpc.aio server gives a plain (thread-run) method, which has no such method.
        context.set_trailing_metadata(status.trailing_metadata)
        context.abort(status.code, status.details)
        raise AssertionError("unreachable: abort raises")

    return handler


def rpc_async(
    method: Callable[[Any, Any, Any], Awaitable[Reply]],
) -> Callable[..., Awaitable[Reply]]:
    """:func:`rpc` for a coroutine handler of a ``grpc.aio`` server: the same checks,
    the same statuses, the same access line and metrics."""

    @functools.wraps(method)
    async def handler(self: Any, request: Any, context: Any) -> Reply:
        started = time.monotonic()
        try:
            with call_deadline(_admit(request, context)):
                reply = await method(self, request, context)
        except BrokerError as error:
            failed = error
        except Exception:
            failed = _unexpected(method)
        else:
            _observe(self, method, request, reply, "OK", "OK", started)
            return reply
        status = _observe_refusal(self, method, request, failed, started)
        del failed
        await context.abort_with_status(status)
        raise AssertionError("unreachable: abort raises")

    return handler


def _observe(
    servicer: Any,
    method: Callable,
    request: Any,
    reply: Any,
    code: str,
    reason: str,
    started: float,
) -> None:
    """One finished RPC: its metrics, access-log line and span attributes (wire/access.py)."""
    seconds = time.monotonic() - started
    observed(type(servicer).__name__, method.__name__, request, reply, code, reason, seconds)


@dataclasses.dataclass(frozen=True)
class FieldPaths:
    """Where the core's field names sit in one request message.

    Used as a context manager around a core call: a BrokerError raised inside comes
    out with each violation renamed: ``parent.name`` by default, or the full path
    ``renamed`` gives (``staff_id`` -> ``lease.resources.staff_id``).
    """

    parent: str
    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def path(self, name: str) -> str:
        if name in self.renamed:
            return self.renamed[name]
        return f"{self.parent}.{name}" if self.parent else name

    def raise_all(self, shape: list[FieldViolation], checks: list[FieldViolation]) -> None:
        """Raise INVALID_FIELD when ``shape`` (wire paths) holds a problem, naming
        also what the core's ``checks`` (core names) find in the other fields."""
        if not shape:
            return
        seen = {v.field for v in shape}
        mapped = [FieldViolation(self.path(v.field), v.description) for v in checks]
        raise_if_invalid(shape + [v for v in mapped if v.field not in seen])

    def __enter__(self) -> FieldPaths:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, BrokerError) and error.violations:
            violations = tuple(
                FieldViolation(self.path(v.field), v.description) for v in error.violations
            )
            message = error.message
            if message.startswith(INVALID_REQUEST):
                message = INVALID_REQUEST + ", ".join(v.field for v in violations)
            raise dataclasses.replace(error, message=message, violations=violations) from error
