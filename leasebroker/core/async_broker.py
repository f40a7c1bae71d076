"""The BookingService's operations for an asyncio front end (CreateLease, CreateBooking,
cancel, reschedule): the same script calls as the threaded ``LeaseBroker`` methods,
sent on an asyncio connection, so a call waiting for Redis holds no thread.

Why: in a threaded gRPC server each call that waits for Redis parks its handler thread
and wakes it again, and under load those hand-offs of the GIL cost more CPU than the
call's own work (docs/architecture.md, "Why the BookingService is a grpc.aio server").
A coroutine waiting on a socket costs the event loop next to nothing.

The asyncio client is a twin of the broker's own client (:func:`async_twin`): the same
server, database, credentials, TLS files and timeouts, on redis-py's asyncio API (or
fakeredis's, sharing the embedded store's data). On a real Redis the calls go over one
pipelined connection opened from the twin's options (core/async_pipe.py); behind
Sentinel, that connection goes to the primary the sentinels name. On a Redis Cluster
the twin is one such connection per primary, each command sent to the primary of its
key's slot (core/async_cluster.py).

What is the same as the threaded path, by construction: the script and its arguments
(:meth:`~leasebroker.core.leases.LeaseOps.create_lease_call`; for the others, the steps
of core/steps.py, which read the record and run the script), the reading of the reply
(:meth:`~leasebroker.core.leases.LeaseOps.lease_from_reply`, the steps), the error mapping
(:func:`~leasebroker.core.base.store_error`), the caller's deadline (the script gets it
on Redis's clock, and the wait for Redis ends at it), the sweeper's registry and due
index writes after a grant (the steps of ``after_grant_steps``), and ``NOSCRIPT``
handling (the script is loaded and its call sent once more, as redis-py's script object
does).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Sequence
from typing import Any

import redis.asyncio
import redis.asyncio.retry
import redis.cluster
import redis.connection
import redis.exceptions
import redis.sentinel

from leasebroker.core.async_cluster import ClusterPipes, routing_key
from leasebroker.core.async_pipe import DEFAULT_TIMEOUT_S, AsyncPipe
from leasebroker.core.base import store_error
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.deadline import remaining_s
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.model import Booking, BookingRequest, Lease, LeaseRequest
from leasebroker.core.scripts import BoundScript
from leasebroker.core.sentinel import async_sentinel_twin, close_sentinels
from leasebroker.core.steps import Bookkeeping, ReadRecord, RunScript, Steps, T
from leasebroker.core.store import store_backoff

log = logging.getLogger(__name__)

# Times a script call is sent again on a new connection after its connection broke (the
# threaded client's Retry makes two more tries, too).
CONNECTION_RETRIES = 2

# Sync connection classes and their asyncio counterparts (subclasses, such as the
# deadline-aware ones of core/connections.py, map as their base does; TLS first, as
# it subclasses plain TCP).
_ASYNC_CONNECTIONS = (
    (redis.connection.SSLConnection, redis.asyncio.SSLConnection),
    (redis.connection.UnixDomainSocketConnection, redis.asyncio.UnixDomainSocketConnection),
    (redis.connection.Connection, redis.asyncio.Connection),
)


def _accepted(cls: type) -> set[str]:
    """The keyword arguments a connection class (and its bases) take."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {
                p.name
                for p in inspect.signature(init).parameters.values()
                if p.kind is p.KEYWORD_ONLY or p.kind is p.POSITIONAL_OR_KEYWORD
            }
    return names - {"self", "retry", "redis_connect_func", "event_dispatcher", "connection_pool"}


def _async_retry(sync_retry: Any) -> redis.asyncio.retry.Retry | None:
    """The same retries on the asyncio side, with the same backoff. redis-py has no
    public getter for a Retry's backoff: where its attribute is missing (a redis-py that
    renamed it), the broker's own backoff (core/store.py) stands in, rather than the
    twin failing to be made."""
    if sync_retry is None:
        return None
    backoff = getattr(sync_retry, "_backoff", None) or store_backoff()
    return redis.asyncio.retry.Retry(backoff, sync_retry.get_retries())


