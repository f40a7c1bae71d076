"""How the operator commands show things: aligned tables for people, JSON for scripts.

JSON follows the names ``leasebroker lease create`` prints: instants are ISO 8601
UTC strings (``start_time``, ``expiration_time``, ...), slot lengths are
``duration_ms``, and a missing value is ``null``. Tables show ``-`` for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.inspection import StreamEvent
from leasebroker.core.keys import SlotId
from leasebroker.core.model import Booking, InventorySlot, LeaseView, SlotStatus
from leasebroker.core.units import NS_PER_MS, human_ns, iso_ms, utc_text

MISSING = "-"


# --- values ------------------------------------------------------------------------------


def duration_ms(span_ns: int) -> int | float:
    """A slot length in ms: a whole number unless the slot has a sub-millisecond part."""
    whole, rest = divmod(span_ns, NS_PER_MS)
    return whole if not rest else span_ns / NS_PER_MS


def cell(value: Any) -> str:
    """One table cell: ``-`` for nothing."""
    if value is None or value == "":
        return MISSING
    return str(value)


# --- layout ------------------------------------------------------------------------------


def render_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Columns padded to their widest cell, two spaces apart, header first."""
    lines = [list(headers)] + [[cell(value) for value in row] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def render_fields(pairs: Iterable[tuple[str, Any]]) -> str:
    """``name  value`` lines, the values lined up."""
    items = [(name, cell(value)) for name, value in pairs]
    width = max(len(name) for name, _ in items)
    return "\n".join(f"{name.ljust(width)}  {value}".rstrip() for name, value in items)


def json_line(value: Any) -> str:
    """One JSON object on one line (for streams of records)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def json_text(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


# --- slots -------------------------------------------------------------------------------

SLOT_HEADERS = ("SERVICE", "START", "DURATION", "STAFF", "ROOM")


def slot_json(slot: SlotId) -> dict[str, Any]:
    return {
        "merchant_id": slot.merchant_id,
        "service_id": slot.service_id,
        "start_time": utc_text(slot.start_ns),
        "duration_ms": duration_ms(slot.duration_ns),
        "staff_id": slot.staff_id,
        "room_id": slot.room_id,
    }


def slot_cells(slot: SlotId) -> list[str]:
    return [
        slot.service_id,
        utc_text(slot.start_ns),
        human_ns(slot.duration_ns),
        slot.staff_id,
        slot.room_id,
    ]


def slot_fields(slot: SlotId) -> list[tuple[str, Any]]:
    return [
        ("merchant", slot.merchant_id),
        ("service", slot.service_id),
        ("start", utc_text(slot.start_ns)),
        ("duration", human_ns(slot.duration_ns)),
        ("staff", slot.staff_id),
        ("room", slot.room_id),
    ]


STATUS_HEADERS = (*SLOT_HEADERS, "CAPACITY", "SOURCE", "HOLDS", "BOOKINGS", "FREE")


def status_json(status: SlotStatus) -> dict[str, Any]:
    return {
        "slot": slot_json(status.slot),
        "capacity": status.capacity,
        "source": status.source,
        "holds": status.holds,
        "bookings": status.bookings,
        "free": status.free,
    }


def status_row(status: SlotStatus) -> list[Any]:
    return [
        *slot_cells(status.slot),
        status.capacity,
        status.source,
        status.holds,
        status.bookings,
        status.free,
    ]


INVENTORY_HEADERS = (*SLOT_HEADERS, "CAPACITY")


def inventory_json(item: InventorySlot) -> dict[str, Any]:
    return {"slot": slot_json(item.slot), "capacity": item.capacity}


def inventory_row(item: InventorySlot) -> list[Any]:
    return [*slot_cells(item.slot), item.capacity]


# --- leases ------------------------------------------------------------------------------

LEASE_HEADERS = ("LEASE", "STATE", *SLOT_HEADERS, "FENCE", "EXPIRES", "CLIENT REFERENCE")


def lease_json(lease: LeaseView) -> dict[str, Any]:
    return {
        "kind": "lease",
        "lease_id": lease.lease_id,
        "state": lease.state,
        "slot": slot_json(lease.slot),
        "fence": lease.fence,
        "client_reference": lease.client_reference,
        "availability_tag": lease.availability_tag,
        "created_time": iso_ms(lease.created_ms),
        "expiration_time": iso_ms(lease.expires_at_ms),
        "ended_time": iso_ms(lease.ended_ms),
        "booking_id": lease.booking_id,
    }


def lease_row(lease: LeaseView) -> list[Any]:
    return [
        lease.lease_id,
        lease.state,
        *slot_cells(lease.slot),
        lease.fence,
        iso_ms(lease.expires_at_ms),
        lease.client_reference,
    ]


def lease_fields(lease: LeaseView) -> str:
    return render_fields(
        [
            ("lease", lease.lease_id),
            ("state", lease.state),
            *slot_fields(lease.slot),
            ("fence", lease.fence),
            ("client reference", lease.client_reference),
            ("availability tag", lease.availability_tag),
            ("created", iso_ms(lease.created_ms)),
            ("expires", iso_ms(lease.expires_at_ms)),
            ("ended", iso_ms(lease.ended_ms)),
            ("booking", lease.booking_id),
        ]
    )


# --- bookings ----------------------------------------------------------------------------

BOOKING_HEADERS = ("BOOKING", "STATUS", *SLOT_HEADERS, "FENCE", "LEASE", "UPDATED")


def _message_json(message_type: type[Message], serialized: bytes | None) -> Any:
    """A stored v0 message as its proto3 JSON, or its bytes in hex when it does not parse."""
    if serialized is None:
        return None
    try:
        message = message_type.FromString(serialized)
    except (DecodeError, ValueError):
        return {"undecodable_hex": serialized.hex()}
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def _flat_text(value: Any, prefix: str = "") -> list[str]:
    """``name=value`` for every leaf of a JSON object (``address.postal_code=...``)."""
    if isinstance(value, dict):
        return [text for key, item in value.items() for text in _flat_text(item, f"{prefix}{key}.")]
    return [f"{prefix.rstrip('.')}={value}"]


def booking_json(booking: Booking) -> dict[str, Any]:
    return {
        "kind": "booking",
        "booking_id": booking.booking_id,
        "lease_id": booking.lease_id,
        "status": booking.status,
        "slot": slot_json(booking.slot),
        "availability_tag": booking.availability_tag,
        "fence": booking.fence,
        "created_time": iso_ms(booking.created_ms),
        "updated_time": iso_ms(booking.updated_ms),
        "client_information": _message_json(pb.ClientInformation, booking.client_information),
        "payment_information": _message_json(pb.PaymentInformation, booking.payment_information),
    }


def booking_row(booking: Booking) -> list[Any]:
    return [
        booking.booking_id,
        booking.status,
        *slot_cells(booking.slot),
        booking.fence,
        booking.lease_id,
        iso_ms(booking.updated_ms),
    ]


def booking_fields(booking: Booking) -> str:
    data = booking_json(booking)
    client = data["client_information"]
    payment = data["payment_information"]
    return render_fields(
        [
            ("booking", booking.booking_id),
            ("status", booking.status),
            *slot_fields(booking.slot),
            ("availability tag", booking.availability_tag or None),
            ("fence", booking.fence),
            ("lease", booking.lease_id),
            ("created", iso_ms(booking.created_ms)),
            ("updated", iso_ms(booking.updated_ms)),
            ("client", " ".join(_flat_text(client)) if client else None),
            ("payment", " ".join(_flat_text(payment)) if payment else None),
        ]
    )


# --- events ------------------------------------------------------------------------------


def event_json(event: StreamEvent) -> dict[str, Any]:
    """One stream entry: its id, type, time (from ``at_ms``) and every field as stored."""
    values = dict(event.fields)
    at_ms = values.get("at_ms", "")
    return {
        "id": event.entry_id,
        "type": values.pop("type", None),
        "time": iso_ms(int(at_ms)) if at_ms.isdigit() else None,
        "fields": values,
    }


def event_line(event: StreamEvent) -> str:
    """``<stream id> <ISO time> <type> key=value ...`` (``at_ms`` is the time)."""
    data = event_json(event)
    pairs = [f"{key}={_quoted(value)}" for key, value in data["fields"].items() if key != "at_ms"]
    return " ".join([data["id"], cell(data["time"]), cell(data["type"]), *pairs])


def _quoted(value: str) -> str:
    """Values stay as they are unless empty or holding blanks (then JSON-quoted)."""
    if value and not any(ch.isspace() for ch in value) and '"' not in value:
        return value
    return json.dumps(value)
