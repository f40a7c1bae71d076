"""``leasebroker inventory show`` and ``inventory set`` (``inventory load`` is in serve.py)."""

from __future__ import annotations

import sys

from leasebroker.cli.common import EXIT_OK
from leasebroker.cli.session import Session
from leasebroker.cli.tables import (
    INVENTORY_HEADERS,
    inventory_json,
    inventory_row,
    json_text,
    render_fields,
    render_table,
    slot_fields,
    slot_json,
)
from leasebroker.core.keys import SlotId
from leasebroker.core.model import InventoryState
from leasebroker.core.units import NS_PER_MS, instant_ns
from leasebroker.wire.errors import FieldPaths

# The core's field names as this command's options, for error messages.
_OPTIONS = FieldPaths(
    "",
    {
        "merchant_id": "--merchant",
        "service_id": "--service",
        "staff_id": "--staff",
        "room_id": "--room",
        "start_time": "--start",
        "duration": "--duration",
        "capacity": "--capacity",
    },
)


def inventory_show(session: Session) -> int:
    merchant, broker = session.args.merchant, session.broker
    items = broker.get_inventory(merchant)
    state = broker.inventory_state(merchant)
    if session.args.json:
        data = {
            "merchant_id": merchant,
            "state": state.value,
            "slots": [inventory_json(item) for item in items],
        }
        print(json_text(data))
    elif state is InventoryState.LOADED:
        print(render_table(INVENTORY_HEADERS, [inventory_row(item) for item in items]))
    elif state is InventoryState.WITHDRAWN:
        print(
            f"merchant {merchant} is withdrawn: it offers nothing (an empty inventory, or "
            "left out of a complete feed)"
        )
    elif broker.config.default_capacity > 0:
        print(
            f"merchant {merchant} has no inventory: every slot is offered with the default "
            f"capacity ({broker.config.default_capacity})"
        )
    else:
        print(
            f"merchant {merchant} has no inventory, and the default capacity is 0: it offers "
            "nothing (CreateLease answers UNKNOWN_MERCHANT)"
        )
    return EXIT_OK


def inventory_set(session: Session) -> int:
    args, broker = session.args, session.broker
    slot = SlotId(
        merchant_id=args.merchant,
        service_id=args.service,
        start_ns=instant_ns(args.start),
        duration_ns=args.duration * NS_PER_MS,
        staff_id=args.staff,
        room_id=args.room,
    )
    had_inventory = broker.inventory_state(args.merchant) is not InventoryState.NONE
    with _OPTIONS:
        previous = broker.set_capacity(slot, args.capacity)
    if not had_inventory:
        before = (
            "every slot was offered with the default capacity"
            if broker.config.default_capacity > 0
            else "it offered nothing (the default capacity is 0)"
        )
        print(
            f"leasebroker: warning: merchant {args.merchant} had no inventory, so {before}; "
            "from now on only the slots in its inventory are offered (now just this one)",
            file=sys.stderr,
        )
    data = {"slot": slot_json(slot), "capacity": args.capacity, "previous_capacity": previous}
    text = render_fields(
        [
            *slot_fields(slot),
            ("capacity", args.capacity),
            ("was", "not listed" if previous is None else previous),
        ]
    )
    session.show(data, text)
    return EXIT_OK
