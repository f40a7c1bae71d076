"""Registering a servicer so that a request protobuf cannot decode is the client's error.

gRPC's generated ``add_..._to_server`` decodes with ``FromString``: when that raises
(invalid UTF-8 in a string field, a truncated message), gRPC answers INTERNAL
("Exception deserializing request!") and logs a 15-line traceback per request, which
any unauthenticated client can use to flood the log. Here the decoder never raises:
it hands the handler an :class:`UndecodableRequest`, which ``rpc`` answers with
INVALID_ARGUMENT (ErrorInfo reason MALFORMED_REQUEST), logging one short line at
most every :data:`LOG_EVERY_S` seconds with a count of the ones it left out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

log = logging.getLogger(__name__)

LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class UndecodableRequest:
    """What the handler gets instead of a request that did not decode."""

    message_type: str
    problem: str


class RateLimitedLog:
    """One warning per ``every_s`` seconds at most; the next one says how many it skipped."""

    def __init__(self, logger: logging.Logger, every_s: float = LOG_EVERY_S) -> None:
        self.logger = logger
        self.every_s = every_s
        self._lock = threading.Lock()
        self._last = -every_s
        self._skipped = 0

    def warning(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self.every_s:
                self._skipped += 1
                return
            skipped, self._skipped, self._last = self._skipped, 0, now
        suffix = f" (and {skipped} more since the last such line)" if skipped else ""
        self.logger.warning(message + suffix, *args)


undecodable_log = RateLimitedLog(log)


def tolerant_decoder(message_class: type[Message]) -> Callable[[bytes], Any]:
    """``FromString`` that returns an UndecodableRequest instead of raising."""
    name = message_class.DESCRIPTOR.full_name

    def decode(data: bytes) -> Any:
        try:
            return message_class.FromString(data)
        except (DecodeError, ValueError, RuntimeError) as exc:
            undecodable_log.warning("refused an undecodable %s: %s", name, exc)
            return UndecodableRequest(name, str(exc) or type(exc).__name__)

    return decode


def add_servicer(server: grpc.Server, servicer: object, service: ServiceDescriptor) -> None:
    """Register every unary method of ``service`` on ``server``, served by ``servicer``'s
    method of the same name, with :func:`tolerant_decoder` for its requests."""
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=tolerant_decoder(GetMessageClass(method.input_type)),
            response_serializer=GetMessageClass(method.output_type).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
