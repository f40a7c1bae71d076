"""``leasebroker keys``: the Redis key layout, with examples, and a merchant's keys now."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from leasebroker.cli.common import EXIT_OK
from leasebroker.cli.session import Session
from leasebroker.cli.tables import render_table
from leasebroker.core.keys import KeyBuilder, SlotId
from leasebroker.core.units import NS_PER_S, human_ms, instant_ns

SAMPLE_MERCHANT = "merchant-1"
_SAMPLE_START_NS = instant_ns(datetime(2026, 12, 1, 10, tzinfo=timezone.utc))
_SAMPLE_TOKEN = "<token>"  # 22 URL-safe base64 characters in a real key
_SAMPLE_REFERENCE = "ref-1"

# The events' TTL rule when the streams are off.
EVENTS_OFF_TTL = "no events are appended (--events-retention off)"
# (kind, Redis type, what it holds, TTL rule); examples are built by KeyBuilder below,
# ``{retention}`` is the configured event retention.
KEY_KINDS: tuple[tuple[str, str, str, str], ...] = (
    ("slot", "zset", "lease and booking ids holding one slot, scored by expiry ms "
     "(bookings: +inf)", "expires with its longest hold; none while it holds a booking"),
    ("lease", "hash", "one lease record: state, slot, reference, tag, fence, times",
     "lease expiry + record retention; once released: release time + retention"),
    ("ref", "string", "client_reference idempotency entry: lease id, fingerprint, expiry, fence",
     "expires with its lease; deleted on release"),
    ("inventory", "hash", "slot -> capacity (absent: every slot at the default capacity)",
     "none; replaced by inventory load, changed by inventory set"),
    ("fences", "hash", "slot -> last fencing token handed out", "none; tokens only grow"),
    ("leases", "zset", "lease ids not yet swept, scored by expiry ms",
     "none; entries leave on release, booking or sweep"),
    ("events", "stream", "the merchant's state changes (lease.*, booking.*, inventory.*)",
     "none; entries older than {retention} are trimmed at each append"),
    ("booking", "hash", "one booking record: status, slot, lease, client information",
     "none; kept until an operator removes it"),
    ("bookings", "zset", "booking ids scored by slot start ms", "none"),
    ("merchants", "set", "merchant ids the expiry sweeper walks (no hash tag)", "none"),
    ("due", "zset", "merchant -> earliest unswept expiry ms: whom the sweeper visits",
     "none; entries move as leases are swept"),
    ("settings", "string", "the deciding settings every process takes (JSON; no hash tag)",
     "none; written by the first serve, changed by config set"),
    ("feed", "hash", "the newest feed loaded: generation_timestamp, nonce (no hash tag)",
     "none; written by each inventory load"),
    ("probe", "any", "scratch key of the start-up permission check (no hash tag)",
     "deleted by the check that writes it"),
)  # fmt: skip


def _examples(keys: KeyBuilder, merchant: str) -> dict[str, str]:
    slot = SlotId(merchant, "haircut", _SAMPLE_START_NS, 30 * 60 * NS_PER_S)
    return {
        "slot": keys.slot(slot),
        "lease": keys.lease(merchant, _SAMPLE_TOKEN),
        "ref": keys.client_ref(merchant, _SAMPLE_REFERENCE),
        "inventory": keys.inventory(merchant),
        "fences": keys.fences(merchant),
        "leases": keys.lease_index(merchant),
        "events": keys.events(merchant),
        "booking": keys.booking(merchant, _SAMPLE_TOKEN),
        "bookings": keys.booking_index(merchant),
        "merchants": keys.merchants(),
        "due": keys.due(),
        "settings": keys.settings(),
        "feed": keys.feed(),
        "probe": keys.probe(),
    }


def key_layout(session: Session) -> int:
    args, keys = session.args, session.keys
    merchant = args.merchant if args.merchant is not None else SAMPLE_MERCHANT
    # With a merchant the command connects, and then the settings stored under the
    # prefix (the event retention in the TTL column) are the ones in force.
    broker = session.broker if args.merchant is not None else None
    examples = _examples(keys, merchant)
    layout = [
        {
            "kind": kind,
            "type": kind_type,
            "example": examples[kind],
            "holds": holds,
            "ttl": EVENTS_OFF_TTL
            if kind == "events" and not session.config.events_on
            else ttl.format(retention=human_ms(session.config.events_retention_ms)),
        }
        for kind, kind_type, holds, ttl in KEY_KINDS
    ]
    data: dict[str, Any] = {"prefix": keys.prefix, "merchant_id": merchant, "layout": layout}
    text = [
        f"key layout (prefix {keys.prefix}; examples for merchant {merchant}):",
        render_table(
            ("KIND", "TYPE", "EXAMPLE", "HOLDS", "TTL"),
            [[k["kind"], k["type"], k["example"], k["holds"], k["ttl"]] for k in layout],
        ),
    ]
    if broker is not None:
        existing = [
            {"key": k.key, "kind": k.kind, "type": k.type, "ttl_ms": k.ttl_ms}
            for k in broker.merchant_keys(merchant)
        ]
        registered = broker.is_registered(merchant)
        data["existing"], data["registered"] = existing, registered
        text.append("")
        if existing:
            text.append(f"keys of merchant {merchant} now:")
            text.append(
                render_table(
                    ("KEY", "KIND", "TYPE", "TTL"),
                    [[k["key"], k["kind"], k["type"], _ttl_text(k["ttl_ms"])] for k in existing],
                )
            )
        else:
            text.append(f"no keys of merchant {merchant} now")
        text.append(
            f"in the merchant registry ({keys.merchants()}): {'yes' if registered else 'no'}"
        )
    session.show(data, "\n".join(text))
    return EXIT_OK


def _ttl_text(ttl_ms: int | None) -> str:
    return "none" if ttl_ms is None else human_ms(ttl_ms)
