"""An empty inventory offers nothing, and a complete feed withdraws the merchants it omits."""

from __future__ import annotations

import json

import pytest
from support import feed_entry, lease_request, refusal, slot

from leasebroker.cli.parser import main
from leasebroker.core.errors import Reason
from leasebroker.core.model import InventorySlot


def test_an_empty_inventory_offers_nothing(make_broker):
    broker = make_broker(default_capacity=5)
    lease = broker.create_lease(lease_request())
    assert broker.replace_inventory("merchant-1", []) == 0
    assert broker.get_inventory("merchant-1") == []
    refused = refusal(broker.create_lease, lease_request(client_reference="other"))
    assert refused.reason is Reason.SLOT_NOT_OFFERED
    assert broker.slot_status(slot()).source == "unlisted"
    # What was already held stays valid and can still be booked.
    assert broker.get_lease(lease.lease_id).state == "held"


def test_a_complete_load_withdraws_merchants_it_omits(make_broker):
    broker = make_broker(default_capacity=1)
    kept, gone = slot(merchant_id="kept"), slot(merchant_id="gone")
    broker.replace_inventory("gone", [InventorySlot(gone, 3)])
    broker.create_lease(lease_request(merchant_id="kept", client_reference="k"))
    slots, withdrawn = broker.replace_all_inventories({"kept": [InventorySlot(kept, 2)]})
    assert (slots, withdrawn) == (1, ["gone"])
    assert broker.get_inventory("gone") == []
    assert broker.get_inventory("kept") == [InventorySlot(kept, 2)]
    refused = refusal(broker.create_lease, lease_request(merchant_id="gone"))
    assert refused.reason is Reason.SLOT_NOT_OFFERED


@pytest.mark.parametrize("backend", ["real"])
def test_inventory_load_complete_command(make_broker, store_args, tmp_path):
    broker = make_broker()
    broker.replace_inventory("gone", [InventorySlot(slot(merchant_id="gone"), 3)])
    feed = tmp_path / "feed.json"
    feed.write_text(json.dumps([feed_entry(merchant_id="kept", spots_open=2)]))
    assert main(["inventory", "load", str(feed), *store_args]) == 0
    assert len(broker.get_inventory("gone")) == 1  # a plain load keeps other merchants
    assert main(["inventory", "load", str(feed), "--complete", *store_args]) == 0
    assert broker.get_inventory("gone") == []
    assert [s.capacity for s in broker.get_inventory("kept")] == [2]
