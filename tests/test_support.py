"""The tests' own support (support.py) does what the tests rely on."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from support import PAST_SHORT_HOLD_S, START_NS, lease_request, redis_now_ms, slot

from leasebroker.core.units import NS_PER_S


def test_clock_advance_moves_the_store_clock(redis_client, clock):
    before = redis_now_ms(redis_client)
    clock.advance(PAST_SHORT_HOLD_S)
    assert redis_now_ms(redis_client) >= before + 300


@pytest.mark.parametrize("backend", ["fake"])
def test_frozen_clock_reads_what_it_is_set_to(clock):
    start = clock.freeze()
    assert clock.now_ms() == start
    clock.at(start + 5)
    assert clock.now_ms() == start + 5


def test_lease_request_puts_each_override_where_it_belongs():
    req = lease_request(staff_id="s", availability_tag="t", requested_expiry_ns=5)
    assert req.slot == replace(slot(), staff_id="s")
    assert (req.availability_tag, req.requested_expiry_ns, req.client_reference) == (
        "t",
        5,
        "ref-1",
    )


def test_the_slot_start_is_tomorrow_on_the_hour():
    assert START_NS % (3600 * NS_PER_S) == 0
    assert time.time_ns() + 23 * 3600 * NS_PER_S < START_NS


def test_cluster_ports_picked_together_never_take_each_others_bus_ports(monkeypatch):
    """Node 34191's cluster bus is port 44191: a node picked to listen there would not
    start (the deploy/README.md cluster example once hung on that)."""
    import redis_servers

    # 44191 is 34191's bus port, 24191's bus port is 34191, and 34191 is picked already.
    picks = iter([34191, 44191, 24191, 34191, 50001, 50002, 50003, 50004, 50005])
    monkeypatch.setattr(redis_servers, "free_port_pair", lambda: next(picks))
    assert redis_servers.free_port_pairs(6) == [34191, 50001, 50002, 50003, 50004, 50005]
