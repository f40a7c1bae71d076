"""Redis connections that give up when the current call's deadline passes.

redis-py reads with the connection's ``socket_timeout`` (5 s) and its Retry tries a
timed-out command again: against a Redis that hangs, a call could wait socket timeout
x tries. These connections read with the smaller of ``socket_timeout`` and the time
left before the call's deadline (:mod:`leasebroker.core.deadline`), and send nothing
once it has passed, so every retry after the deadline fails at once.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.connection
from redis.exceptions import TimeoutError as RedisTimeoutError

from leasebroker.core.deadline import remaining_s

# Never wait less than this for a reply that is already on its way.
_MIN_READ_S = 0.001


class _DeadlineMixin:
    """Bounds sending and reading by the current call's deadline."""

    socket_timeout: float | None

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        left = remaining_s()
        if left is not None and left <= 0:
            raise RedisTimeoutError("the call's deadline passed before the command was sent")
        super().send_packed_command(command, check_health)  # type: ignore[misc]

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        left = remaining_s()
        if left is not None and "timeout" not in kwargs:
            limit = self.socket_timeout if self.socket_timeout is not None else left
            kwargs["timeout"] = max(_MIN_READ_S, min(limit, left))
        return super().read_response(*args, **kwargs)  # type: ignore[misc]


class DeadlineConnection(_DeadlineMixin, redis.connection.Connection):
    """TCP."""


class DeadlineSSLConnection(_DeadlineMixin, redis.connection.SSLConnection):
    """TLS (``rediss://``)."""


class DeadlineUnixConnection(_DeadlineMixin, redis.connection.UnixDomainSocketConnection):
    """A Unix socket (``unix://``)."""


def connection_class(url: str) -> type[redis.connection.AbstractConnection]:
    """The deadline-aware connection class for ``url``'s scheme."""
    scheme = url.split("://", 1)[0].lower()
    if scheme == "rediss":
        return DeadlineSSLConnection
    if scheme == "unix":
        return DeadlineUnixConnection
    return DeadlineConnection
