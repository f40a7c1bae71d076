"""Inventory that cannot be lost by accident: feeds read as proto3 JSON, their metadata
honoured (shards, generation), every problem named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import START_S, ServeProcess, clean_env, run_cli, run_main

from leasebroker.cli import inventory_load
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.model import InventorySlot, InventoryState
from leasebroker.wire.feed import MAX_PROBLEMS, FeedError, FeedMetadata, parse_feed


def entry(merchant: str = "m-1", **fields: Any) -> dict[str, Any]:
    return {"merchant_id": merchant, "service_id": "cut", "start_sec": START_S,
            "duration_sec": 1800, "spots_open": 2, **fields}  # fmt: skip


def feed(entries: list[dict[str, Any]], **metadata: Any) -> dict[str, Any]:
    return {"metadata": metadata, "service_availability": [{"availability": entries}]}


def refused(document: Any) -> str:
    with pytest.raises(FeedError) as caught:
        parse_feed(document)
    return str(caught.value)


def test_camel_case_keys_are_the_same_feed():
    camel = {
        "metadata": {"processingInstruction": "PROCESS_AS_COMPLETE", "generationTimestamp": "5"},
        "serviceAvailability": [{"availability": [{
            "merchantId": "m-1", "serviceId": "cut", "startSec": str(START_S),
            "durationSec": 1800, "spotsOpen": 2, "resources": {"staffId": "ann"},
            "availabilityTag": "t", "confirmationMode": "CONFIRMATION_MODE_SYNCHRONOUS",
        }]}],
    }  # fmt: skip
    snake = feed([entry(resources={"staff_id": "ann"}, availability_tag="t")],
                 processing_instruction="PROCESS_AS_COMPLETE", generation_timestamp=5)  # fmt: skip
    assert parse_feed(camel) == parse_feed(snake)
    assert parse_feed(camel).metadata == parse_feed(snake).metadata


def test_metadata_comes_back_with_the_inventories():
    parsed = parse_feed(feed([entry()], processing_instruction="PROCESS_AS_COMPLETE",
                             shard_number=1, total_shards=3, nonce="18446744073709551615",
                             generation_timestamp=1_800_000_000))  # fmt: skip
    assert parsed.metadata == FeedMetadata("PROCESS_AS_COMPLETE", 1, 3, 2**64 - 1, 1_800_000_000)
    assert parse_feed([entry()]).metadata == FeedMetadata()


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ([entry(), entry(colour="red")], "entry 1: unknown key 'colour'"),
        ([entry(resources={"staff_id": "a", "anna": 1})], "entry 0: unknown key 'resources.anna'"),
        ({**feed([entry()]), "extra": 1}, "the feed: unknown key 'extra'"),
        (feed([entry()], shards=2), "the feed: unknown key 'metadata.shards'"),
        (
            {"service_availability": [{"availability": [entry()], "x": 1}]},
            "service_availability[0]: unknown key 'x'",
        ),
    ],
    ids=["entry", "resources", "top", "metadata", "group"],
)
def test_unknown_keys_are_errors_naming_where(document, needle):
    assert needle in refused(document)


@pytest.mark.parametrize("spots", [2**31, 10**20, "99999999999999999999999"])
def test_spots_open_is_bounded_like_set_slot_capacity(spots):
    assert "spots_open" in refused([entry(spots_open=spots)])


def test_every_problem_is_reported_up_to_a_cap():
    bad = [entry(spots_open=-1, start_sec=START_S + i) for i in range(MAX_PROBLEMS + 10)]
    message = refused([entry(), *bad])
    assert message.startswith(f"{MAX_PROBLEMS + 10} problems:")
    assert message.count("spots_open must not be negative") == MAX_PROBLEMS
    assert message.rstrip().endswith("... and 10 more")
    two = refused([entry(spots_open=-1), entry(colour=1)])
    assert "entry 0: spots_open" in two and "entry 1: unknown key" in two


# ------------------------------------------------------------- loading: shards, generation


def write(tmp_path: Path, name: str, document: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return str(path)


def shard(tmp_path: Path, number: int, merchants: list[str], *, total: int = 2,
          nonce: int = 42, generation: int = 1_800_000_000) -> str:  # fmt: skip
    document = feed([entry(m) for m in merchants], processing_instruction="PROCESS_AS_COMPLETE",
                    shard_number=number, total_shards=total, nonce=nonce,
                    generation_timestamp=generation)  # fmt: skip
    return write(tmp_path, f"shard-{number}-{nonce}-{generation}.json", document)


def load(store_args: list[str], *files: str, complete: bool = True) -> Any:
    return run_cli(["inventory", "load", *files, *(["--complete"] if complete else []),
                    *store_args])  # fmt: skip


@pytest.fixture
def known(real_broker):
    """A merchant the broker knows that no shard mentions, which a complete feed withdraws."""
    real_broker.replace_inventory("old", [])
    real_broker.register_merchant("old")
    return real_broker


def test_all_shards_of_a_complete_feed_load_at_once(tmp_path, store_args, known):
    result = load(store_args, shard(tmp_path, 0, ["m-1", "m-2"]), shard(tmp_path, 1, ["m-3"]))
    assert result.returncode == 0, result.stderr
    for merchant in ("m-1", "m-2", "m-3"):
        assert known.inventory_state(merchant) is InventoryState.LOADED
    assert known.inventory_state("old") is InventoryState.WITHDRAWN


def test_one_shard_of_a_complete_feed_never_withdraws_the_others(tmp_path, store_args, known):
    assert (
        load(store_args, shard(tmp_path, 0, ["m-1"]), shard(tmp_path, 1, ["m-2"])).returncode == 0
    )
    alone = load(store_args, shard(tmp_path, 0, ["m-1"], generation=1_800_000_001))
    assert alone.returncode == 2
    assert "shard 0 of 2" in alone.stderr and "all its shards at once" in alone.stderr
    assert known.inventory_state("m-2") is InventoryState.LOADED
    # Without --complete one shard replaces only its own merchants.
    assert load(store_args, shard(tmp_path, 1, ["m-2"]), complete=False).returncode == 0
    assert known.inventory_state("m-1") is InventoryState.LOADED


@pytest.mark.parametrize(
    ("shards", "complaint"),
    [
        (lambda p: [shard(p, 0, ["a"])] * 2, "shard 0 is given twice"),
        (lambda p: [shard(p, 0, ["a"]), shard(p, 1, ["b"], nonce=7)], "nonce"),
        (
            lambda p: [shard(p, 0, ["a"], total=3), shard(p, 1, ["b"], total=3)],
            "shard 2 of 3 is missing",
        ),
        (lambda p: [shard(p, 0, ["a"]), shard(p, 1, ["a"])], "merchant 'a' is in two shards"),
        (
            lambda p: [write(p, "a.json", [entry()]), write(p, "b.json", [entry("b")])],
            "shards of one feed",
        ),
    ],
    ids=["twice", "other-nonce", "missing", "merchant-twice", "unsharded"],
)
def test_a_set_of_shards_that_is_not_one_feed_is_refused(
    tmp_path, store_args, known, shards, complaint
):
    result = load(store_args, *shards(tmp_path))
    assert result.returncode == 2, result.stderr
    assert complaint in result.stderr
    assert known.inventory_state("a") is InventoryState.NONE


def test_an_incremental_feed_cannot_be_loaded_as_complete(tmp_path, store_args, known):
    incremental = feed([entry()], processing_instruction="PROCESS_AS_INCREMENTAL")
    result = load(store_args, write(tmp_path, "incremental.json", incremental))
    assert result.returncode == 2 and "PROCESS_AS_INCREMENTAL" in result.stderr


def test_processing_instructions_are_google_s():
    """Google's numbers too: 1 is PROCESS_AS_COMPLETE, 2 PROCESS_AS_INCREMENTAL."""
    by_number = parse_feed(feed([entry()], processing_instruction=1)).metadata
    assert by_number.processing_instruction == "PROCESS_AS_COMPLETE"
    legacy = parse_feed(feed([entry()], processing_instruction="PROCESS_UNKNOWN")).metadata
    assert legacy.processing_instruction == "PROCESS_UNKNOWN"
    assert parse_feed([entry()]).metadata.processing_instruction == "PROCESS_UNKNOWN"


