"""Auto-pipelining for asyncio: one connection carries every call of an event loop.

Each call queues its command and waits for its reply. The commands queued while the
event loop runs its ready callbacks go out together in one write as soon as it is done
with them (no timer: the loop's next turn), and Redis answers the commands of one
connection in order, so the replies are handed out in the order the commands were
written. Calls made together therefore share the socket's writes and reads without
waiting for each other: no pool checkout, no lock, no task per call. This is what makes
CreateLease cheap on the front end (core/async_broker.py): redis-py's asyncio client
spends more CPU per call on its pool, retry and packing layers than the call's own work
(docs/architecture.md, "Why the BookingService is a grpc.aio server").

The connection itself is opened as redis-py opens it, from the same options (host and
port or Unix socket path, TLS files, user and password, database, timeouts), with
redis-py's reply parser (hiredis) and its error classes, so an error reply raises here
what it raises there (``NoScriptError``, ``BusyLoadingError``, ``OutOfMemoryError``...).

- **Errors.** An error reply is the error of its own call only. A broken connection
  fails every call waiting on it with ``ConnectionError``; the next call connects again.
- **Time.** A call waits at most until its ``deadline`` (one timer on its reply, where
  ``asyncio.timeout`` around it cost the serving thread more), and never longer than the
  socket timeout: a connection whose oldest call has waited that long is closed, as
  redis-py gives up on a read after it.
- **Sentinel.** For a client of a service behind Sentinel, each new connection goes to
  the primary the sentinels name at that moment, and a ``READONLY`` reply (the server
  was demoted to a replica) closes the connection and fails its call with
  ``ConnectionError``, as redis-py's Sentinel connections do: the caller's retry asks
  the sentinels again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import hiredis
import redis.asyncio
import redis.asyncio.connection
import redis.asyncio.sentinel
import redis.exceptions
from redis._parsers import BaseParser  # the error classes redis-py raises for a reply

# A call waits this long at most when neither its caller nor the client sets a timeout.
DEFAULT_TIMEOUT_S = 5.0

# What wraps each call when tracing is on (wire/tracing.py sets it): given the command,
# a context manager around the call, such as a span. redis-py's instrumentation does not
# see these calls, since they do not go through its client.
CommandSpan = Callable[[tuple[Any, ...]], AbstractContextManager[Any]]
_no_span = contextlib.nullcontext()


def _untraced(_command: tuple[Any, ...]) -> AbstractContextManager[Any]:
    return _no_span


command_span: CommandSpan = _untraced
_ASKING = hiredis.pack_command(("ASKING",))


def set_command_span(wrap: CommandSpan | None) -> None:
    """Wrap every later call in ``wrap(command)`` (None: no more)."""
    global command_span
    command_span = wrap or _untraced


class _Protocol(asyncio.Protocol):
    """The connection's replies, each handed to the oldest call still waiting."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse, replyError=BaseParser.parse_error
        )
        # The calls waiting for a reply, oldest first, each with when it was sent (None
        # for a reply no one waits for: an ASKING's).
        self.waiting: deque[tuple[asyncio.Future | None, float]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: BaseException | None = None
        # Commands written since the loop last ran its callbacks: sent together, in one
        # system call, by flush (scheduled by the first of them).
        self.unsent: list[bytes] = []

    def flush(self) -> None:
        unsent, self.unsent = self.unsent, []
        if self.lost is None and unsent:
            self.transport.write(b"".join(unsent))  # type: ignore[union-attr]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while True:
            try:
                reply = self.reader.gets()
            except redis.exceptions.InvalidResponse as exc:
                self.abandon(exc)
                return
            if reply is False:
                return
            if not self.waiting:  # a reply nobody asked for: the stream is out of step
                self.abandon(redis.exceptions.InvalidResponse("a reply no command asked for"))
                return
            future, _sent = self.waiting.popleft()
            if future is not None and not future.done():  # else the reply is dropped
                future.set_result(reply)

    def abandon(self, error: BaseException) -> None:
        """Close the connection now, failing the calls still waiting on it with
        ``error``: a call made before the loop reports the loss goes on a new one."""
        self.transport.abort()  # type: ignore[union-attr]
        self._fail(error)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(redis.exceptions.ConnectionError(f"Redis closed the connection: {exc or 'EOF'}"))

    def _fail(self, error: BaseException) -> None:
        self.lost = error
        while self.waiting:
            future, _sent = self.waiting.popleft()
            if future is not None and not future.done():
                future.set_exception(error)


def _expire(future: asyncio.Future) -> None:
    """A call's deadline passed before its reply came."""
    if not future.done():
        future.set_exception(TimeoutError("the call's deadline passed"))


class AsyncPipe:
    """Calls on one pipelined connection to the Redis that ``client`` (a redis-py
    asyncio client of a single node) talks to. Use it on one event loop."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        pool = client.connection_pool
        self._setup(
            dict(pool.connection_kwargs),
            unix=issubclass(pool.connection_class, redis.asyncio.UnixDomainSocketConnection),
            tls=issubclass(pool.connection_class, redis.asyncio.SSLConnection),
            # Behind Sentinel: the pool whose sentinels name the primary to connect to.
            sentinel=(
                pool if isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool) else None
            ),
        )

    @classmethod
    def to_node(cls, options: dict[str, Any], *, tls: bool) -> AsyncPipe:
        """A pipe to the server at ``options["host"]``, ``options["port"]`` (a node of a
        Redis Cluster), with redis-py's connection ``options``."""
        pipe = cls.__new__(cls)
        pipe._setup(dict(options), unix=False, tls=tls, sentinel=None)
        return pipe

    def _setup(self, options: dict[str, Any], *, unix: bool, tls: bool, sentinel: Any) -> None:
        self._options = options
        self._unix = unix
        self._tls = tls
        self._sentinel = sentinel
        self.timeout_s = options.get("socket_timeout") or DEFAULT_TIMEOUT_S
        self._protocol: _Protocol | None = None
        self._connecting = asyncio.Lock()

    async def call(self, *command: Any, asking: bool = False, deadline: float | None = None) -> Any:
        """Send one command and return its reply (raise its error reply). A call
        cancelled while it waits leaves the connection as it was. ``asking``: send
        ``ASKING`` right before it (a Redis Cluster's ASK redirection). ``deadline``:
        the event loop's time (``loop.time()``) at which the call stops waiting,
        connecting included, and raises TimeoutError; its reply, if it comes later,
        is dropped as a cancelled call's is."""
        with command_span(command):
            protocol = self._protocol
            if protocol is None or protocol.lost is not None:
                if deadline is None:
                    protocol = await self._connect()
                else:  # rare (a first call, a lost connection): asyncio's timeout
                    async with asyncio.timeout_at(deadline):
                        protocol = await self._connect()
            return await self._send(protocol, command, asking, deadline)

    async def _send(
        self,
        protocol: _Protocol,
        command: tuple[Any, ...],
        asking: bool = False,
        deadline: float | None = None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        if protocol.waiting and now - protocol.waiting[0][1] > self.timeout_s:
            # The oldest call has waited longer than a read may: the connection hangs.
            protocol.abandon(redis.exceptions.ConnectionError("the connection hung"))
            raise redis.exceptions.TimeoutError("Timeout reading from Redis")
        future = loop.create_future()
        if not protocol.unsent:
            loop.call_soon(protocol.flush)
        if asking:  # its reply (OK) goes to no one; the command's comes next
            protocol.waiting.append((None, now))
            protocol.unsent.append(_ASKING)
        protocol.waiting.append((future, now))
        protocol.unsent.append(hiredis.pack_command(command))
        expiry = None if deadline is None else loop.call_at(deadline, _expire, future)
        try:
            reply = await future
        finally:
            if expiry is not None:
                expiry.cancel()
        # An error reply, as the class redis-py gives it (a ResponseError, or one of the
        # ConnectionErrors such as AuthenticationError).
        if isinstance(reply, redis.exceptions.RedisError):
            if self._sentinel is not None and isinstance(reply, redis.exceptions.ReadOnlyError):
                # The primary this connection reached has been demoted: the next
                # connection asks the sentinels for the new one.
                demoted = redis.exceptions.ConnectionError("the primary is now a replica")
                protocol.abandon(demoted)
                raise demoted from reply
            raise reply
        return reply

    async def _connect(self) -> _Protocol:
        async with self._connecting:
            if self._protocol is not None and self._protocol.lost is None:
                return self._protocol
            if self._protocol is not None and self._protocol.transport is not None:
                self._protocol.transport.abort()
            self._protocol = None
            options = self._options
            protocol: _Protocol | None = None
            try:
                async with asyncio.timeout(options.get("socket_connect_timeout") or None):
                    protocol = await self._open()
                    await self._handshake(protocol)
            except BaseException as exc:
                if protocol is not None and protocol.transport is not None:
                    protocol.transport.abort()
                if isinstance(exc, (OSError, TimeoutError)):
                    raise redis.exceptions.ConnectionError(
                        f"cannot connect to Redis: {exc}"
                    ) from exc
                raise
            self._protocol = protocol
            return protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        options = self._options
        if self._unix:
            _transport, protocol = await loop.create_unix_connection(_Protocol, options["path"])
            return protocol
        ssl_context = None
        if self._tls:
            ssl_context = redis.asyncio.connection.RedisSSLContext(
                keyfile=options.get("ssl_keyfile"),
                certfile=options.get("ssl_certfile"),
                cert_reqs=options.get("ssl_cert_reqs", "required"),
                ca_certs=options.get("ssl_ca_certs"),
                ca_data=options.get("ssl_ca_data"),
                check_hostname=options.get("ssl_check_hostname", False),
            ).get()
        host, port = options.get("host", "localhost"), options.get("port", 6379)
        if self._sentinel is not None:  # MasterNotFoundError (a ConnectionError) when none
            pool = self._sentinel
            host, port = await pool.sentinel_manager.discover_master(pool.service_name)
        transport, protocol = await loop.create_connection(_Protocol, host, port, ssl=ssl_context)
        sock = transport.get_extra_info("socket")
        if sock is not None and options.get("socket_keepalive"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return protocol

    async def _handshake(self, protocol: _Protocol) -> None:
        """What redis-py sends on a new connection that matters here: credentials and the
        database (RESP2, as the broker's clients speak)."""
        options = self._options
        password, username = options.get("password"), options.get("username")
        if password:
            await self._send(
                protocol, ("AUTH", username, password) if username else ("AUTH", password)
            )
        if options.get("db"):
            await self._send(protocol, ("SELECT", options["db"]))

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