def async_twin(client: Any) -> Any | None:
    """An asyncio client to the store ``client`` talks to (for a Sentinel client, of the
    same service through the same sentinels; for a Redis Cluster client, its
    :class:`ClusterPipes`), or None for a client class it does not know. Create it on
    the event loop that will use it: its connections belong to that loop."""
    try:
        import fakeredis
    except ImportError:  # pragma: no cover - fakeredis is a dependency
        fakeredis = None
    if fakeredis is not None and isinstance(client, fakeredis.FakeRedis):
        kwargs = client.connection_pool.connection_kwargs
        return fakeredis.FakeAsyncRedis(
            server=kwargs["server"],
            db=kwargs.get("db", 0),
            protocol=2,
            lua_modules=kwargs.get("lua_modules"),
        )
    if type(client) is redis.cluster.RedisCluster:
        return ClusterPipes(client)
    if type(client) is not redis.Redis:
        return None  # a subclass whose behaviour we cannot copy
    pool = client.connection_pool
    if isinstance(pool, redis.sentinel.SentinelConnectionPool):
        options = _async_options(pool, redis.asyncio.Connection)
        return async_sentinel_twin(pool, {**options, "max_connections": pool.max_connections})
    async_class = next(
        (mapped for base, mapped in _ASYNC_CONNECTIONS if issubclass(pool.connection_class, base)),
        None,
    )
    if async_class is None:
        return None
    async_pool = redis.asyncio.BlockingConnectionPool(
        connection_class=async_class,
        max_connections=pool.max_connections,
        timeout=getattr(pool, "timeout", None),
        **_async_options(pool, async_class),
    )
    return redis.asyncio.Redis(connection_pool=async_pool)


def _async_options(pool: Any, async_class: type) -> dict[str, Any]:
    """The sync pool's connection options that ``async_class`` takes, with the same
    retry."""
    kwargs = pool.connection_kwargs
    accepted = _accepted(async_class)
    options = {name: value for name, value in kwargs.items() if name in accepted}
    options["retry"] = _async_retry(kwargs.get("retry"))
    return options


