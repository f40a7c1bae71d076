"""Key names and public ids: hostile ids never break key structure, never collide,
and every script call keeps all of its keys in one Redis Cluster slot."""

from __future__ import annotations

import base64
import itertools
import random
import string
import time
from datetime import datetime, timezone
from urllib.parse import quote, unquote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot
from support import book, slot, stored_keys

from leasebroker.core.errors import BrokerError
from leasebroker.core.keys import (
    ROOTS_KEPT,
    IdKind,
    KeyBuilder,
    SlotId,
    encode_component,
    format_instant,
    format_span,
    make_public_id,
    new_token,
    parse_public_id,
)
from leasebroker.core.model import InventorySlot, LeaseRequest
from leasebroker.core.scripts import BoundScript, load_sources
from leasebroker.core.sweeper import sweep_due
from leasebroker.core.units import NS_PER_MS, NS_PER_S, utc_clock

# Ids chosen to attack the key layout: separators, the hash tag braces, the escape
# character itself, glob characters, whitespace, already-escaped look-alikes, unicode.
HOSTILE_IDS = [
    "m",
    "a:b",
    "a%3Ab",
    "a%253Ab",
    " ",
    "a b",
    "a+b",
    "a%20b",
    "%20",
    "+",
    "{",
    "}",
    "{}",
    "}{",
    "{a}",
    "a{b}c",
    "%7B",
    "%7Ba%7D",
    "%",
    "%%",
    "*",
    "?",
    "[a]",
    "\\",
    "%2A",
    "/",
    "a/b",
    "%2F",
    "~",
    "%7E",
    ".",
    "..",
    "-",
    "_",
    "é",
    "e\u0301",
    "%C3%A9",
    "\u00a0",
    "😀",
    "%F0%9F%98%80",
    "日本",
    "lb:{m}:slot",
    "x" * 256,
]
# Characters random ids are drawn from: the dangerous ones and a few plain ones.
TRICKY_ALPHABET = [*"ab:%{}*?[]\\ +/~.-_3A7BFé😀\u00a0\t", "e\u0301"]


def keys_of(kb: KeyBuilder, merchant: str, other: str) -> dict[str, tuple[str, int]]:
    """Every key kind for a merchant, with its expected number of ':'-separated components."""
    slot = SlotId(merchant, other, 1_900_000_000 * NS_PER_S, 1800 * NS_PER_S, other, other)
    return {
        "root": (kb.merchant_root(merchant), 2),
        "slot": (kb.slot(slot), 8),
        "lease": (kb.lease(merchant, new_token()), 4),
        "ref": (kb.client_ref(merchant, other), 4),
        "inventory": (kb.inventory(merchant), 3),
        "fences": (kb.fences(merchant), 3),
        "leases": (kb.lease_index(merchant), 3),
        "events": (kb.events(merchant), 3),
    }


def hash_tag(key: str) -> str:
    """The part of a key Redis Cluster hashes: between the first '{' and the next '}'."""
    start = key.index("{")
    return key[start + 1 : key.index("}", start + 1)]


# ---------------------------------------------------------------- encode_component


@pytest.mark.parametrize("value", HOSTILE_IDS)
def test_encoded_component_is_plain_printable_ascii(value):
    encoded = encode_component(value)
    assert encoded.isascii() and encoded.isprintable()
    for forbidden in "{}:*?[]\\ \t\n":
        assert forbidden not in encoded
    assert unquote(encoded) == value  # decodable, hence injective


def test_encoding_never_collides_on_tricky_pairs():
    pairs = [
        ("a:b", "a%3Ab"),
        ("", " "),
        (" ", "+"),
        (" ", "%20"),
        ("%", "%25"),
        ("{", "%7B"),
        ("é", "e\u0301"),
        ("é", "%C3%A9"),
        ("a/b", "a%2Fb"),
        ("*", "%2A"),
        ("~", "%7E"),
    ]
    for left, right in pairs:
        assert encode_component(left) != encode_component(right), (left, right)


def test_encoding_is_injective_over_many_random_ids():
    rng = random.Random(20261201)
    ids = set(HOSTILE_IDS) | {""}
    for _ in range(5000):
        ids.add("".join(rng.choices(TRICKY_ALPHABET, k=rng.randint(0, 6))))
    encoded = {}
    for value in ids:
        other = encoded.setdefault(encode_component(value), value)
        assert other == value, f"{value!r} and {other!r} share an encoding"


