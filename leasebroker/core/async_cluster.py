"""A Redis Cluster for asyncio: one pipelined connection per primary, each command sent
to the primary that serves its key.

Every script of the broker touches the keys of one merchant, which share a hash tag and
so one hash slot; the registry and due-index commands touch one key each. So each
command has one key that routes it (:func:`routing_key`), and :class:`ClusterPipes`
sends it on the :class:`~leasebroker.core.async_pipe.AsyncPipe` of the primary that the
threaded cluster client's slot map names for that key's slot. One slot map serves both
paths: the threaded client (admin service, sweeper) and this one update the same map.

Redirections and failovers are followed as redis-py's cluster client follows them:

- ``MOVED``: the slot has a new owner; the map is patched (``move_slot``) and the
  command sent there.
- ``ASK``: the slot is being migrated and the key has moved already; the command goes
  to the node named, right after ``ASKING``, and the map is left as it is.
- A broken connection, or ``CLUSTERDOWN``: the map is read again from the cluster (in a
  thread: it is a few blocking round trips, and every call of the loop waits for the
  same one) and the error goes to the caller, whose retry (core/async_broker.py) finds
  the new owner.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.cluster
import redis.connection
import redis.exceptions
from redis.crc import key_slot

from leasebroker.core.async_pipe import DEFAULT_TIMEOUT_S, AsyncPipe

log = logging.getLogger(__name__)

# Redirections one command follows before giving up (redis-py's cluster client: 3 tries).
MAX_REDIRECTIONS = 5

# The node connection options an AsyncPipe uses (the rest of the cluster client's
# options are for its own connection classes).
_PIPE_OPTIONS = frozenset(
    {"username", "password", "socket_timeout", "socket_connect_timeout", "socket_keepalive"}
    | {"ssl_keyfile", "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data"}
    | {"ssl_check_hostname"}
)

_SCRIPT_CALLS = frozenset({b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO"})


def routing_key(command: tuple[Any, ...]) -> Any:
    """The key whose hash slot decides where ``command`` goes: a script's first key, or
    a plain command's first argument. None for a command with no key."""
    name = command[0].encode() if isinstance(command[0], str) else command[0]
    if name.upper() in _SCRIPT_CALLS:
        return command[3] if int(command[2]) > 0 else None
    return command[1] if len(command) > 1 else None


class ClusterPipes:
    """Calls to the Redis Cluster ``cluster`` (a threaded redis-py cluster client, whose
    slot map and connection options it uses) from one event loop."""

    def __init__(self, cluster: redis.cluster.RedisCluster) -> None:
        self.cluster = cluster
        options = cluster.nodes_manager.connection_kwargs
        connection_class = options.get("connection_class", redis.connection.Connection)
        self._tls = issubclass(connection_class, redis.connection.SSLConnection)
        self._options = {name: value for name, value in options.items() if name in _PIPE_OPTIONS}
        self.timeout_s = self._options.get("socket_timeout") or DEFAULT_TIMEOUT_S
        self._pipes: dict[str, AsyncPipe] = {}
        self._refreshing: asyncio.Future | None = None

    async def call(self, key: Any, *command: Any, deadline: float | None = None) -> Any:
        """Send ``command`` to the primary that serves ``key`` and return its reply
        (raise its error reply). ``deadline``: as for :meth:`AsyncPipe.call`, for the
        whole call, re-reading the slot map included."""
        if key is None:
            raise ValueError(f"no key routes {command[0]!r} on a Redis Cluster")
        manager = self.cluster.nodes_manager
        slot = key_slot(key if isinstance(key, bytes) else str(key).encode())
        try:
            node = manager.get_node_from_slot(slot)
        except redis.exceptions.SlotNotCoveredError as exc:  # not a RedisError
            await self.refresh(deadline)
            raise redis.exceptions.ClusterDownError(f"no node serves slot {slot}") from exc
        host, port, asking = node.host, node.port, False
        for _ in range(MAX_REDIRECTIONS):
            try:
                pipe = self._pipe(host, port)
                return await pipe.call(*command, asking=asking, deadline=deadline)
            except redis.exceptions.MovedError as moved:
                manager.move_slot(moved)
                host, port, asking = moved.host, moved.port, False
            except redis.exceptions.AskError as ask:
                host, port, asking = ask.host, ask.port, True
            except (redis.exceptions.ConnectionError, redis.exceptions.ClusterDownError):
                await self.refresh(deadline)
                raise
        raise redis.exceptions.ClusterDownError(
            f"slot {slot} was redirected {MAX_REDIRECTIONS} times in a row"
        )

    def _pipe(self, host: str, port: int) -> AsyncPipe:
        name = f"{host}:{port}"
        pipe = self._pipes.get(name)
        if pipe is None:
            options = {**self._options, "host": host, "port": port}
            pipe = self._pipes[name] = AsyncPipe.to_node(options, tls=self._tls)
        return pipe

    async def refresh(self, deadline: float | None = None) -> None:
        """Read the slot map from the cluster again: once for all the calls that ask
        while it is read. A failure leaves the map as it was (the caller's error says
        enough). ``deadline`` (loop time): this caller stops waiting then (TimeoutError);
        the reading goes on for the others."""
        if self._refreshing is None:
            loop = asyncio.get_running_loop()
            self._refreshing = loop.run_in_executor(None, self._read_slot_map)
            self._refreshing.add_done_callback(self._refreshed)
        async with asyncio.timeout_at(deadline):
            await asyncio.shield(self._refreshing)

    def _refreshed(self, _done: asyncio.Future) -> None:
        self._refreshing = None

    def _read_slot_map(self) -> None:
        try:
            self.cluster.nodes_manager.initialize()
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            # No node answered: the map stays, and the next failure asks again.
            log.warning("could not read the Redis Cluster's slot map: %s", exc)

    async def aclose(self) -> None:
        """Close every connection (in the event loop that used them)."""
        for pipe in self._pipes.values():
            await pipe.close()
        self._pipes.clear()
