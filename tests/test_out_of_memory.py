"""Under maxmemory with noeviction, writes are refused as STORE_UNAVAILABLE before any change.

Runs on a redis-server of its own with a tiny maxmemory (fakeredis has no memory limit).
Each script's first memory-growing write comes before anything else changes, so Redis
refuses the whole script: nothing half-written, and freeing memory makes it work again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis_servers
from support import booking_request, lease_request, refusal, slot

from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import Reason
from leasebroker.core.model import InventorySlot
from leasebroker.core.settings import EVENTS_OFF, BrokerConfig
from leasebroker.core.units import MS_PER_HOUR

FILLER = "filler"
CHUNK = b"x" * 64 * 1024
MAXMEMORY = "4mb"


@pytest.fixture(scope="module")
def small_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    folder: Path = tmp_path_factory.mktemp("oom")
    port = redis_servers.start(folder, "--maxmemory", MAXMEMORY, "--maxmemory-policy", "noeviction")
    client = redis.Redis(port=port, protocol=2)
    try:
        yield client
    finally:
        client.close()
        redis_servers.stop(port)


def fill(client: redis.Redis) -> None:
    """Append to one key until Redis refuses with OOM, then lower maxmemory below what
    is in use: the refused push frees its own query buffer, which can leave room for a
    few small writes (a script's HINCRBY, say) that a real full Redis would refuse."""
    for _ in range(1000):
        try:
            client.rpush(FILLER, CHUNK)
        except redis.exceptions.OutOfMemoryError:
            used = client.info("memory")["used_memory"]
            client.config_set("maxmemory", used - 4 * len(CHUNK))
            return
    raise AssertionError("maxmemory was never reached")


def relieve(client: redis.Redis) -> None:
    client.delete(FILLER)
    client.config_set("maxmemory", MAXMEMORY)


def keys_of(client: redis.Redis) -> dict[bytes, object]:
    """Every key but the filler, with its contents: what a refused script must not touch."""
    read = {b"hash": client.hgetall, b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"stream": client.xrange, b"set": client.smembers, b"string": client.get}  # fmt: skip
    return {k: read[client.type(k)](k) for k in client.scan_iter() if k != FILLER.encode()}


# With the event streams off, no XADD can be a script's first, memory-growing write.
@pytest.mark.parametrize("events_retention_ms", [MS_PER_HOUR, EVENTS_OFF], ids=["events", "off"])
def test_full_memory_refuses_writes_and_changes_nothing(
    small_redis: redis.Redis, events_retention_ms: int
) -> None:
    small_redis.flushall()
    relieve(small_redis)  # also after a case that failed before it could
    config = BrokerConfig(
        key_prefix="oom", default_capacity=2, events_retention_ms=events_retention_ms
    )
    broker = LeaseBroker(small_redis, config)
    held = broker.create_lease(lease_request(client_reference="held"))
    broker.replace_inventory("merchant-1", [InventorySlot(slot(), 2)])
    fill(small_redis)
    before = keys_of(small_redis)

    assert refusal(broker.create_lease, lease_request(client_reference="new")).reason is (
        Reason.STORE_UNAVAILABLE
    )
    assert refusal(broker.create_booking, booking_request(held.lease_id)).reason is (
        Reason.STORE_UNAVAILABLE
    )
    assert refusal(broker.replace_inventory, "merchant-1", [InventorySlot(slot(), 1)]).reason is (
        Reason.STORE_UNAVAILABLE
    )
    assert keys_of(small_redis) == before

    relieve(small_redis)
    assert broker.create_booking(booking_request(held.lease_id)).status == "confirmed"
    assert broker.create_lease(lease_request(client_reference="new")).fence == 2
