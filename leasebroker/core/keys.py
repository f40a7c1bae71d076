"""The one place where Redis key names and public ids are built and parsed.

Layout (prefix ``lb`` by default; docs/keys.md is the operator's guide)::

    lb:{<merchant>}:slot:<service>:<start>:<duration>:<staff>:<room>   ZSET occupancy
    lb:{<merchant>}:lease:<token>                                     HASH lease record
    lb:{<merchant>}:ref:<client_reference>                            HASH idempotency entry
    lb:{<merchant>}:inventory                                         HASH slot -> capacity, markers
    lb:{<merchant>}:fences                                            HASH slot -> fencing token
    lb:{<merchant>}:leases                                            ZSET lease id -> expiry
    lb:{<merchant>}:events                                            STREAM state changes
    lb:{<merchant>}:booking:<token>                                   HASH booking record
    lb:{<merchant>}:bookings                                          ZSET booking id -> start
    lb:merchants                                                      SET  merchant registry
    lb:settings                                                       STRING deciding settings
    lb:feed                                                           HASH newest feed loaded
    lb:probe                                                          scratch (start-up check)

Every key of one merchant carries the merchant as its Redis Cluster hash tag,
so every script touches a single cluster slot. Each id is percent-encoded
before it goes into a key: ``{``, ``}``, ``:``, ``%``, glob characters,
whitespace, control characters and non-ASCII text become ``%XX``. That keeps
the key structure intact whatever an id holds, and the encoding is injective,
so two different ids never share a key.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote, unquote

from leasebroker.core.units import NS_PER_S, fraction_text, span_text, utc_clock

DEFAULT_PREFIX = "lb"
# The field of an inventory HASH that offers nothing: it has no ':', so it can never be
# a slot field, and its presence makes the merchant "have an inventory".
NOTHING_OFFERED_FIELD = "~nothing-offered"
# Fields ``~service:<service>`` of an inventory HASH mark the services it offers, so a
# script can tell an unknown service from a known one's unlisted slot. A slot field has
# exactly four ':' (every id in it is percent-encoded); these markers have one at most.
SERVICE_FIELD_PREFIX = "~service:"
_SLOT_FIELD_COLONS = 4


def is_slot_field(field: str) -> bool:
    """Whether an inventory field names a slot (not one of the marker fields)."""
    return field.count(":") == _SLOT_FIELD_COLONS


# Characters kept as they are in key components, besides ASCII letters, digits and "_.-~".
_SAFE = "!$&'()+,;=@/"
# Ids quote() leaves as they are: ASCII letters, digits, "_.-~" and _SAFE. Most ids are
# such, and a regex match costs a tenth of quote() on the hot path.
_PLAIN_RE = re.compile(r"[A-Za-z0-9_.\-~!$&'()+,;=@/]*")
_TOKEN_BYTES = 16  # 128 random bits per lease or booking id
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{22}")
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def encode_component(value: str) -> str:
    """Percent-encode one id so it cannot break or collide in a key name."""
    if _PLAIN_RE.fullmatch(value):
        return value
    return quote(value, safe=_SAFE)


def format_instant(epoch_ns: int) -> str:
    """``20261201T100000Z`` (fraction appended only when present): sortable, colon-free."""
    seconds, nanos = divmod(epoch_ns, NS_PER_S)
    return utc_clock(seconds, "", "") + fraction_text(nanos) + "Z"


def format_span(duration_ns: int) -> str:
    """``1800s``, or ``1800.5s`` when the duration has a fraction of a second."""
    return span_text(duration_ns)


_INSTANT_RE = re.compile(r"(\d{4})(\d\d)(\d\d)T(\d\d)(\d\d)(\d\d)(?:\.(\d{1,9}))?Z")
_SPAN_RE = re.compile(r"(\d+)(?:\.(\d{1,9}))?s")


def parse_instant(text: str) -> int:
    """Inverse of :func:`format_instant`."""
    match = _INSTANT_RE.fullmatch(text)
    if not match:
        raise ValueError(f"not an instant: {text!r}")
    parts = [int(p) for p in match.groups()[:6]]
    seconds = int(datetime(*parts, tzinfo=timezone.utc).timestamp())
    return seconds * NS_PER_S + int((match[7] or "").ljust(9, "0"))


def parse_span(text: str) -> int:
    """Inverse of :func:`format_span`."""
    match = _SPAN_RE.fullmatch(text)
    if not match:
        raise ValueError(f"not a span: {text!r}")
    return int(match[1]) * NS_PER_S + int((match[2] or "").ljust(9, "0"))


@dataclass(frozen=True)
class SlotId:
    """What identifies a slot: the v0 Lease fields that pick one bookable unit."""

    merchant_id: str
    service_id: str
    start_ns: int
    duration_ns: int
    staff_id: str = ""
    room_id: str = ""

    def field(self) -> str:
        """The slot's name within its merchant (inventory field, key suffix)."""
        return ":".join(
            (
                encode_component(self.service_id),
                format_instant(self.start_ns),
                format_span(self.duration_ns),
                encode_component(self.staff_id),
                encode_component(self.room_id),
            )
        )

    @classmethod
    def from_field(cls, merchant_id: str, field: str) -> SlotId:
        """Inverse of :meth:`field`; ValueError when ``field`` is not one."""
        parts = field.split(":")
        if len(parts) != 5:
            raise ValueError(f"not a slot field: {field!r}")
        service, start, span, staff, room = parts
        return cls(
            merchant_id=merchant_id,
            service_id=unquote(service),
            start_ns=parse_instant(start),
            duration_ns=parse_span(span),
            staff_id=unquote(staff),
            room_id=unquote(room),
        )