def test_instant_and_span_texts_never_collide():
    rng = random.Random(7)
    instants = {0, 1, 10, 100, NS_PER_S, NS_PER_S + 1, -1, -NS_PER_S}
    instants |= {rng.randrange(-(10**18), 10**19) for _ in range(3000)}
    instants |= {
        rng.randrange(0, 10**6) * NS_PER_S + rng.choice([0, 1, 10, 500_000_000])
        for _ in range(3000)
    }
    texts = {format_instant(ns) for ns in instants}
    assert len(texts) == len(instants)
    assert all(":" not in t and t.endswith("Z") for t in texts)

    spans = {1, 10, 100, NS_PER_S, NS_PER_S + 1, 1800 * NS_PER_S, 1800 * NS_PER_S + 500_000_000}
    spans |= {rng.randrange(1, 31 * 86_400 * NS_PER_S) for _ in range(3000)}
    span_texts = {format_span(ns) for ns in spans}
    assert len(span_texts) == len(spans)
    assert format_span(1800 * NS_PER_S) == "1800s"
    assert format_span(1800 * NS_PER_S + 500_000_000) == "1800.5s"
    assert format_instant(1_796_119_200 * NS_PER_S) == "20261201T100000Z"


# The seconds of a protobuf Timestamp from the year 1000 (strftime pads a shorter year
# on some platforms, not on glibc) to 9999-12-31 (UTC).
TIMESTAMP_SECONDS = st.integers(min_value=-30_610_224_000, max_value=253_402_300_799)


@settings(max_examples=2000)
@given(TIMESTAMP_SECONDS)
def test_utc_clock_prints_what_strftime_printed(seconds):
    """Slot key names must not change: the text made without strftime (units.utc_clock)
    is strftime's, for every second a Timestamp holds from the year 1000 on (slots
    start in 1970 or later)."""
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    assert utc_clock(seconds, "", "") == moment.strftime("%Y%m%dT%H%M%S")
    assert utc_clock(seconds) == moment.strftime("%Y-%m-%dT%H:%M:%S")


def test_utc_clock_at_the_ends_of_the_timestamp_range():
    assert utc_clock(-62_135_596_800) == "1-01-01T00:00:00"  # as glibc's %Y: unpadded
    assert utc_clock(253_402_300_799, "", "") == "99991231T235959"
    assert format_instant(-1) == "19691231T235959.999999999Z"


# ---------------------------------------------------------------- key structure


@pytest.mark.parametrize("merchant", HOSTILE_IDS)
def test_hostile_ids_keep_key_structure(merchant):
    kb = KeyBuilder("lb")
    for other in ("s", "a:b", "{x}", "😀", " "):
        for kind, (key, parts) in keys_of(kb, merchant, other).items():
            assert key.startswith("lb:{"), (kind, key)
            assert key.count("{") == 1 and key.count("}") == 1, (kind, key)
            assert hash_tag(key) == encode_component(merchant), (kind, key)
            assert len(key.split(":")) == parts, (kind, key)
            assert key.isascii() and " " not in key, (kind, key)
    assert kb.pattern() == "lb:*"


def test_slot_keys_never_collide():
    """Different slots (any field) always get different keys; the same slot the same key."""
    rng = random.Random(11)
    values = ["", " ", "a", "a:b", "a%3Ab", "b:", ":", "%3A", "{", "😀"]
    starts = [1_900_000_000 * NS_PER_S, 1_900_000_000 * NS_PER_S + 1, 1_900_001_800 * NS_PER_S]
    durations = [1800 * NS_PER_S, 1800 * NS_PER_S + 1, 1 * NS_PER_S]
    kb = KeyBuilder("lb")
    by_key: dict[str, SlotId] = {}
    for _ in range(20_000):
        slot = SlotId(
            merchant_id=rng.choice(values[1:]),
            service_id=rng.choice(values[1:]),
            start_ns=rng.choice(starts),
            duration_ns=rng.choice(durations),
            staff_id=rng.choice(values),
            room_id=rng.choice(values),
        )
        other = by_key.setdefault(kb.slot(slot), slot)
        assert other == slot, f"{slot} and {other} share a key"
        assert kb.slot(slot) == kb.slot(SlotId(**vars(slot)))
    # A component boundary cannot be moved: "a:b" + "" is not "a" + "b".
    shifted = [
        SlotId("m", "a", starts[0], durations[0], "b:", ""),
        SlotId("m", "a", starts[0], durations[0], "b", ":"),
        SlotId("m", "a", starts[0], durations[0], "", "b:"),
    ]
    assert len({kb.slot(s) for s in shifted}) == len(shifted)


