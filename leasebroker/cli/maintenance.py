"""Operator commands that tidy the store: sweep (mark expired leases) and prune."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone

from leasebroker.cli.common import EXIT_OK
from leasebroker.cli.session import Session
from leasebroker.cli.tables import json_line
from leasebroker.core.errors import BrokerError
from leasebroker.core.pruning import PruneReport
from leasebroker.core.sweeper import sweep_once


def sweep(session: Session) -> int:
    args, broker = session.args, session.broker
    if not args.loop:
        expired = sweep_once(broker)
        session.show({"expired": expired}, f"marked {expired} lease(s) expired")
        return EXIT_OK
    try:
        while True:
            try:
                expired = sweep_once(broker)
            except BrokerError as exc:
                print(f"leasebroker: sweep failed: {exc}", file=sys.stderr, flush=True)
            else:
                if expired:
                    _print_sweep(session, expired)
            time.sleep(args.interval / 1000)
    except KeyboardInterrupt:
        return EXIT_OK


def prune(session: Session) -> int:
    """Forget bookings and fencing counters of slots that started over --older-than ago."""
    args, broker = session.args, session.broker
    merchants = [args.merchant] if args.merchant else broker.merchants()
    total = PruneReport()
    for merchant in merchants:
        total += broker.prune(merchant, args.older_than)
    session.show(
        {"merchants": len(merchants), "bookings": total.bookings, "fences": total.fences},
        f"pruned {total.bookings} booking(s) and {total.fences} fencing counter(s) "
        f"of {len(merchants)} merchant(s)",
    )
    return EXIT_OK


def _print_sweep(session: Session, expired: int) -> None:
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
    if session.args.json:
        print(json_line({"time": stamp, "expired": expired}), flush=True)
    else:
        print(f"{stamp} marked {expired} lease(s) expired", flush=True)
