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
from leasebroker.core.settings import BrokerConfig

FILLER = "filler"
CHUNK = b"x" * 64 * 1024


@pytest.fixture(scope="module")
def small_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[redis.Redis]:
    folder: Path = tmp_path_factory.mktemp("oom")
    port = redis_servers.start(folder, "--maxmemory", "4mb", "--maxmemory-policy", "noeviction")
    client = redis.Redis(port=port, protocol=2)
    try:
        yield client
    finally:
        client.close()
        redis_servers.stop(port)


def fill(client: redis.Redis) -> None:
    """Append to one key until Redis refuses with OOM."""
    for _ in range(1000):
        try:
            client.rpush(FILLER, CHUNK)
        except redis.exceptions.OutOfMemoryError:
            return
    raise AssertionError("maxmemory was never reached")


def keys_of(client: redis.Redis) -> dict[bytes, object]:
    """Every key but the filler, with its contents: what a refused script must not touch."""
    read = {b"hash": client.hgetall, b"zset": lambda k: client.zrange(k, 0, -1, withscores=True),
            b"stream": client.xrange, b"set": client.smembers, b"string": client.get}  # fmt: skip
    return {k: read[client.type(k)](k) for k in client.scan_iter() if k != FILLER.encode()}


def test_full_memory_refuses_writes_and_changes_nothing(small_redis: redis.Redis) -> None:
    small_redis.flushall()
    broker = LeaseBroker(small_redis, BrokerConfig(key_prefix="oom", default_capacity=2))
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

    small_redis.delete(FILLER)
    assert broker.create_booking(booking_request(held.lease_id)).status == "confirmed"
    assert broker.create_lease(lease_request(client_reference="new")).fence == 2
