"""Redis connections that give up when the current call's deadline passes.

redis-py reads with the connection's ``socket_timeout`` (5 s) and its Retry tries a
timed-out command again: against a Redis that hangs, a call could wait socket timeout
x tries. These connections read with the smaller of ``socket_timeout`` and the time
left before the call's deadline (:mod:`leasebroker.core.deadline`), and send nothing
once it has passed, so every retry after the deadline fails at once.
"""

from __future__ import annotations

import queue
import time
from typing import Any

import redis
import redis.connection
from redis.exceptions import TimeoutError as RedisTimeoutError

from leasebroker.core.deadline import remaining_s
from leasebroker.core.observe import observer

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
        # Only a deadline sooner than socket_timeout shortens the read. A later one would
        # set the socket's own timeout on it and back: two system calls (and two hand-offs
        # of the GIL) per reply that change nothing.
        limit = self.socket_timeout
        if left is not None and "timeout" not in kwargs and (limit is None or left < limit):
            kwargs["timeout"] = max(_MIN_READ_S, left)
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


class DeadlineQueue(queue.LifoQueue):
    """A pool's queue of free connections whose wait ends at the current call's deadline
    too, not only after the pool's own timeout (5 s): a call with 100 ms left does not
    sit 5 s waiting for a connection. Redis-py then raises "No connection available",
    which the broker reports as DEADLINE_EXCEEDED once the deadline has passed."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        left = remaining_s()
        if block and left is not None and (timeout is None or left < timeout):
            timeout = max(0.0, left)
        return super().get(block, timeout)


class DeadlinePool(redis.BlockingConnectionPool):
    """redis-py's blocking pool, with a :class:`DeadlineQueue` of free connections."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("queue_class", DeadlineQueue)
        super().__init__(**kwargs)


class _TimedQueue(DeadlineQueue):
    """The pool's queue of free connections, reporting how long each take waited."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        started = time.monotonic()
        try:
            return super().get(block, timeout)
        finally:
            observer().pool_wait(time.monotonic() - started)


def observe_pool_waits(client: Any) -> int:
    """Make the blocking connection pools of ``client`` (a single-node Redis client, or
    each node of a Redis Cluster client as it is now) report how long each caller waits
    for a free connection (:meth:`leasebroker.core.observe.Observer.pool_wait`);
    returns how many pools it changed (0 for fakeredis or another kind of pool)."""
    pools = [getattr(client, "connection_pool", None)]
    get_nodes = getattr(client, "get_nodes", None)
    if callable(get_nodes):
        pools += [
            getattr(node.redis_connection, "connection_pool", None)
            for node in get_nodes()
            if node.redis_connection is not None
        ]
    changed = 0
    for pool in pools:
        if isinstance(pool, redis.BlockingConnectionPool) and type(pool.pool) in (
            queue.LifoQueue,
            DeadlineQueue,
        ):
            pool.queue_class = _TimedQueue  # for a reset() after a fork
            pool.pool.__class__ = _TimedQueue  # the free connections stay where they are
            changed += 1
    return changed
