"""Redis Sentinel: the ``redis+sentinel://`` URL and a client that follows failovers.

``redis+sentinel://[user:password@]host:port[,host:port...]/service_name[/db]`` names
the sentinels (port 26379 when left out), the service they monitor and the database.
The user and password are the Redis server's (primary and replicas); the sentinels
are asked without authentication. The client asks the sentinels for the current
primary on every new connection, and drops its connections when the primary
answers ``READONLY`` (it was demoted), so calls during a failover fail with
UNAVAILABLE and succeed once the sentinels have promoted a replica.
:func:`async_sentinel_twin` makes the asyncio client of the same service, which the
pipelined connection of core/async_pipe.py follows the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from leasebroker.core.connections import _DeadlineMixin

SCHEME = "redis+sentinel"
DEFAULT_SENTINEL_PORT = 26379


class DeadlineSentinelConnection(_DeadlineMixin, redis.sentinel.SentinelManagedConnection):
    """A connection to whichever server the sentinels name as primary, bounded by the
    call's deadline like :mod:`leasebroker.core.connections`."""


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service_name: str
    db: int
    username: str | None
    password: str | None

    def safe(self) -> str:
        """The URL without its password, for logs."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
        auth = f"{self.username or ''}:***@" if self.password else ""
        return f"{SCHEME}://{auth}{hosts}/{self.service_name}/{self.db}"


def is_sentinel_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == SCHEME


def parse_sentinel_url(url: str) -> SentinelUrl:
    """The parts of a ``redis+sentinel://`` URL; ValueError naming what is wrong."""
    rest = url.split("://", 1)[1]
    netloc, _, path = rest.partition("/")
    path = path.split("?", 1)[0]
    username = password = None
    if "@" in netloc:
        auth, netloc = netloc.rsplit("@", 1)
        user, sep, secret = auth.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if sep else None
    sentinels = []
    for item in netloc.split(","):
        host, sep, port_text = item.strip().rpartition(":") if ":" in item else (item, "", "")
        host = host.strip("[]")
        if not host:
            raise ValueError(f"a sentinel address is empty in {netloc!r}")
        try:
            port = int(port_text) if sep else DEFAULT_SENTINEL_PORT
        except ValueError:
            raise ValueError(f"not a port: {port_text!r}") from None
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        sentinels.append((host, port))
    parts = [p for p in path.split("/") if p]
    if not parts or len(parts) > 2:
        raise ValueError("give the service name, and optionally the db: .../service_name[/db]")
    try:
        db = int(parts[1]) if len(parts) == 2 else 0
    except ValueError:
        raise ValueError(f"not a database number: {parts[1]!r}") from None
    return SentinelUrl(tuple(sentinels), unquote(parts[0]), db, username, password)


def sentinel_client(parsed: SentinelUrl, *, pool_size: int, options: dict[str, Any]) -> redis.Redis:
    """A client of the service's current primary; no connection is made until used."""
    sentinel_options = {
        key: options[key] for key in ("socket_timeout", "socket_connect_timeout") if key in options
    }
    manager = redis.sentinel.Sentinel(
        list(parsed.sentinels), sentinel_kwargs={**sentinel_options, "protocol": 2}
    )
    return manager.master_for(
        parsed.service_name,
        redis_class=redis.Redis,
        connection_class=DeadlineSentinelConnection,
        max_connections=pool_size,
        db=parsed.db,
        username=parsed.username,
        password=parsed.password,
        **options,
    )


def async_sentinel_twin(
    pool: redis.sentinel.SentinelConnectionPool, options: dict[str, Any]
) -> redis.asyncio.Redis:
    """An asyncio client of the service ``pool`` (a sync Sentinel client's pool) serves:
    the same sentinels, asked with the same options, and ``options`` for the primary's
    connections. Create it on the event loop that will use it."""
    manager = pool.sentinel_manager
    addresses = [
        (
            each.connection_pool.connection_kwargs["host"],
            each.connection_pool.connection_kwargs["port"],
        )
        for each in manager.sentinels
    ]
    twin = redis.asyncio.sentinel.Sentinel(
        addresses,
        min_other_sentinels=manager.min_other_sentinels,
        sentinel_kwargs=dict(manager.sentinel_kwargs),
    )
    return twin.master_for(pool.service_name, redis_class=redis.asyncio.Redis, **options)


async def close_sentinels(client: Any) -> None:
    """Close the connections an asyncio Sentinel client keeps to its sentinels (closing
    the client closes only those to the primary); nothing for any other client."""
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()
