"""Redis memory per live lease: ``used_memory`` before and after granting ``leases``
leases (each a fresh slot, spread over merchants of 1,000 leases each), with every
structure the broker writes counted: records, client references, slot sets, the lease
index, fences, the event stream and the merchant registry.

``used_memory`` is the whole server's: on a shared Redis, other clients' writes during
the run count too. The breakdown by key kind comes from MEMORY USAGE on one merchant.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

LEASES_PER_MERCHANT = 1000
SLOT_STEP_NS = 60 * 10**9


@dataclass
class MemoryResult:
    leases: int
    merchants: int
    bytes_per_lease: float
    by_kind: dict[str, float]  # bytes per lease, per key kind, from one merchant


def _used_memory(client: Any, settle_s: float = 10.0) -> int:
    """``used_memory`` less what clients' buffers take (``mem_clients_normal``): an
    earlier section's connections closing, or this one's opening, must not count. Read
    once Redis has freed what UNLINK handed its background thread (an earlier section's
    keys), which otherwise falls under the measurement's feet."""
    deadline = time.monotonic() + settle_s
    while True:
        info = client.info("memory")
        if not int(info.get("lazyfree_pending_objects", 0)) or time.monotonic() > deadline:
            return int(info["used_memory"]) - int(info.get("mem_clients_normal", 0))
        time.sleep(0.05)


def _breakdown(client: Any, prefix: str, merchant: str, leases: int) -> dict[str, float]:
    sizes: Counter[str] = Counter()
    keys = list(client.scan_iter(match=f"{prefix}:{{{merchant}}}:*", count=1000))
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.memory_usage(key, samples=0)
        usages = pipe.execute()
    for key, usage in zip(keys, usages, strict=True):
        kind = key.decode().split("}:", 1)[1].split(":", 1)[0]
        sizes[kind] += usage or 0
    return {kind: round(size / leases, 1) for kind, size in sorted(sizes.items())}


def bytes_per_lease(
    url: str, prefix: str, leases: int, threads: int = 16, **settings: Any
) -> MemoryResult:
    """``settings``: BrokerConfig fields, e.g. the event streams off."""
    from leasebroker.core.broker import LeaseBroker
    from leasebroker.core.model import LeaseRequest
    from leasebroker.core.settings import BrokerConfig
    from leasebroker.core.store import connect

    merchants = max(1, leases // LEASES_PER_MERCHANT)
    store = connect(url, pool_size=threads + 4)
    try:
        client = store.client
        broker = LeaseBroker(client, BrokerConfig(key_prefix=prefix, **settings))
        base = time.time_ns() + 24 * 3600 * 10**9
        counter = itertools.count()
        before = _used_memory(client)

        def work() -> None:
            while (i := next(counter)) < leases:
                broker.create_lease(LeaseRequest(_slot(i, merchants, base), f"ref-{i}"))

        workers = [threading.Thread(target=work) for _ in range(threads)]
        for each in workers:
            each.start()
        for each in workers:
            each.join()
        return _result(client, prefix, leases, merchants, before)
    finally:
        store.close()


def _slot(i: int, merchants: int, base_ns: int) -> Any:
    """Lease ``i``'s slot: a fresh one, of merchant ``m<i % merchants>``."""
    from leasebroker.core.keys import SlotId

    return SlotId(f"m{i % merchants}", "svc", base_ns + i * SLOT_STEP_NS, 1800 * 10**9)


def _result(client: Any, prefix: str, leases: int, merchants: int, before: int) -> MemoryResult:
    """The bytes per lease since ``before``, and the breakdown of merchant m0's keys."""
    after = _used_memory(client)
    per_merchant = len(range(0, leases, merchants))
    by_kind = _breakdown(client, prefix, "m0", per_merchant)
    return MemoryResult(leases, merchants, (after - before) / leases, by_kind)


def structure_floor(url: str, prefix: str, leases: int) -> MemoryResult:
    """What the layout's structures cost with nothing in them: for each of ``leases``
    leases (the same merchants, slots, client references and key names as
    :func:`bytes_per_lease`), its slot set with one member, a record and a
    client-reference key of one byte each (each with its TTL), a lease index entry, a
    fence field and a stream entry of one field, every member the lease's
    22-character token. No layout that keeps each of them as a key or an entry of its
    own can take less: the rest of today's bytes are their values."""
    from leasebroker.core.keys import KeyBuilder, new_token
    from leasebroker.core.store import connect

    merchants = max(1, leases // LEASES_PER_MERCHANT)
    keys = KeyBuilder(prefix)
    store = connect(url, pool_size=2)
    try:
        client = store.client
        base = time.time_ns() + 24 * 3600 * 10**9
        expires = base // 10**6  # ms: far enough ahead for every key to stay
        before = _used_memory(client)
        with client.pipeline(transaction=False) as pipe:
            for i in range(leases):
                slot = _slot(i, merchants, base)
                merchant, field, token = slot.merchant_id, slot.field(), new_token()
                slot_key = keys.slot(slot, field)
                pipe.zadd(slot_key, {token: expires})
                pipe.pexpireat(slot_key, expires)
                pipe.set(keys.lease(merchant, token), "h", pxat=expires)
                pipe.set(keys.client_ref(merchant, f"ref-{i}"), "r", pxat=expires)
                pipe.zadd(keys.lease_index(merchant), {token: expires})
                pipe.hset(keys.fences(merchant), field, 1)
                pipe.xadd(keys.events(merchant), {"l": token})
                if i % 1000 == 999:
                    pipe.execute()
            pipe.sadd(keys.merchants(), *(f"m{m}" for m in range(merchants)))
            pipe.execute()
        return _result(client, prefix, leases, merchants, before)
    finally:
        store.close()
