"""The operator commands: each works on the store directly through the broker core (no
server needed), prints a table by default and JSON with ``--json``, and fails through
:meth:`Session.failure` (the options are in :mod:`leasebroker.cli.parser`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from leasebroker.cli import (
    config_command,
    events,
    inventory_commands,
    key_layout,
    maintenance,
    records,
)
from leasebroker.cli.session import Session
from leasebroker.core.errors import BrokerError

COMMANDS: dict[str, Callable[[Session], int]] = {
    "inspect": records.inspect,
    "slots": records.slots,
    "leases": records.leases,
    "bookings": records.bookings,
    "release": records.release,
    "extend": records.extend,
    "events": events.events,
    "keys": key_layout.key_layout,
    "sweep": maintenance.sweep,
    "prune": maintenance.prune,
    "inventory show": inventory_commands.inventory_show,
    "inventory set": inventory_commands.inventory_set,
    "config show": config_command.config_show,
    "config set": config_command.config_set,
}


def run(args: argparse.Namespace) -> int:
    """Run the operator command ``args.operator``; failures become a CliError."""
    command = COMMANDS[args.operator]
    session = Session(args)
    try:
        return command(session)
    except BrokerError as exc:
        raise session.failure(exc) from exc
    finally:
        session.close()
