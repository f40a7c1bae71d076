"""Connecting to the store: a real Redis (single node or cluster) or the embedded fakeredis.

Every client speaks RESP2 (``protocol=2``) so replies have the same shape on
redis-py 5 through 8 and on fakeredis. Clients return bytes: lease records
hold msgpack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis
import redis.cluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from leasebroker.core.connections import connection_class

log = logging.getLogger(__name__)

MIN_REDIS_VERSION = (6, 2)
# How long a caller waits for a free pooled connection before the store counts as unavailable.
POOL_WAIT_S = 5.0
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0


class StoreError(Exception):
    """The store cannot be used: ``unreachable`` (worth retrying later) or refused
    (a bad URL, a Redis too old): the message says which and why."""

    def __init__(self, message: str, *, unreachable: bool) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass
class Store:
    """A connected client and what it is, for the start-up banner."""

    client: Any
    description: str
    embedded: bool

    def close(self) -> None:
        """Close the client and every pooled connection."""
        pool = getattr(self.client, "connection_pool", None)
        self.client.close()
        if pool is not None:
            pool.disconnect()


def embedded_store() -> Store:
    """An in-process fakeredis: one process only, nothing survives a restart."""
    import fakeredis  # only needed in embedded mode

    client = fakeredis.FakeRedis(server=fakeredis.FakeServer(), protocol=2)
    return Store(client, "embedded in-process store (single process, not durable)", True)


def connect(url: str, *, pool_size: int, cluster: bool = False) -> Store:
    """Connect to Redis at ``url``; ``pool_size`` must cover every concurrent caller.

    A blocking pool makes a burst wait for a connection instead of failing
    (redis-py's default pool raises "Too many connections" when exhausted).
    """
    options: dict[str, Any] = {
        "protocol": 2,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": 30,
        # Two quick retries of a broken connection, then STORE_UNAVAILABLE: redis-py's
        # default takes seconds, longer than a booking front end should wait. Retrying
        # a script is safe: every operation is idempotent by its reference or id.
        "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.2), 2),
    }
    if cluster:
        client = redis.cluster.RedisCluster.from_url(
            url,
            max_connections=pool_size,
            connection_pool_class=redis.BlockingConnectionPool,
            connection_class=connection_class(url),
            **options,
        )
        return Store(client, f"Redis Cluster at {safe_url(url)}", False)
    pool = redis.BlockingConnectionPool.from_url(
        url,
        max_connections=pool_size,
        timeout=POOL_WAIT_S,
        connection_class=connection_class(url),
        **options,
    )
    return Store(redis.Redis(connection_pool=pool), f"Redis at {safe_url(url)}", False)


def open_redis(url: str, *, pool_size: int, cluster: bool = False) -> tuple[Store, list[str]]:
    """Connect to ``url``, check that it answers and is fit (:func:`check_server`);
    returns the store and the start-up warnings, or raises :class:`StoreError`."""
    where = f"Redis at {safe_url(url)}"
    try:
        store = connect(url, pool_size=pool_size, cluster=cluster)
    except ValueError as exc:  # redis-py's words for a URL it cannot use
        raise StoreError(f"--redis-url {safe_url(url)}: {exc}", unreachable=False) from exc
    try:
        store.client.ping()
        warnings = check_server(store.client)
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        store.close()
        raise StoreError(f"cannot reach {where}: {exc}", unreachable=True) from exc
    except RuntimeError as exc:
        store.close()
        raise StoreError(str(exc), unreachable=False) from exc
    return store, warnings


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        host = parts.hostname or ""
        netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
        parts = parts._replace(netloc=netloc)
    return urlunsplit(parts)


def check_server(client: Any) -> list[str]:
    """Start-up sanity checks on a real server; returns warnings, raises on a fatal problem.

    - Redis older than 6.2 is refused (scripts rely on effects replication and TIME).
    - ``maxmemory-policy`` other than ``noeviction`` is warned about: an evicted hold
      is a silent double grant. Managed services that hide CONFIG get a warning too.
    """
    warnings: list[str] = []
    try:
        info = client.info("server")
    except redis.exceptions.NoPermissionError:
        info = {}
        warnings.append(
            "could not read the Redis version (INFO is not allowed for this user); "
            "leasebroker needs Redis 6.2 or newer"
        )
    if "redis_version" in info:  # a single node; a cluster client answers per node
        versions = [info["redis_version"]]
    else:
        versions = [node["redis_version"] for node in info.values() if isinstance(node, dict)]
    for version in versions:
        parsed = tuple(int(p) for p in str(version).split(".")[:2])
        if parsed < MIN_REDIS_VERSION:
            raise RuntimeError(f"Redis {version} is too old; leasebroker needs 6.2 or newer")
    try:
        policy = client.config_get("maxmemory-policy")
    except redis.exceptions.ResponseError:
        warnings.append(
            "could not read maxmemory-policy (CONFIG is disabled); make sure it is "
            "noeviction: an evicted hold is a silent double booking"
        )
    else:
        values = _config_values(policy, "maxmemory-policy")
        bad = sorted({v for v in values if v != "noeviction"})
        if bad:
            warnings.append(
                f"maxmemory-policy is {', '.join(bad)}, not noeviction: under memory "
                "pressure Redis may evict holds, and a slot could be double booked"
            )
    return warnings


def _config_values(reply: dict[Any, Any], name: str) -> list[str]:
    """CONFIG GET replies as ``{name: value}``; cluster clients nest them per node."""
    values: list[str] = []
    for key, value in reply.items():
        if isinstance(value, dict):
            values.extend(_config_values(value, name))
        elif _text(key) == name:
            values.append(_text(value))
    return values


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