def test_an_older_feed_than_the_one_loaded_is_refused(tmp_path, store_args, known):
    newer = write(tmp_path, "new.json", feed([entry(spots_open=5)], generation_timestamp=200))
    older = write(tmp_path, "old.json", feed([entry(spots_open=1)], generation_timestamp=100))
    assert load(store_args, newer, complete=False).returncode == 0
    result = load(store_args, older, complete=False)
    assert result.returncode == 1, result.stderr
    assert "FEED_OUTDATED" in result.stderr
    assert [item.capacity for item in known.get_inventory("m-1")] == [5]
    assert load(store_args, newer, complete=False).returncode == 0  # the same one again


def test_the_library_refuses_an_older_generation_before_writing(broker):
    items = {"m-1": [InventorySlot(parse_feed([entry()])["m-1"][0].slot, 3)]}
    broker.load_inventories(items, generation=200)
    with pytest.raises(BrokerError) as refused_load:
        broker.load_inventories({"m-1": []}, complete=True, generation=199)
    assert refused_load.value.reason is Reason.FEED_OUTDATED
    assert broker.inventory_state("m-1") is InventoryState.LOADED


def test_inventory_load_reports_progress_on_stderr_and_the_result_on_stdout(
    tmp_path, store_args, real_broker, capsys, monkeypatch, no_leasebroker_env
):
    monkeypatch.setattr(inventory_load, "PROGRESS_EVERY_S", 0.0)
    path = write(tmp_path, "many.json", [entry(f"m-{i}") for i in range(5)])
    assert run_main(["inventory", "load", path, *store_args]) == 0
    out, err = capsys.readouterr()
    assert out == f"loaded 5 slots for 5 merchants from {path}\n"
    lines = err.splitlines()
    assert lines[-1] == f"loading {path}: 5/5 merchants, 5 slots"
    assert len(lines) == 5