class AsyncBroker:
    """The BookingService's operations of ``broker``, awaited on ``client`` (an asyncio
    client, see :func:`async_twin`): CreateLease, CreateBooking, cancel and reschedule,
    each the same steps, replies and errors as the threaded method of the same name."""

    def __init__(self, broker: LeaseBroker, client: Any) -> None:
        self.broker = broker
        self.client = client
        options = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {})
        if options.get("decode_responses"):
            raise ValueError("the broker needs a Redis client with decode_responses=False")
        # A real Redis gets one pipelined connection (core/async_pipe.py); the embedded
        # store (fakeredis, in this process) is called through its asyncio client.
        # A Redis Cluster gets one per primary (core/async_cluster.py).
        self._cluster = client if isinstance(client, ClusterPipes) else None
        self._pipe = None if _is_fake(client) or self._cluster else AsyncPipe(client)
        routed = self._cluster or self._pipe
        self._timeout_s = routed.timeout_s if routed else DEFAULT_TIMEOUT_S

    @classmethod
    def of(cls, broker: LeaseBroker) -> AsyncBroker:
        """``broker``'s operations on an asyncio twin of its client (:func:`async_twin`).
        Make it in the event loop that will use it, and ``await close()`` it there.
        ValueError for a client that has no twin (a client class :func:`async_twin`
        does not know): use the broker's own methods there."""
        twin = async_twin(broker.client)
        if twin is None:
            raise ValueError(
                f"no asyncio twin for a client of class {type(broker.client).__name__}: "
                "use the LeaseBroker's own methods"
            )
        return cls(broker, twin)

    async def create_lease(self, request: LeaseRequest) -> Lease:
        """As :meth:`LeaseOps.create_lease`: the lease, or the same BrokerError."""
        broker = self.broker
        keys, args = broker.create_lease_call(request)
        reply = await self._script(RunScript("create_lease", keys, args))
        lease = broker.lease_from_reply(request, reply)
        await self.drive(broker.after_grant_steps(lease))
        return lease

    async def create_booking(self, request: BookingRequest) -> Booking:
        return await self.drive(self.broker.create_booking_steps(request))

    async def cancel_booking(self, booking_id: str) -> Booking:
        return await self.drive(self.broker.cancel_booking_steps(booking_id))

    async def reschedule_booking(
        self, booking_id: str, start_ns: int | None, duration_ns: int | None
    ) -> Booking:
        return await self.drive(
            self.broker.reschedule_booking_steps(booking_id, start_ns, duration_ns)
        )

    async def drive(self, steps: Steps[T]) -> T:
        """Run an operation's steps (core/steps.py), awaiting each on the store."""
        reply: Any = None
        while True:
            try:
                step = steps.send(reply)
            except StopIteration as done:
                return done.value
            if isinstance(step, ReadRecord):
                raw = await self._send("HGETALL", ("HGETALL", step.key))
                reply = _record(raw)
            elif isinstance(step, Bookkeeping):
                try:
                    reply = await self._send(str(step.command[0]), step.command)
                except BrokerError as error:  # sent in, not raised: the step is best effort
                    reply = error
            else:
                reply = await self._script(step)

    async def _script(self, step: RunScript) -> list:
        """One script call: its reply, with the refusals no caller handles raised."""
        script = self.broker.scripts[step.name]
        command = script.command(step.keys, step.args)
        reply = await self._send(step.name, command, script)
        return self.broker.checked_reply(step.name, step.args, reply)

    async def _run(
        self,
        command: Sequence[Any],
        script: BoundScript | None = None,
        deadline: float | None = None,
    ) -> Any:
        """Send ``command`` (``script``'s EVALSHA, or a plain command), again on a new
        connection when its connection broke, and after loading the script when Redis
        does not have it. ``deadline``: the loop time at which the pipe stops waiting
        (TimeoutError), for every command sent here."""
        key = routing_key(tuple(command)) if self._cluster else None
        for attempt in range(1 + CONNECTION_RETRIES):
            try:
                try:
                    return await self._execute(key, deadline, *command)
                except redis.exceptions.NoScriptError:
                    if script is None:
                        raise
                    # After a restart, a failover or SCRIPT FLUSH: load it (on the node
                    # the call goes to), send it again.
                    await self._execute(key, deadline, "SCRIPT", "LOAD", script.text)
                    return await self._execute(key, deadline, *command)
            except redis.exceptions.ConnectionError:
                # The connection broke; a new one is made. Sending again is safe: every
                # operation is idempotent by its client reference or id.
                if attempt == CONNECTION_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _execute(self, key: Any, deadline: float | None, *command: Any) -> Any:
        """``command`` on the pipe or the cluster node that serves ``key`` (either until
        ``deadline``), or the client."""
        if self._cluster is not None:
            return await self._cluster.call(key, *command, deadline=deadline)
        if self._pipe is not None:
            return await self._pipe.call(*command, deadline=deadline)
        return await self.client.execute_command(*command)

    async def _send(
        self, name: str, command: Sequence[Any], script: BoundScript | None = None
    ) -> Any:
        """:meth:`_run` ``command`` within the caller's deadline (or the socket timeout when
        it has none); Redis failures become the BrokerErrors the threaded path raises."""
        left = remaining_s()
        if left is not None and left <= 0:
            raise BrokerError(Reason.DEADLINE_EXCEEDED, "the call's deadline passed")
        budget = self._timeout_s if left is None else left
        try:
            if self._pipe is not None or self._cluster is not None:
                # The pipes time each reply themselves: one timer per call, where
                # asyncio.timeout cost the serving thread ~16 us more per call
                # (docs/architecture.md).
                deadline = asyncio.get_running_loop().time() + budget
                return await self._run(command, script, deadline)
            async with asyncio.timeout(budget):  # the embedded store's asyncio client
                return await self._run(command, script)
        except TimeoutError as exc:  # the builtin one, which asyncio's is
            if left is None:  # no deadline: Redis did not answer within the socket timeout
                failure = redis.exceptions.TimeoutError("Timeout reading from Redis")
                raise store_error(failure, name) from exc
            raise BrokerError(Reason.DEADLINE_EXCEEDED, "the call's deadline passed") from exc
        except redis.exceptions.RedisError as exc:
            raise store_error(exc, name) from exc

    async def close(self) -> None:
        """Close the connections (in the event loop that used them)."""
        if self._pipe is not None:
            await self._pipe.close()
        await self.client.aclose()
        await close_sentinels(self.client)


def _record(raw: Any) -> dict[str, bytes]:
    """An HGETALL reply as the threaded path reads it: text field names, bytes values
    (a flat list from the pipe, a dict from redis-py's client)."""
    pairs = raw.items() if isinstance(raw, dict) else zip(raw[::2], raw[1::2], strict=True)
    return {name.decode(): value for name, value in pairs}


def _is_fake(client: Any) -> bool:
    try:
        import fakeredis
    except ImportError:  # pragma: no cover - fakeredis is a dependency
        return False
    return isinstance(client, fakeredis.FakeAsyncRedis)
