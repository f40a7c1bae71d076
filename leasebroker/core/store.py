"""Connecting to the store: a real Redis (single node, cluster or behind Sentinel, over
TCP, TLS or a Unix socket) or the embedded fakeredis.

Every client speaks RESP2 (``protocol=2``) so replies have the same shape on
redis-py 5 through 8 and on fakeredis. Clients return bytes: lease records
hold msgpack.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

import redis
import redis.cluster
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from leasebroker.core.connections import DeadlinePool, connection_class
from leasebroker.core.sentinel import is_sentinel_url, parse_sentinel_url, sentinel_client

log = logging.getLogger(__name__)

MIN_REDIS_VERSION = (6, 2)
# How long a caller waits for a free pooled connection before the store counts as unavailable.
POOL_WAIT_S = 5.0
SOCKET_TIMEOUT_S = 5.0
CONNECT_TIMEOUT_S = 2.0
SCHEMES = ("redis", "rediss", "unix", "redis+sentinel")


@dataclass(frozen=True)
class RedisTls:
    """Files for TLS to Redis (``rediss://``): the CA to trust (default: the system's),
    and a client certificate and key for mutual TLS."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    def options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"ssl_cert_reqs": "required"}
        if self.ca:
            options["ssl_ca_certs"] = self.ca
        if self.cert:
            options["ssl_certfile"] = self.cert
        if self.key:
            options["ssl_keyfile"] = self.key
        return options

    def given(self) -> bool:
        return bool(self.ca or self.cert or self.key)


def check_url(url: str) -> str:
    """``url`` if it is a Redis URL leasebroker can use; ValueError naming the problem.
    Nothing is connected."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(
            f"{safe_url(url)!r}: the scheme must be one of " + ", ".join(f"{s}://" for s in SCHEMES)
        )
    if scheme == "redis+sentinel":
        parse_sentinel_url(url)
    else:
        redis.connection.parse_url(url)
        if scheme != "unix":
            from urllib.parse import urlsplit

            parts = urlsplit(url)
            parts.port  # noqa: B018  (raises ValueError for a port out of range)
            if not parts.hostname:
                raise ValueError(f"{safe_url(url)!r} names no host")
            if not re.fullmatch(r"/?[0-9]*", parts.path):
                raise ValueError(f"{safe_url(url)!r}: the path must be a database number")
    return url


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


# How often a command is sent again on a new connection when its connection broke.
STORE_RETRIES = 2


def store_backoff() -> ExponentialWithJitterBackoff:
    """The wait before each retry: 10 ms, doubling, at most 200 ms, jittered."""
    return ExponentialWithJitterBackoff(base=0.01, cap=0.2)


def connect(
    url: str, *, pool_size: int, cluster: bool = False, tls: RedisTls | None = None
) -> Store:
    """Connect to Redis at ``url``; ``pool_size`` must cover every concurrent caller.

    A blocking pool makes a burst wait for a connection instead of failing
    (redis-py's default pool raises "Too many connections" when exhausted).
    Only a cluster client connects here (to discover the nodes); the others connect
    on first use.
    """
    check_url(url)
    scheme = url.split("://", 1)[0].lower()
    if tls is not None and tls.given() and scheme != "rediss":
        raise ValueError("--redis-tls-* files need a rediss:// URL")
    options: dict[str, Any] = {
        "protocol": 2,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": 30,
        # Two quick retries of a broken connection, then STORE_UNAVAILABLE: redis-py's
        # default takes seconds, longer than a booking front end should wait. Retrying
        # a script is safe: every operation is idempotent by its reference or id.
        "retry": Retry(store_backoff(), STORE_RETRIES),
    }
    if scheme == "rediss":
        options.update((tls or RedisTls()).options())
    if is_sentinel_url(url):
        if cluster:
            raise ValueError("a Sentinel URL cannot name a Redis Cluster")
        parsed = parse_sentinel_url(url)
        client = sentinel_client(parsed, pool_size=pool_size, options=options)
        return Store(client, f"Redis behind Sentinel at {parsed.safe()}", False)
    if cluster:
        client = redis.cluster.RedisCluster.from_url(
            url,
            max_connections=pool_size,
            connection_pool_class=DeadlinePool,
            connection_class=connection_class(url),
            **options,
        )
        return Store(client, f"Redis Cluster at {safe_url(url)}", False)
    pool = DeadlinePool.from_url(
        url,
        max_connections=pool_size,
        timeout=POOL_WAIT_S,
        connection_class=connection_class(url),
        **options,
    )
    return Store(redis.Redis(connection_pool=pool), f"Redis at {safe_url(url)}", False)


def open_redis(
    url: str, *, pool_size: int, cluster: bool = False, tls: RedisTls | None = None
) -> tuple[Store, list[str]]:
    """Connect to ``url``, check that it answers and is fit (:func:`check_server`);
    returns the store and the start-up warnings, or raises :class:`StoreError`."""
    where = f"Redis at {safe_url(url)}"
    try:
        store = connect(url, pool_size=pool_size, cluster=cluster, tls=tls)
    except ValueError as exc:  # redis-py's words for a URL it cannot use
        raise StoreError(f"--redis-url {safe_url(url)}: {exc}", unreachable=False) from exc
    except redis.exceptions.RedisClusterException as exc:  # no seed node answered
        raise StoreError(f"cannot reach {where}: {exc}", unreachable=True) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise StoreError(f"cannot reach {where}: {exc}", unreachable=True) from exc
    try:
        store.client.ping()
        if not cluster:
            _refuse_cluster_node(store.client, url)
        warnings = check_server(store.client)
    except redis.exceptions.AuthenticationError as exc:
        store.close()
        raise StoreError(f"{where} refused the credentials: {exc}", unreachable=False) from exc
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        store.close()
        raise StoreError(f"cannot reach {where}: {exc}", unreachable=True) from exc
    except RuntimeError as exc:
        store.close()
        raise StoreError(str(exc), unreachable=False) from exc
    except redis.exceptions.ResponseError as exc:  # PING denied by an ACL, or the like
        store.close()
        raise StoreError(f"{where} refused the start-up checks: {exc}", unreachable=False) from exc
    return store, warnings


def _refuse_cluster_node(client: Any, url: str) -> None:
    """A node of a Redis Cluster used as a single node would fail every call for a key
    on another node (MOVED): refuse it at start (RuntimeError, a usage error)."""
    try:
        enabled = client.info("cluster").get("cluster_enabled")
    except redis.exceptions.ResponseError:  # INFO denied (ACL), or a proxy without it
        return
    if str(enabled) == "1":
        raise RuntimeError(
            f"Redis at {safe_url(url)} is a node of a Redis Cluster: give --redis-cluster "
            "(or LEASEBROKER_REDIS_CLUSTER=true)"
        )


def safe_url(url: str) -> str:
    """The URL without its password, for logs."""
    from urllib.parse import urlsplit, urlunsplit

    if is_sentinel_url(url):
        try:
            return parse_sentinel_url(url).safe()
        except ValueError:
            return url.split("://", 1)[0] + "://..."
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url.split("@", 1)[-1] if "@" in url else url
    if not password:
        return url
    host = parts.hostname or ""
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    netloc = f"{parts.username or ''}:***@{host}{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def check_server(client: Any) -> list[str]:
    """Start-up sanity checks on a real server; returns warnings, raises on a fatal problem.

    - Redis older than 6.2 is refused (scripts rely on effects replication and TIME).
    - ``maxmemory-policy`` other than ``noeviction`` is warned about: an evicted hold
      is a silent double grant. Managed services that hide CONFIG get a warning too.
    """
    warnings: list[str] = []
    try:
        info = client.info("server")
    except redis.exceptions.ResponseError:  # denied by an ACL, renamed or disabled
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
