"""The hot path: a CreateLease is one Redis command (EVALSHA), once the merchant is known."""

from __future__ import annotations

import time

from support import HOUR_NS

from leasebroker.core.keys import SlotId
from leasebroker.core.model import LeaseRequest


def test_create_lease_is_one_round_trip(broker, redis_client, monkeypatch):
    start = time.time_ns() + HOUR_NS
    broker.create_lease(LeaseRequest(SlotId("m", "s", start, HOUR_NS), "warm-up"))

    commands: list[str] = []
    send = redis_client.execute_command

    def counting(*args, **options):
        commands.append(str(args[0]))
        return send(*args, **options)

    monkeypatch.setattr(redis_client, "execute_command", counting)
    lease = broker.create_lease(LeaseRequest(SlotId("m", "s", start + HOUR_NS, HOUR_NS), "r"))
    assert lease.fence == 1
    assert commands == ["EVALSHA"]
