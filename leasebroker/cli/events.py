"""``leasebroker events``: print a merchant's event stream, and follow it."""

from __future__ import annotations

import sys

from leasebroker.cli.common import EXIT_OK, EXIT_USAGE, CliError
from leasebroker.cli.session import Session
from leasebroker.cli.tables import event_json, event_line, json_line
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.inspection import StreamEvent

# XREAD BLOCK must return well within the store's socket timeout (5 s); Ctrl-C
# interrupts the wait at once anyway.
FOLLOW_BLOCK_MS = 1_000
FOLLOW_BATCH = 100


def events(session: Session) -> int:
    args, broker = session.args, session.broker
    if not broker.config.events_on and args.follow:
        raise CliError(_off(broker.keys.prefix) + ": there is nothing to follow", EXIT_USAGE)
    try:
        history = broker.events(args.merchant, args.since, args.count)
    except BrokerError as exc:
        if exc.reason is not Reason.INVALID_FIELD:
            raise
        raise CliError(f"--since {args.since}: {exc.message}", EXIT_USAGE) from exc
    for event in history:
        _print_event(session, event)
    if not broker.config.events_on:
        # What is printed was written before the streams were turned off.
        print(f"leasebroker: {_off(broker.keys.prefix)}", file=sys.stderr)
    if not args.follow:
        return EXIT_OK
    if history:
        cursor = history[-1].entry_id
    elif args.since:
        cursor = args.since
    else:
        cursor = broker.last_event_id(args.merchant)
    try:
        while True:
            for event in broker.wait_events(args.merchant, cursor, FOLLOW_BLOCK_MS, FOLLOW_BATCH):
                _print_event(session, event)
                cursor = event.entry_id
    except KeyboardInterrupt:
        return EXIT_OK


def _off(prefix: str) -> str:
    return (
        f"events are off on key prefix {prefix} (--events-retention off): no new event is"
        " appended; `leasebroker config set --events-retention 1h` turns them on"
    )


def _print_event(session: Session, event: StreamEvent) -> None:
    if session.args.json:
        print(json_line(event_json(event)), flush=True)
    else:
        print(event_line(event), flush=True)