def test_key_kinds_never_collide_within_or_across_merchants():
    kb = KeyBuilder("lb")
    seen: dict[str, tuple[str, str]] = {}
    for merchant, other in itertools.product(HOSTILE_IDS[:30], ["s", "a:b", "inventory"]):
        for kind, (key, _) in keys_of(kb, merchant, other).items():
            owner = seen.setdefault(key, (merchant, kind))
            if owner != (merchant, kind):
                # The same key may only come back for the same merchant and the same kind
                # (merchant-wide keys do not depend on `other`).
                pytest.fail(f"{key!r} built for {owner} and {(merchant, kind)}")


def test_remembered_merchant_roots_stay_right_and_bounded():
    """merchant_root remembers its answers; past ROOTS_KEPT merchants it starts afresh,
    and every answer, remembered or not, is the root built from scratch."""
    kb = KeyBuilder("lb")
    merchants = [*HOSTILE_IDS[:30], *(f"m-{i}" for i in range(ROOTS_KEPT + 10))]
    for _ in range(2):
        for merchant in merchants:
            assert kb.merchant_root(merchant) == f"lb:{{{encode_component(merchant)}}}"
            assert len(kb._roots) <= ROOTS_KEPT
    assert kb.inventory("Caf\u00e9 {Paris}:7") == "lb:{Caf%C3%A9%20%7BParis%7D%3A7}:inventory"


def test_prefix_is_the_first_component():
    kb = KeyBuilder("A-b_c.d")
    key = kb.slot(SlotId("m", "s", NS_PER_S, NS_PER_S))
    assert key.startswith("A-b_c.d:{m}:slot:")
    assert kb.pattern() == "A-b_c.d:*"


@pytest.mark.parametrize("prefix", ["lb", "a", "x" * 64, "A-b_c.d", "lbtest-0123"])
def test_good_prefixes_accepted(prefix):
    assert KeyBuilder(prefix).prefix == prefix


@pytest.mark.parametrize(
    "prefix",
    ["", "a:b", "a{b", "a}b", "{lb}", "a b", "a*", "a?", "x" * 65, "é", "lb\t", "\nlb", "a/b"],
)
def test_bad_prefixes_rejected(prefix):
    with pytest.raises(ValueError):
        KeyBuilder(prefix)


def test_prefix_with_trailing_newline_rejected():
    """Regression: a pattern ending in '$' also matched before a trailing newline."""
    with pytest.raises(ValueError):
        KeyBuilder("lb\n")


# ---------------------------------------------------------------- public ids


def test_new_tokens_are_22_url_safe_characters_and_unique():
    tokens = {new_token() for _ in range(2000)}
    assert len(tokens) == 2000
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert all(len(t) == 22 and set(t) <= alphabet for t in tokens)


@pytest.mark.parametrize("merchant", [m for m in HOSTILE_IDS if m] + ["a.b", "l.x.y", "~~~"])
@pytest.mark.parametrize("kind", [IdKind.LEASE, IdKind.BOOKING])
def test_public_id_round_trips(kind, merchant):
    token = new_token()
    public_id = make_public_id(kind, merchant, token)
    assert public_id.count(".") == 2 and public_id.isascii()
    parsed = parse_public_id(public_id, kind)
    assert parsed is not None
    assert (parsed.kind, parsed.merchant_id, parsed.token) == (kind, merchant, token)


def _b64(text: str | bytes) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


TOKEN = "AAAAAAAAAAAAAAAAAAAAAw"  # a canonical 22-character token
NOT_UTF8 = _b64(b"\xff")


