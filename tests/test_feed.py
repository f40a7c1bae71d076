"""Availability feeds: parse_feed/read_feed, and `leasebroker inventory load`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import REAL_REDIS_URL, START_S, feed_entry, hold, slot, stored_keys

from leasebroker.cli.parser import main
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.model import InventorySlot
from leasebroker.core.settings import BrokerConfig
from leasebroker.core.units import NS_PER_S
from leasebroker.wire.feed import FeedError, parse_feed, read_feed


def entry(**overrides: Any) -> dict[str, Any]:
    """One valid availability entry, 3 spots of which 2 open; ``None`` removes a field."""
    return feed_entry(**{"spots_total": 3, "spots_open": 2, **overrides})


def feed(*groups: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """An AvailabilityFeed object with one service_availability group per list of entries."""
    return {
        "metadata": {"processing_instruction": "PROCESS_AS_COMPLETE", "shard_number": 0},
        "service_availability": [{"availability": list(g), **extra} for g in groups],
    }


def refused(document: Any, *needles: str) -> str:
    with pytest.raises(FeedError) as caught:
        parse_feed(document)
    message = str(caught.value)
    for needle in needles:
        assert needle in message, message
    return message


# ---------------------------------------------------------------- accepted feeds


def test_feed_object_shape():
    inventories = parse_feed(feed([entry()]))
    assert inventories == {"merchant-1": [InventorySlot(slot(), 2)]}


def test_bare_array_shape():
    assert parse_feed([entry()]) == parse_feed(feed([entry()]))


def test_entries_are_grouped_by_merchant_across_groups():
    inventories = parse_feed(
        feed(
            [entry(), entry(merchant_id="merchant-2")],
            [entry(service_id="colour", spots_open=1)],
        )
    )
    assert inventories == {
        "merchant-1": [
            InventorySlot(slot(), 2),
            InventorySlot(slot(service_id="colour"), 1),
        ],
        "merchant-2": [InventorySlot(slot(merchant_id="merchant-2"), 2)],
    }


def test_resources_pick_the_slot_and_names_are_ignored():
    inventories = parse_feed(
        [
            entry(resources={"staff_id": "anna", "staff_name": "Anna"}),
            entry(resources={"staff_id": "ben", "staff_name": "Ben"}),
            entry(resources={"room_id": "r1", "room_name": "Room 1"}),
            entry(resources={"staff_id": "anna", "room_id": "r1"}),
            entry(resources=None),
        ]
    )
    assert [item.slot for item in inventories["merchant-1"]] == [
        slot(staff_id="anna"),
        slot(staff_id="ben"),
        slot(room_id="r1"),
        slot(staff_id="anna", room_id="r1"),
        slot(),
    ]


def test_null_resources_are_no_resources():
    assert parse_feed([entry(resources=None)]) == parse_feed([{**entry(), "resources": None}])


def test_int64_values_may_be_strings():
    parsed = parse_feed([entry(start_sec=str(START_S), duration_sec="3600", spots_open="0")])
    assert parsed["merchant-1"] == [InventorySlot(slot(duration_ns=3600 * NS_PER_S), 0)]


def test_zero_spots_open_is_a_listed_full_slot():
    assert parse_feed([entry(spots_open=0)])["merchant-1"][0].capacity == 0


def test_availability_tag_and_unknown_fields_are_accepted():
    parsed = parse_feed(
        [entry(availability_tag="tag-1", confirmation_mode="CONFIRMATION_MODE_SYNCHRONOUS")]
    )
    assert parsed["merchant-1"] == [InventorySlot(slot(), 2)]


def test_same_slot_at_two_merchants_is_not_a_duplicate():
    parsed = parse_feed([entry(), entry(merchant_id="merchant-2")])
    assert set(parsed) == {"merchant-1", "merchant-2"}


def test_group_without_availability_is_skipped():
    parsed = parse_feed({"service_availability": [{}, {"availability": [entry()]}]})
    assert len(parsed["merchant-1"]) == 1


# ---------------------------------------------------------------- refused feeds


@pytest.mark.parametrize(
    "restrict",
    [
        "start_timestamp_restrict",
        "end_timestamp_restrict",
        "merchant_id_restrict",
        "service_id_restrict",
        "duration_restrict_sec",
        "resources_restrict",
    ],
)
def test_restricted_feeds_are_refused(restrict):
    document = feed([entry()], [entry(service_id="colour")])
    document["service_availability"][1][restrict] = "x"
    refused(document, "service_availability[1]", restrict)


@pytest.mark.parametrize("field", ["recurrence", "schedule_exception"])
def test_recurrences_are_refused(field):
    value = {"repeat_until_sec": START_S + 86_400, "repeat_every_sec": 3600}
    refused([entry(), entry(**{field: value})], "entry 1", field)
    refused(feed([entry(), entry(**{field: value})]), "service_availability[0].availability[1]")


def test_duplicate_slots_are_refused():
    refused([entry(), entry(service_id="colour"), entry(spots_open=5)], "entry 2", "twice")
    refused(feed([entry()], [entry()]), "service_availability[1].availability[0]", "twice")
    refused(
        [entry(resources={"staff_id": "a"}), entry(resources={"staff_id": "a", "staff_name": "A"})],
        "entry 1",
        "twice",
    )


@pytest.mark.parametrize("field", ["start_sec", "duration_sec", "spots_open"])
def test_missing_integer_fields_are_refused(field):
    refused([entry(), entry(**{field: None})], "entry 1", field, "required")


@pytest.mark.parametrize("field", ["merchant_id", "service_id"])
@pytest.mark.parametrize("value", [None, ""], ids=["missing", "empty"])
def test_missing_ids_are_refused(field, value):
    refused([entry(), entry(**{field: value})], "entry 1", field, "required")


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("spots_open", -1, "spots_open"),
        ("spots_open", "-1", "spots_open"),
        ("duration_sec", 0, "duration_sec"),
        ("duration_sec", -60, "duration_sec"),
        ("duration_sec", 31 * 86_400 + 1, "duration_sec"),
        ("start_sec", -1, "start_sec"),
        ("start_sec", 253_402_300_800, "start_sec"),
        ("start_sec", 10**30, "start_sec"),
    ],
)
def test_out_of_range_values_are_refused(field, value, needle):
    refused([entry(), entry(**{field: value})], "entry 1", needle)


@pytest.mark.parametrize("field", ["start_sec", "duration_sec", "spots_open"])
@pytest.mark.parametrize(
    "value",
    [1.5, 2.0, True, "1.5", "", "1e3", " 5", "+5", "five", [1], {"v": 1}],
    ids=repr,
)
def test_non_integers_are_refused(field, value):
    refused([entry(), entry(**{field: value})], "entry 1", field, "integer")


# Regression: these once escaped feed._integer as a plain ValueError.
@pytest.mark.parametrize("value", ["--5", "²", "١٢٣"])
def test_malformed_integer_strings_are_feed_errors(value):
    refused([entry(), entry(spots_open=value)], "entry 1", "spots_open")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("merchant_id", 5),
        ("service_id", None),
        ("merchant_id", ["m"]),
        ("service_id", "x" * 257),
        ("merchant_id", "a\nb"),
        ("service_id", "a\x00"),
    ],
)
def test_bad_ids_are_refused(field, value):
    document = [entry(), entry()]
    document[1][field] = value
    refused(document, "entry 1", field)


@pytest.mark.parametrize(
    ("resources", "needle"),
    [
        (["anna"], "resources"),
        ("anna", "resources"),
        ({"staff_id": 7}, "staff_id"),
        ({"room_id": ["r"]}, "room_id"),
        ({"staff_id": "a\tb"}, "staff_id"),
        ({"room_id": "r" * 257}, "room_id"),
    ],
)
def test_bad_resources_are_refused(resources, needle):
    refused([entry(), entry(resources=resources)], "entry 1", needle)


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ([], "no availability"),
        (feed(), "no availability"),
        (feed([]), "no availability"),
        ({"service_availability": [{"availability": []}]}, "no availability"),
        ({}, "service_availability"),
        ({"metadata": {}}, "service_availability"),
        ("feed", "service_availability"),
        (5, "service_availability"),
        (None, "service_availability"),
        ({"service_availability": {"availability": []}}, "must be an array"),
        ({"service_availability": ["x"]}, "service_availability[0]"),
        ({"service_availability": [{"availability": {}}]}, "service_availability[0].availability"),
        ([entry(), "entry"], "entry 1"),
        ([entry(), None], "entry 1"),
    ],
)
def test_bad_documents_are_refused(document, needle):
    refused(document, needle)


def test_first_bad_entry_is_named():
    document = feed([entry(), entry(service_id="b")], [entry(service_id="c"), entry(start_sec="x")])
    refused(document, "service_availability[1].availability[1]", "start_sec")


# ---------------------------------------------------------------- read_feed


def test_read_feed_reads_a_file(tmp_path):
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(feed([entry(merchant_id="café 😀")])), encoding="utf-8")
    assert read_feed(path) == {"café 😀": [InventorySlot(slot(merchant_id="café 😀"), 2)]}
    assert read_feed(str(path)) == read_feed(path)


@pytest.mark.parametrize(
    "content",
    [b"", b"{", b'{"service_availability": [}', b"not json", b"\xff\xfe\x00", b"[1,]"],
    ids=["empty", "open-brace", "broken", "words", "not-utf8", "trailing-comma"],
)
def test_invalid_json_is_refused(tmp_path, content):
    path = tmp_path / "feed.json"
    path.write_bytes(content)
    with pytest.raises(FeedError, match=r"feed\.json"):
        read_feed(path)


def test_unreadable_files_are_refused(tmp_path):
    with pytest.raises(FeedError, match="cannot read"):
        read_feed(tmp_path / "missing.json")
    with pytest.raises(FeedError, match="cannot read"):
        read_feed(tmp_path)  # a directory


def test_feed_errors_are_value_errors():
    assert issubclass(FeedError, ValueError)


# ---------------------------------------------------------------- leasebroker inventory load


def write_feed(tmp_path: Path, document: Any) -> str:
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return str(path)


def load(path: str, prefix: str, url: str = REAL_REDIS_URL) -> int:
    return main(["inventory", "load", path, "--redis-url", url, "--key-prefix", prefix])


@pytest.mark.parametrize("backend", ["real"])
def test_cli_loads_a_feed_that_create_lease_honours(
    tmp_path, redis_client, key_prefix, no_leasebroker_env, capsys
):
    document = feed(
        [entry(spots_open=2), entry(service_id="full", spots_open=0)],
        [entry(merchant_id="merchant-2", spots_open=1)],
    )
    assert load(write_feed(tmp_path, document), key_prefix) == 0

    broker = LeaseBroker(redis_client, BrokerConfig(key_prefix=key_prefix, default_capacity=5))

    def lease(reference: str, **fields: Any):
        return hold(broker, slot(**fields), reference)

    def refusal(reference: str, **fields: Any) -> Reason:
        with pytest.raises(BrokerError) as caught:
            lease(reference, **fields)
        return caught.value.reason

    assert [lease("a").fence, lease("b").fence] == [1, 2]
    assert refusal("c") is Reason.SLOT_FULL
    assert refusal("d", service_id="full") is Reason.SLOT_FULL
    assert refusal("e", service_id="unlisted") is Reason.UNKNOWN_SERVICE
    assert lease("f", merchant_id="merchant-2").fence == 1
    assert refusal("g", merchant_id="merchant-2") is Reason.SLOT_FULL
    # A merchant the feed does not mention keeps the default capacity.
    assert lease("h", merchant_id="merchant-3").fence == 1

    # Loading again replaces the merchant's inventory as a whole.
    assert load(write_feed(tmp_path, [entry(service_id="new", spots_open=1)]), key_prefix) == 0
    assert refusal("i", service_id="unlisted-now") is Reason.UNKNOWN_SERVICE
    assert refusal("j", service_id="full") is Reason.UNKNOWN_SERVICE
    assert lease("k", service_id="new").fence == 1


@pytest.mark.parametrize("backend", ["real"])
@pytest.mark.parametrize(
    "document",
    [
        [entry(), entry(spots_open=-1)],
        [entry(merchant_id="merchant-2"), entry(), entry()],
        feed([entry()], start_timestamp_restrict=1),
        [],
    ],
    ids=["negative-spots", "duplicate-after-a-good-merchant", "restricted", "empty"],
)
def test_cli_refuses_a_bad_feed_and_writes_nothing(
    tmp_path, redis_client, key_prefix, no_leasebroker_env, capsys, document
):
    assert load(write_feed(tmp_path, document), key_prefix) == 2
    assert "leasebroker:" in capsys.readouterr().err
    assert stored_keys(redis_client, key_prefix) == []


@pytest.mark.parametrize("backend", ["real"])
def test_cli_refuses_invalid_json_and_writes_nothing(
    tmp_path, redis_client, key_prefix, no_leasebroker_env
):
    path = tmp_path / "feed.json"
    path.write_text("{", encoding="utf-8")
    assert load(str(path), key_prefix) == 2
    assert load(str(tmp_path / "missing.json"), key_prefix) == 2
    assert stored_keys(redis_client, key_prefix) == []


def test_cli_needs_a_redis_url(tmp_path, no_leasebroker_env, capsys):
    path = write_feed(tmp_path, [entry()])
    assert main(["inventory", "load", path]) == 2
    assert "--redis-url" in capsys.readouterr().err


def test_cli_reports_an_unreachable_store(tmp_path, no_leasebroker_env, capsys):
    path = write_feed(tmp_path, [entry()])
    assert load(path, "lbtest-unreachable", url="redis://127.0.0.1:1/0") == 3
    assert "cannot reach" in capsys.readouterr().err
