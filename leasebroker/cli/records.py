"""Operator commands on leases, bookings and slots: inspect, slots, leases, bookings,
release, extend."""

from __future__ import annotations

import sys
from typing import Any

from leasebroker.cli.common import EXIT_NOT_FOUND, EXIT_OK, EXIT_REFUSED, CliError
from leasebroker.cli.session import Session, day_window
from leasebroker.cli.tables import (
    BOOKING_HEADERS,
    LEASE_HEADERS,
    STATUS_HEADERS,
    booking_fields,
    booking_json,
    booking_row,
    json_text,
    lease_fields,
    lease_json,
    lease_row,
    render_table,
    status_json,
    status_row,
)
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.model import LeaseState
from leasebroker.core.units import day_start_ns, iso_ms, utc_day


def inspect(session: Session) -> int:
    public_id = session.args.id
    if public_id.startswith("l."):
        lease = session.broker.get_lease(public_id)
        session.show(lease_json(lease), lease_fields(lease))
    elif public_id.startswith("b."):
        booking = session.broker.get_booking(public_id)
        session.show(booking_json(booking), booking_fields(booking))
    else:
        raise CliError(f"no such lease/booking: {public_id}", EXIT_NOT_FOUND)
    return EXIT_OK


def slots(session: Session) -> int:
    broker, merchant = session.broker, session.args.merchant
    day = session.args.day or utc_day(broker.now_ms())
    statuses = broker.day_status(merchant, day_start_ns(day))
    if session.args.json:
        print(json_text([status_json(s) for s in statuses]))
    elif statuses:
        print(f"slots of merchant {merchant} on {day.isoformat()} (UTC)")
        print(render_table(STATUS_HEADERS, [status_row(s) for s in statuses]))
    else:
        print(f"no slots of merchant {merchant} on {day.isoformat()} (UTC)")
    return EXIT_OK


def leases(session: Session) -> int:
    args = session.args
    views = session.broker.list_leases(args.merchant, None, *day_window(args.day))
    _print_list(session, "leases", [lease_json(v) for v in views], LEASE_HEADERS,
                [lease_row(v) for v in views])  # fmt: skip
    return EXIT_OK


def bookings(session: Session) -> int:
    args = session.args
    found = session.broker.list_bookings(args.merchant, None, *day_window(args.day))
    _print_list(session, "bookings", [booking_json(b) for b in found], BOOKING_HEADERS,
                [booking_row(b) for b in found])  # fmt: skip
    return EXIT_OK


def _print_list(
    session: Session, noun: str, data: list[Any], headers: tuple[str, ...], rows: list[Any]
) -> None:
    args = session.args
    if args.json:
        print(json_text(data))
    elif rows:
        print(render_table(headers, rows))
    else:
        day = f" with slots on {args.day.isoformat()}" if args.day else ""
        print(f"no {noun} of merchant {args.merchant}{day}")


# --- release, extend ---------------------------------------------------------------------


def release(session: Session) -> int:
    broker, lease_id = session.broker, session.args.id
    before = broker.get_lease(lease_id)
    try:
        after = broker.release_lease(lease_id)
    except BrokerError as exc:
        if exc.reason is Reason.LEASE_CONSUMED:
            booking = broker.get_lease(lease_id).booking_id or before.booking_id
            raise CliError(
                f"LEASE_CONSUMED: lease {lease_id} has become booking {booking}; "
                "cancel the booking instead",
                EXIT_REFUSED,
            ) from exc
        raise
    if before.state is not LeaseState.HELD:
        print(f"leasebroker: lease {lease_id} had already ended ({before.state})", file=sys.stderr)
    session.show(lease_json(after), lease_fields(after))
    return EXIT_OK


def extend(session: Session) -> int:
    args, broker = session.args, session.broker
    before = broker.get_lease(args.id)
    after = broker.extend_lease(args.id, args.by, args.fence)
    if args.json:
        print(json_text(lease_json(after)))
        return EXIT_OK
    note = ""
    if after.expires_at_ms < before.expires_at_ms + args.by:
        note = " (capped: a lease lasts at most --max-hold and never past its slot's start)"
    print(
        f"lease {args.id} expires at {iso_ms(after.expires_at_ms)} "
        f"(was {iso_ms(before.expires_at_ms)}){note}"
    )
    return EXIT_OK