@pytest.mark.parametrize(
    "public_id",
    [
        pytest.param(f"b.{_b64('m')}.{TOKEN}", id="wrong-kind"),
        pytest.param(f"L.{_b64('m')}.{TOKEN}", id="kind-upper-case"),
        pytest.param(f"lease.{_b64('m')}.{TOKEN}", id="kind-word"),
        pytest.param(f".{_b64('m')}.{TOKEN}", id="no-kind"),
        pytest.param(f"l.{_b64('m')}=.{TOKEN}", id="padding-1"),
        pytest.param(f"l.{_b64('m')}==.{TOKEN}", id="padding-2"),
        pytest.param(f"l.bR.{TOKEN}", id="non-canonical-trailing-bits"),
        pytest.param(f"l.fn5+.{TOKEN}", id="standard-alphabet-not-urlsafe"),
        pytest.param(f"l.b!Q.{TOKEN}", id="junk-inside-base64"),
        pytest.param(f"l.@@@.{TOKEN}", id="not-base64"),
        pytest.param(f"l.b.{TOKEN}", id="impossible-length"),
        pytest.param(f"l.{NOT_UTF8}.{TOKEN}", id="merchant-not-utf8"),
        pytest.param(f"l..{TOKEN}", id="empty-merchant"),
        pytest.param(f"l.{_b64('m')}.{TOKEN[:-1]}", id="token-21"),
        pytest.param(f"l.{_b64('m')}.{TOKEN}A", id="token-23"),
        pytest.param(f"l.{_b64('m')}.{TOKEN[:-1]}=", id="token-bad-char"),
        pytest.param(f"l.{_b64('m')}.{TOKEN[:-1]}+", id="token-plus"),
        pytest.param(f"l.{_b64('m')}.", id="token-empty"),
        pytest.param(f"l.{_b64('m')}.{TOKEN}.x", id="extra-dot-after"),
        pytest.param(f"l.{_b64('m')}..{TOKEN}", id="extra-dot-inside"),
        pytest.param(f"l.{_b64('m')}", id="missing-token"),
        pytest.param(f" l.{_b64('m')}.{TOKEN}", id="leading-space"),
        pytest.param(f"l.{_b64('m')}.{TOKEN} ", id="trailing-space"),
        pytest.param("", id="empty"),
        pytest.param("...", id="dots-only"),
    ],
)
def test_malformed_or_forged_ids_rejected(public_id):
    assert parse_public_id(public_id, IdKind.LEASE) is None


def test_lease_id_is_not_a_booking_id():
    lease_id = make_public_id(IdKind.LEASE, "m", new_token())
    assert parse_public_id(lease_id, IdKind.BOOKING) is None


def test_id_with_trailing_newline_rejected():
    """Regression: a pattern ending in '$' also matched before a trailing newline."""
    assert parse_public_id(f"l.{_b64('m')}.{TOKEN}\n", IdKind.LEASE) is None


# ---------------------------------------------------------------- Redis Cluster slots


CLUSTER_MERCHANTS = ["m", "{", "}", "{}", "}{", "{a}", "a{b}c", "%7B", "a:b", "😀", "x" * 200]


@pytest.fixture
def recorded_calls(monkeypatch):
    """Every (script name, keys) pair any broker passes to a script during the test."""
    calls: list[tuple[str, list[str]]] = []
    original = BoundScript.__call__

    def spy(self, keys, args):
        calls.append((self.name, list(keys)))
        return original(self, keys, args)

    monkeypatch.setattr(BoundScript, "__call__", spy)
    return calls


def test_every_script_call_stays_in_one_cluster_slot(
    make_broker, redis_client, key_prefix, recorded_calls
):
    broker = make_broker(default_capacity=2)
    start = time.time_ns() + 86_400 * NS_PER_S
    for i, merchant in enumerate(CLUSTER_MERCHANTS):
        slot = SlotId(merchant, "s{1}", start, 1800 * NS_PER_S, "st}", "{r")
        other = SlotId(merchant, "t", start, 1800 * NS_PER_S)
        request = LeaseRequest(slot, client_reference=f"ref{{{i}}}")
        if i % 2:  # half the merchants with an inventory, half on the default capacity
            broker.replace_inventory(merchant, [InventorySlot(slot, 1), InventorySlot(other, 0)])
        broker.create_lease(request)
        assert broker.create_lease(request).replayed
        other_request = LeaseRequest(other, client_reference="x")
        if i % 2:
            with pytest.raises(BrokerError):  # capacity 0 in the inventory: a refusal path
                broker.create_lease(other_request)
        else:
            broker.create_lease(other_request)

    assert {"create_lease", "replace_inventory"} <= {name for name, _ in recorded_calls}
    for name, keys in recorded_calls:
        slots = {key_slot(key.encode()) for key in keys}
        assert len(slots) == 1, (name, keys)
        merchant_tag = hash_tag(keys[0])
        assert all(hash_tag(key) == merchant_tag for key in keys)
        assert slots == {key_slot(merchant_tag.encode())}

    # No script built a merchant key of its own: every one in the store was passed in KEYS.
    passed = {key for _, keys in recorded_calls for key in keys}
    stored = {k.decode() for k in stored_keys(redis_client, key_prefix)}
    merchant_keys = {key for key in stored if "{" in key}
    assert len({hash_tag(key) for key in merchant_keys}) == len(CLUSTER_MERCHANTS)
    assert merchant_keys <= passed