def service_field(service_id: str) -> str:
    """The inventory field that marks ``service_id`` as one the merchant offers."""
    return SERVICE_FIELD_PREFIX + encode_component(service_id)


class IdKind:
    """First letter of a public id: what kind of record it names."""

    LEASE = "l"
    BOOKING = "b"


@dataclass(frozen=True)
class ParsedId:
    """A public lease or booking id taken apart: which merchant, which record."""

    kind: str
    merchant_id: str
    token: str


def new_token() -> str:
    """128 random bits, URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(_TOKEN_BYTES)).rstrip(b"=").decode()


def make_public_id(kind: str, merchant_id: str, token: str) -> str:
    """``l.<merchant, base64url>.<token>``: the id alone says where the record lives."""
    merchant = base64.urlsafe_b64encode(merchant_id.encode()).rstrip(b"=").decode()
    return f"{kind}.{merchant}.{token}"


def parse_public_id(public_id: str, kind: str) -> ParsedId | None:
    """Take apart an id made by :func:`make_public_id`; None when it is not one of ours."""
    parts = public_id.split(".")
    if len(parts) != 3 or parts[0] != kind or not _TOKEN_RE.fullmatch(parts[2]):
        return None
    encoded = parts[1]
    try:
        merchant_id = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    # Only the canonical spelling is ours; anything else is a forged or mangled id.
    if not merchant_id or make_public_id(kind, merchant_id, parts[2]) != public_id:
        return None
    return ParsedId(kind=kind, merchant_id=merchant_id, token=parts[2])


# How many merchants' key roots a KeyBuilder remembers before it starts afresh.
ROOTS_KEPT = 4096


class KeyBuilder:
    """Builds every Redis key the broker uses, under one configurable prefix."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not _PREFIX_RE.fullmatch(prefix):
            raise ValueError(
                f"key prefix {prefix!r} must be 1-64 characters of letters, digits, '_', '.', '-'"
            )
        self.prefix = prefix
        # merchant_root's answers: a CreateLease names seven keys of one merchant, and
        # encoding the id for each cost ~3 us of the call. Bounded: emptied when full.
        self._roots: dict[str, str] = {}

    def merchant_root(self, merchant_id: str) -> str:
        """``lb:{<merchant>}``: the hash-tagged root all of a merchant's keys share."""
        root = self._roots.get(merchant_id)
        if root is None:
            if len(self._roots) >= ROOTS_KEPT:
                self._roots.clear()
            root = self._roots[merchant_id] = f"{self.prefix}:{{{encode_component(merchant_id)}}}"
        return root

    def slot(self, slot: SlotId, field: str | None = None) -> str:
        """Occupancy of one slot: ZSET of lease ids scored by expiry (ms since the epoch).
        ``field``: the slot's :meth:`SlotId.field`, when the caller has it already."""
        return self.slot_named(slot.merchant_id, field or slot.field())

    def slot_named(self, merchant_id: str, field: str) -> str:
        """The occupancy key of the merchant's slot named ``field`` (as records keep it)."""
        return f"{self.merchant_root(merchant_id)}:slot:{field}"

    def lease(self, merchant_id: str, token: str) -> str:
        """One lease record (HASH), expiring with the lease."""
        return f"{self.merchant_root(merchant_id)}:lease:{token}"

    def client_ref(self, merchant_id: str, client_reference: str) -> str:
        """The idempotency entry of a client_reference (HASH), expiring with its lease."""
        return f"{self.merchant_root(merchant_id)}:ref:{encode_component(client_reference)}"

    def inventory(self, merchant_id: str) -> str:
        """A merchant's loaded inventory (HASH of slot field -> capacity)."""
        return f"{self.merchant_root(merchant_id)}:inventory"

    def fences(self, merchant_id: str) -> str:
        """Per-slot fencing counters (HASH of slot field -> last token); they only grow."""
        return f"{self.merchant_root(merchant_id)}:fences"

    def lease_index(self, merchant_id: str) -> str:
        """Every lease of the merchant not yet swept (ZSET of lease id -> expiry ms)."""
        return f"{self.merchant_root(merchant_id)}:leases"

    def events(self, merchant_id: str) -> str:
        """The merchant's event stream, trimmed by age (XREAD / consumer groups)."""
        return f"{self.merchant_root(merchant_id)}:events"

    def booking(self, merchant_id: str, token: str) -> str:
        """One booking record (HASH); kept until an operator removes it."""
        return f"{self.merchant_root(merchant_id)}:booking:{token}"

    def booking_index(self, merchant_id: str) -> str:
        """Every booking of the merchant (ZSET of booking id -> slot start ms)."""
        return f"{self.merchant_root(merchant_id)}:bookings"

    def merchants(self) -> str:
        """Registry of merchant ids (SET) that the expiry sweeper walks; no hash tag."""
        return f"{self.prefix}:merchants"

    def feed(self) -> str:
        """The newest feed loaded: its generation_timestamp and nonce (HASH; no hash tag)."""
        return f"{self.prefix}:feed"

    def due(self) -> str:
        """The sweeper's due index (ZSET merchant -> earliest unswept expiry ms; a hint)."""
        return f"{self.prefix}:due"

    def settings(self) -> str:
        """The deciding settings every process on this prefix uses (JSON string)."""
        return f"{self.prefix}:settings"

    def probe(self) -> str:
        """The scratch key the start-up permission check writes and deletes; no hash tag."""
        return f"{self.prefix}:probe"

    def pattern(self) -> str:
        """A SCAN pattern matching every key under this prefix."""
        return f"{self.prefix}:*"