def test_a_feed_with_a_bad_slot_loads_nobody_and_records_no_generation(broker):
    good = parse_feed([entry()])["m-1"]
    bad = [
        InventorySlot(good[0].slot.__class__(**{**good[0].slot.__dict__, "merchant_id": "m-2"}), -1)
    ]
    with pytest.raises(BrokerError) as refused_load:
        broker.load_inventories({"m-1": good, "m-2": bad}, generation=900)
    assert refused_load.value.reason is Reason.INVALID_FIELD
    assert broker.inventory_state("m-1") is InventoryState.NONE
    broker.load_inventories({"m-1": good}, generation=800)  # 900 was never recorded


def test_serve_skips_an_inventory_older_than_the_one_loaded(tmp_path, store_args, known):
    newer = write(tmp_path, "new.json", feed([entry(spots_open=5)], generation_timestamp=200))
    older = write(tmp_path, "old.json", feed([entry(spots_open=1)], generation_timestamp=100))
    assert load(store_args, newer, complete=False).returncode == 0
    with ServeProcess([*store_args, "--inventory", older], env=clean_env()) as serve:
        serve.wait_listening()
        assert any("not loading" in line for line in serve.lines), serve.lines
    assert [item.capacity for item in known.get_inventory("m-1")] == [5]


def test_of_two_racing_loaders_the_older_feed_never_overwrites_a_merchant(broker):
    """Loader B (newer) has written m-1 while loader A (older) recorded its generation
    first: A's write of m-1 is refused, per merchant, and m-1 keeps B's slots."""
    slot = parse_feed([entry()])["m-1"][0].slot
    broker.replace_inventory("m-1", [InventorySlot(slot, 7)], generation=11)
    with pytest.raises(BrokerError) as refused_load:
        broker.load_inventories({"m-1": [InventorySlot(slot, 1)]}, generation=10)
    assert refused_load.value.reason is Reason.FEED_OUTDATED
    assert [item.capacity for item in broker.get_inventory("m-1")] == [7]
    broker.load_inventories({"m-1": [InventorySlot(slot, 9)]}, generation=12)
    assert [item.capacity for item in broker.get_inventory("m-1")] == [9]