def test_every_script_of_the_lifecycle_stays_in_one_cluster_slot(
    make_broker, redis_client, key_prefix, recorded_calls, clock
):
    """The test above covers create_lease and replace_inventory; this drives every
    script, including the sweep and prune paths for records that are already gone."""
    broker = make_broker(default_capacity=3)
    merchants = ["{", "}{", "a{b}c", "%7B", "😀"]
    for m in merchants:
        # Margins wide enough for a loaded machine: the slot starts in 2 s, the short
        # leases expire 1 s before it.
        soon_ms = clock.now_ms() + 2_000
        later = slot(merchant_id=m, service_id="s{1}", staff_id="}x")
        other = slot(merchant_id=m, service_id="s{1}", staff_id="}x", start_ns=later.start_ns + 1)
        soon = slot(merchant_id=m, start_ns=soon_ms * NS_PER_MS)

        def lease(s: SlotId, ref: str, expiry_ms: int | None = None) -> str:
            expiry = None if expiry_ms is None else expiry_ms * NS_PER_MS
            return broker.create_lease(LeaseRequest(s, ref, "t", expiry)).lease_id

        broker.extend_lease(lease(later, "{a}"), 1_000)
        broker.release_lease(lease(later, "b}"))
        booked = book(broker, lease(later, "c")).booking_id
        broker.reschedule_booking(booked, other.start_ns, None)
        broker.cancel_booking(booked)
        lease(later, "swept", soon_ms - 1_000)
        gone_lease = lease(later, "gone", soon_ms - 1_000)
        redis_client.delete(broker.keys.lease(m, gone_lease.rsplit(".", 1)[1]))
        book(broker, lease(soon, "past"))
        gone_booking = book(broker, lease(soon, "past-gone")).booking_id
        redis_client.delete(broker.keys.booking(m, gone_booking.rsplit(".", 1)[1]))
        broker.slot_status(later)
        broker.replace_inventory(m, [InventorySlot(later, 3), InventorySlot(other, 3)])
        broker.set_capacity(soon, 3)
    clock.pass_ms(soon_ms)
    assert sweep_due(broker) == len(merchants)  # through the due index
    for m in merchants:
        assert (broker.prune(m, 0).bookings, broker.prune(m, 0).bookings) == (2, 0)
    assert broker.denied_commands() == []  # the start-up permission probe
    broker.load_inventories({}, generation=1_800_000_000)  # the feed generation record

    assert {name for name, _ in recorded_calls} == set(load_sources())
    for name, keys in recorded_calls:
        if name in ("check_permissions", "record_feed_generation", "advance_due"):  # one key
            assert len(keys) == 1
            continue
        tags = {hash_tag(key) for key in keys}
        assert len(tags) == 1, (name, keys)
        assert {key_slot(key.encode()) for key in keys} == {key_slot(tags.pop().encode())}
    passed = {key for _, keys in recorded_calls for key in keys}
    stored = {k.decode() for k in stored_keys(redis_client, key_prefix)}
    assert {key for key in stored if "{" in key} <= passed


def test_merchants_differing_in_braces_use_different_hash_tags():
    kb = KeyBuilder("lb")
    tags = {hash_tag(kb.inventory(m)) for m in CLUSTER_MERCHANTS}
    assert len(tags) == len(CLUSTER_MERCHANTS)


def test_the_control_character_check_is_exactly_unicode_cc_and_cs():
    """check_id's regex stands for a per-character category lookup: same verdict on every
    code point."""
    import unicodedata

    from leasebroker.core.validation import _CONTROL_RE

    differ = [
        hex(point)
        for point in range(0x110000)
        if (unicodedata.category(chr(point)) in ("Cc", "Cs"))
        != bool(_CONTROL_RE.search(chr(point)))
    ]
    assert differ == []


# Mostly ASCII, where the safe set's edges are, and any other character besides.
_ID_CHARS = st.one_of(st.sampled_from(string.printable), st.characters(codec="utf-8"))


@settings(max_examples=500)
@given(st.text(alphabet=_ID_CHARS, max_size=12))
def test_encoding_an_id_is_urllibs_quote_with_the_documented_safe_set(value):
    # encode_component passes plain ids through without calling quote(); for every id
    # it must give what quote() gives, or keys written before would no longer be found.
    assert encode_component(value) == quote(value, safe="!$&'()+,;=@/")
    assert unquote(encode_component(value)) == value
