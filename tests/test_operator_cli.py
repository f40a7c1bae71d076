"""The operator commands end to end: ``leasebroker.cli.main([...])`` against the real Redis.

inspect, slots, leases, bookings, release, extend, events (with --follow), keys,
sweep (with --loop), inventory show / set: their tables and ``--json``, and every
exit code (0 ok, 1 refused, 2 usage, 3 unreachable, 4 not found).

Every test has its own key prefix (conftest ``key_prefix``), its keys are deleted
afterwards, and the commands talk to redis://127.0.0.1:6379/0 only. Leases and
bookings to look at are made with a LeaseBroker on the same prefix.
Unreachable Redis is simulated (a patched client), never another address.

Commands that run until Ctrl-C run in this (the main) thread, while a helper thread
makes events, waits until they are printed, and then sends SIGINT to this thread.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
from support import HOUR_NS, MERCHANT, REAL_REDIS_URL, book, hold, run_main, slot, unknown_id

from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.cli.key_layout import EVENTS_OFF_TTL
from leasebroker.core.broker import LeaseBroker
from leasebroker.core.errors import BrokerError, Reason
from leasebroker.core.inspection import glob_escape
from leasebroker.core.keys import KeyBuilder, SlotId, format_span
from leasebroker.core.model import InventorySlot, Lease
from leasebroker.core.units import DAY_NS, NS_PER_MS, NS_PER_S

CLIENT = pb.ClientInformation(telephone="+1").SerializeToString()
# A bound on waiting for output that must come; never reached when things work.
WAIT_S = 30.0
EVENT_LINE_RE = re.compile(
    r"(?P<id>\d+-\d+) (?P<time>\S+Z) (?P<type>[a-z_.]+)(?P<pairs>( \S+=\S*)*)"
)


@pytest.fixture
def backend() -> str:
    """conftest's ``broker`` / ``redis_client`` on the real Redis only (keys cleaned up)."""
    return "real"


# Tests see no LEASEBROKER_* variable unless they set one.
pytestmark = pytest.mark.usefixtures("no_leasebroker_env")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)

    def fields(self) -> dict[str, str]:
        """A ``name  value`` listing as a dict."""
        assert self.code == 0, self.err
        return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in self.out.splitlines())

    def rows(self) -> list[dict[str, str]]:
        """A table (header line first) as one dict per row."""
        assert self.code == 0, self.err
        return table_rows(self.out.splitlines())


def table_rows(lines: list[str]) -> list[dict[str, str]]:
    header, *body = lines
    names = re.split(r"\s{2,}", header.strip())
    return [dict(zip(names, re.split(r"\s{2,}", line.strip()), strict=True)) for line in body]


def words(text: str) -> list[str]:
    """``"--merchant m --day d"`` as an argument list."""
    return text.split()


@pytest.fixture
def run(capsys, store_args, broker) -> Callable[..., Result]:
    """``run("inspect", ID)``: the command with this test's store options appended."""

    def run(*argv: str, store: bool = True) -> Result:
        code = run_main([*argv, *store_args] if store else list(argv))
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


# --- building things to look at -------------------------------------------------------


@pytest.fixture
def start_ns(broker) -> int:
    """Tomorrow 10:00 UTC by Redis's clock: no hold is cut short by the slot's start, and
    slots a few hours later are on the same day."""
    day_ms = 86_400_000
    return ((broker.now_ms() // day_ms + 1) * day_ms + 10 * 3_600_000) * NS_PER_MS


def slot_at(start_ns: int, service: str = "haircut", merchant: str = MERCHANT, **kw) -> SlotId:
    return slot(start_ns=start_ns, service_id=service, merchant_id=merchant, **kw)


def expired_lease(broker: LeaseBroker, slot: SlotId, reference: str) -> Lease:
    """A lease asked to end 30 ms from now, returned once Redis's clock has passed it."""
    lease = hold(broker, slot, reference, requested_expiry_ns=(broker.now_ms() + 30) * NS_PER_MS)
    deadline = time.monotonic() + WAIT_S
    while broker.now_ms() < lease.expires_at_ms:
        assert time.monotonic() < deadline, "Redis's clock did not pass the lease's expiry"
        time.sleep(0.01)
    return lease


def day_of(epoch_ns: int) -> str:
    return datetime.fromtimestamp(epoch_ns // NS_PER_S, tz=timezone.utc).date().isoformat()


def iso_ns(epoch_ns: int) -> str:
    seconds, nanos = divmod(epoch_ns, NS_PER_S)
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{nanos:09d}".rstrip("0") if nanos else "") + "Z"


def iso_ms(epoch_ms: int | None) -> str | None:
    if epoch_ms is None:
        return None
    seconds, millis = divmod(epoch_ms, 1000)
    text = iso_ns(seconds * NS_PER_S)
    return f"{text[:-1]}.{millis:03d}Z" if millis else text


def slot_json(slot: SlotId) -> dict[str, Any]:
    return {
        "merchant_id": slot.merchant_id,
        "service_id": slot.service_id,
        "start_time": iso_ns(slot.start_ns),
        "duration_ms": slot.duration_ns // NS_PER_MS,
        "staff_id": slot.staff_id,
        "room_id": slot.room_id,
    }


def expected_lease_json(broker: LeaseBroker, lease_id: str) -> dict[str, Any]:
    view = broker.get_lease(lease_id)
    return {
        "kind": "lease",
        "lease_id": view.lease_id,
        "state": view.state,
        "slot": slot_json(view.slot),
        "fence": view.fence,
        "client_reference": view.client_reference,
        "availability_tag": view.availability_tag,
        "created_time": iso_ms(view.created_ms),
        "expiration_time": iso_ms(view.expires_at_ms),
        "ended_time": iso_ms(view.ended_ms),
        "booking_id": view.booking_id,
    }


def expected_booking_json(broker: LeaseBroker, booking_id: str) -> dict[str, Any]:
    booking = broker.get_booking(booking_id)
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
        "client_information": {"telephone": "+1"},
        "payment_information": None,
    }


# --- inspect ----------------------------------------------------------------------------


def test_inspect_lease_shows_every_field(run, broker, start_ns):
    slot = slot_at(start_ns, staff_id="ann", room_id="chair-2")
    lease = hold(broker, slot, "R1", availability_tag="tag-7")
    view = broker.get_lease(lease.lease_id)

    shown = run("inspect", lease.lease_id).fields()
    assert shown == {
        "lease": lease.lease_id,
        "state": "held",
        "merchant": MERCHANT,
        "service": "haircut",
        "start": iso_ns(start_ns),
        "duration": "30m",
        "staff": "ann",
        "room": "chair-2",
        "fence": "1",
        "client reference": "R1",
        "availability tag": "tag-7",
        "created": iso_ms(view.created_ms),
        "expires": iso_ms(view.expires_at_ms),
        "ended": "-",
        "booking": "-",
    }
    assert run("inspect", lease.lease_id, "--json").json() == expected_lease_json(
        broker, lease.lease_id
    )


def test_inspect_booking_and_its_lease_link_to_each_other(run, broker, start_ns):
    lease = hold(broker, slot_at(start_ns), "R1")
    booking = book(broker, lease.lease_id, client_information=CLIENT)

    shown = run("inspect", booking.booking_id).fields()
    assert shown["booking"] == booking.booking_id
    assert shown["status"] == "confirmed"
    assert shown["lease"] == lease.lease_id
    assert (shown["service"], shown["start"], shown["duration"]) == (
        "haircut",
        iso_ns(start_ns),
        "30m",
    )
    assert shown["fence"] == str(booking.fence)
    assert shown["created"] == iso_ms(booking.created_ms)
    assert shown["client"] == "telephone=+1"
    assert shown["payment"] == "-"
    data = run("inspect", booking.booking_id, "--json").json()
    assert data == expected_booking_json(broker, booking.booking_id)

    lease_shown = run("inspect", lease.lease_id).fields()
    assert (lease_shown["state"], lease_shown["booking"]) == ("consumed", booking.booking_id)
    lease_data = run("inspect", lease.lease_id, "--json").json()
    assert (lease_data["state"], lease_data["booking_id"]) == ("consumed", booking.booking_id)
    assert lease_data["ended_time"] is not None


@pytest.mark.parametrize(
    ("public_id", "message"),
    [
        (unknown_id("l"), f"no such lease: {unknown_id('l')}"),
        (unknown_id("b"), f"no such booking: {unknown_id('b')}"),
        ("l.not-an-id", "no such lease: l.not-an-id"),
        ("b.bWVyY2hhbnQtMQ.short", "no such booking: b.bWVyY2hhbnQtMQ.short"),
        ("xyz", "no such lease/booking: xyz"),
    ],
    ids=["unknown-lease", "unknown-booking", "malformed-lease", "malformed-booking", "other"],
)
@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_inspect_unknown_or_malformed_id_exits_4(run, public_id, message, as_json):
    result = run("inspect", public_id, *(["--json"] if as_json else []))
    assert result.code == 4
    assert result.err.strip() == f"leasebroker: {message}"
    assert result.out == ""


# --- slots ------------------------------------------------------------------------------


def test_slots_shows_each_slot_of_the_day(run, broker, start_ns):
    unlisted = slot_at(start_ns + 3 * HOUR_NS, "beard")
    hold(broker, unlisted, "U")  # no inventory yet: offered at the default capacity
    busy, quiet = slot_at(start_ns), slot_at(start_ns + HOUR_NS, staff_id="ann")
    next_day = slot_at(start_ns + DAY_NS)
    broker.replace_inventory(
        MERCHANT, [InventorySlot(busy, 2), InventorySlot(quiet, 1), InventorySlot(next_day, 5)]
    )
    hold(broker, busy, "A")
    book(broker, hold(broker, busy, "B").lease_id, client_information=CLIENT)
    day = day_of(start_ns)
    expected = [
        # service, start, duration, staff, room, capacity, source, holds, bookings, free
        ["haircut", iso_ns(start_ns), "30m", "-", "-", "2", "inventory", "1", "1", "0"],
        ["haircut", iso_ns(start_ns + HOUR_NS), "30m", "ann", "-", "1", "inventory", "0", "0", "1"],
        ["beard", iso_ns(start_ns + 3 * HOUR_NS), "30m", "-", "-", "0", "unlisted", "1", "0", "0"],
    ]

    result = run("slots", "--merchant", MERCHANT, "--day", day)
    assert result.code == 0, result.err
    title, *table = result.out.splitlines()
    assert title == f"slots of merchant {MERCHANT} on {day} (UTC)"
    rows = table_rows(table)
    assert list(rows[0]) == words(
        "SERVICE START DURATION STAFF ROOM CAPACITY SOURCE HOLDS BOOKINGS FREE"
    )
    assert [list(row.values()) for row in rows] == expected

    data = run("slots", "--merchant", MERCHANT, "--day", day, "--json").json()
    assert data[0] == {
        "slot": slot_json(busy),
        "capacity": 2,
        "source": "inventory",
        "holds": 1,
        "bookings": 1,
        "free": 0,
    }
    assert [(d["slot"]["start_time"], d["free"]) for d in data] == [
        (row[1], int(row[9])) for row in expected
    ]


def test_slots_default_day_is_today_on_redis_clock(run, broker):
    today_ns = broker.now_ms() // 86_400_000 * 86_400_000 * NS_PER_MS
    broker.set_capacity(slot_at(today_ns), 4)

    result = run("slots", "--merchant", MERCHANT)
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == f"slots of merchant {MERCHANT} on {day_of(today_ns)} (UTC)"
    data = run("slots", "--merchant", MERCHANT, "--json").json()
    assert [(d["slot"]["start_time"], d["capacity"], d["source"]) for d in data] == [
        (iso_ns(today_ns), 4, "inventory")
    ]


def test_slots_of_an_empty_day(run, start_ns):
    result = run("slots", "--merchant", MERCHANT, "--day", "2030-01-02")
    assert (result.code, result.out) == (
        0,
        f"no slots of merchant {MERCHANT} on 2030-01-02 (UTC)\n",
    )
    assert run("slots", "--merchant", MERCHANT, "--day", "2030-01-02", "--json").json() == []


def test_slots_default_capacity_is_taken_from_the_option(run, broker, start_ns):
    hold(broker, slot_at(start_ns), "A")
    day = day_of(start_ns)
    data = run("slots", "--merchant", MERCHANT, "--day", day, "--default-capacity", "3", "--json")
    assert [(d["capacity"], d["source"], d["free"]) for d in data.json()] == [(3, "default", 2)]


# --- leases, bookings -------------------------------------------------------------------


def test_leases_lists_live_leases_and_filters_by_day(run, broker, start_ns):
    first = hold(broker, slot_at(start_ns, staff_id="ann"), "R1")
    later = hold(broker, slot_at(start_ns + DAY_NS), "R2")
    consumed = hold(broker, slot_at(start_ns, "color"), "R3")  # consumed: not a lease now
    book(broker, consumed.lease_id, client_information=CLIENT)

    rows = run("leases", "--merchant", MERCHANT).rows()
    assert [row["LEASE"] for row in rows] == [first.lease_id, later.lease_id]
    assert rows[0] == {
        "LEASE": first.lease_id,
        "STATE": "held",
        "SERVICE": "haircut",
        "START": iso_ns(start_ns),
        "DURATION": "30m",
        "STAFF": "ann",
        "ROOM": "-",
        "FENCE": "1",
        "EXPIRES": iso_ms(first.expires_at_ms),
        "CLIENT REFERENCE": "R1",
    }
    data = run("leases", "--merchant", MERCHANT, "--json").json()
    assert data == [expected_lease_json(broker, v.lease_id) for v in (first, later)]

    next_day = day_of(start_ns + DAY_NS)
    rows = run("leases", "--merchant", MERCHANT, "--day", next_day).rows()
    assert [row["LEASE"] for row in rows] == [later.lease_id]
    empty = run("leases", "--merchant", MERCHANT, "--day", "2030-01-02")
    assert empty.out == f"no leases of merchant {MERCHANT} with slots on 2030-01-02\n"
    assert run("leases", "--merchant", "nobody", "--json").json() == []


def test_bookings_lists_bookings_and_filters_by_day(run, broker, start_ns):
    first = book(broker, hold(broker, slot_at(start_ns), "R1").lease_id, client_information=CLIENT)
    later_lease = hold(broker, slot_at(start_ns + DAY_NS), "R2")
    later = book(broker, later_lease.lease_id, client_information=CLIENT)
    broker.cancel_booking(later.booking_id)

    rows = run("bookings", "--merchant", MERCHANT).rows()
    assert [(row["BOOKING"], row["STATUS"]) for row in rows] == [
        (first.booking_id, "confirmed"),
        (later.booking_id, "cancelled"),
    ]
    assert rows[0]["LEASE"] == first.lease_id
    assert (rows[0]["SERVICE"], rows[0]["START"], rows[0]["FENCE"]) == (
        "haircut",
        iso_ns(start_ns),
        str(first.fence),
    )
    data = run("bookings", "--merchant", MERCHANT, "--json").json()
    assert data == [expected_booking_json(broker, b.booking_id) for b in (first, later)]

    data = run("bookings", "--merchant", MERCHANT, "--day", day_of(start_ns), "--json").json()
    assert [d["booking_id"] for d in data] == [first.booking_id]
    empty = run("bookings", "--merchant", MERCHANT, "--day", "2030-01-02")
    assert empty.out == f"no bookings of merchant {MERCHANT} with slots on 2030-01-02\n"


# --- release ----------------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_release_ends_the_lease_and_prints_it(run, broker, start_ns, as_json):
    lease = hold(broker, slot_at(start_ns), "R1")
    flag = ["--json"] if as_json else []

    result = run("release", lease.lease_id, *flag)
    assert result.code == 0, result.err
    view = broker.get_lease(lease.lease_id)
    assert view.state == "released"
    if as_json:
        assert json.loads(result.out) == expected_lease_json(broker, lease.lease_id)
    else:
        shown = result.fields()
        assert (shown["lease"], shown["state"]) == (lease.lease_id, "released")
        assert shown["ended"] == iso_ms(view.ended_ms)
    assert broker.slot_status(slot_at(start_ns)).holds == 0

    again = run("release", lease.lease_id, *flag)  # nothing changes, and it says so
    assert again.code == 0
    assert f"lease {lease.lease_id} had already ended (released)" in again.err


def test_release_of_a_booked_lease_exits_1(run, broker, start_ns):
    lease = hold(broker, slot_at(start_ns), "R1")
    booking = book(broker, lease.lease_id, client_information=CLIENT)
    result = run("release", lease.lease_id)
    assert result.code == 1
    assert result.err.startswith("leasebroker: LEASE_CONSUMED: ")
    assert f"has become booking {booking.booking_id}" in result.err
    assert "cancel the booking" in result.err
    assert result.out == ""
    assert broker.get_booking(booking.booking_id).status == "confirmed"


@pytest.mark.parametrize("command", ["release", "extend"])
def test_release_and_extend_of_unknown_lease_exit_4(run, broker, start_ns, command):
    booking = book(
        broker, hold(broker, slot_at(start_ns), "R1").lease_id, client_information=CLIENT
    )
    extra = ["--by", "5m"] if command == "extend" else []
    for public_id in (unknown_id("l"), "l.garbage", booking.booking_id):
        result = run(command, public_id, *extra)
        assert result.code == 4, (public_id, result.err)
        assert result.err.strip() == f"leasebroker: no such lease: {public_id}"
        assert result.out == ""


# --- extend -----------------------------------------------------------------------------


def test_extend_prints_the_new_expiry(run, broker, start_ns):
    lease = hold(broker, slot_at(start_ns), "R1")
    before = lease.expires_at_ms

    result = run("extend", lease.lease_id, "--by", "5m", "--fence", str(lease.fence))
    assert result.code == 0, result.err
    after = broker.get_lease(lease.lease_id).expires_at_ms
    assert after == before + 300_000
    assert result.out == (
        f"lease {lease.lease_id} expires at {iso_ms(after)} (was {iso_ms(before)})\n"
    )

    data = run("extend", lease.lease_id, "--by", "90s", "--json").json()
    assert data == expected_lease_json(broker, lease.lease_id)
    assert data["expiration_time"] == iso_ms(after + 90_000)


def test_extend_says_when_the_maximum_hold_caps_it(run, broker, start_ns):
    lease = hold(broker, slot_at(start_ns), "R1")
    view = broker.get_lease(lease.lease_id)
    result = run("extend", lease.lease_id, "--by", "2h", "--max-hold", "45m")
    assert result.code == 0, result.err
    capped = view.created_ms + 45 * 60_000
    assert broker.get_lease(lease.lease_id).expires_at_ms == capped
    assert f"expires at {iso_ms(capped)}" in result.out
    assert "(capped: " in result.out


def _released(broker, lease):
    broker.release_lease(lease.lease_id)
    return []


def _booked(broker, lease):
    book(broker, lease.lease_id, client_information=CLIENT)
    return []


def _stale_fence(broker, lease):
    return ["--fence", str(lease.fence + 1)]


@pytest.mark.parametrize(
    ("prepare", "reason"),
    [
        (_released, "LEASE_RELEASED"),
        (_booked, "LEASE_CONSUMED"),
        (_stale_fence, "FENCING_TOKEN_STALE"),
        (None, "LEASE_EXPIRED"),
    ],
    ids=["released", "consumed", "stale-fence", "expired"],
)
def test_extend_refused_exits_1_with_the_reason(run, broker, start_ns, prepare, reason):
    if prepare is None:
        lease, extra = expired_lease(broker, slot_at(start_ns), "R1"), []
    else:
        lease = hold(broker, slot_at(start_ns), "R1")
        extra = prepare(broker, lease)
    before = broker.get_lease(lease.lease_id).expires_at_ms
    result = run("extend", lease.lease_id, "--by", "5m", *extra)
    assert result.code == 1
    assert result.err.startswith(f"leasebroker: {reason}: ")
    assert result.out == ""
    assert broker.get_lease(lease.lease_id).expires_at_ms == before


# --- events -----------------------------------------------------------------------------

SCENARIO_TYPES = [
    "inventory.loaded",
    "inventory.capacity_set",
    "lease.created",
    "lease.extended",
    "lease.released",
    "lease.created",
    "lease.consumed",
    "booking.created",
    "booking.cancelled",
    "lease.created",
    "lease.expired",
]


def play_scenario(run, broker, start_ns) -> dict[str, str]:
    """Every kind of event, through the commands where there is one; returns the ids."""
    slot = slot_at(start_ns)
    broker.replace_inventory(MERCHANT, [InventorySlot(slot_at(start_ns + HOUR_NS), 1)])
    start = iso_ns(start_ns)
    capacity = ["--merchant", MERCHANT, "--service", "haircut", "--start", start]
    assert run("inventory", "set", *capacity, "--duration", "30m", "--capacity", "2").code == 0
    first = hold(broker, slot, "R1")
    assert run("extend", first.lease_id, "--by", "1m").code == 0
    assert run("release", first.lease_id).code == 0
    second = hold(broker, slot, "R2")
    booking = book(broker, second.lease_id, client_information=CLIENT)
    broker.cancel_booking(booking.booking_id)
    third = expired_lease(broker, slot, "R3")
    assert run("sweep").out == "marked 1 lease(s) expired\n"
    leases = {"first": first, "second": second, "third": third}
    return {name: lease.lease_id for name, lease in leases.items()} | {
        "booking": booking.booking_id
    }


def parse_event_lines(text: str) -> list[dict[str, Any]]:
    events = []
    for line in text.splitlines():
        match = EVENT_LINE_RE.fullmatch(line)
        assert match, line
        pairs = dict(pair.split("=", 1) for pair in match["pairs"].split())
        events.append({"id": match["id"], "time": match["time"], "type": match["type"], **pairs})
    return events


def stream_order(stream_id: str) -> tuple[int, int]:
    ms, seq = stream_id.split("-")
    return int(ms), int(seq)


def test_events_print_a_scenario_in_order(run, broker, start_ns, redis_client):
    ids = play_scenario(run, broker, start_ns)

    result = run("events", "--merchant", MERCHANT)
    assert result.code == 0, result.err
    events = parse_event_lines(result.out)
    assert [e["type"] for e in events] == SCENARIO_TYPES
    assert sorted(events, key=lambda e: stream_order(e["id"])) == events
    owners = [None] * 2 + ["first"] * 3 + ["second"] * 4 + ["third"] * 2
    assert [e.get("lease_id") for e in events] == [ids.get(owner) for owner in owners]
    assert events[7]["booking_id"] == events[8]["booking_id"] == ids["booking"]
    assert events[1]["capacity"] == "2"
    assert "at_ms" not in events[0]
    # The time column is the event's at_ms, as ISO 8601 UTC.
    raw = redis_client.xrange(broker.keys.events(MERCHANT))
    assert [e["id"] for e in events] == [entry_id.decode() for entry_id, _ in raw]
    assert [e["time"] for e in events] == [iso_ms(int(fields[b"at_ms"])) for _, fields in raw]

    lines = run("events", "--merchant", MERCHANT, "--json").out.splitlines()
    objects = [json.loads(line) for line in lines]
    assert [o["type"] for o in objects] == SCENARIO_TYPES
    assert [(o["id"], o["time"]) for o in objects] == [(e["id"], e["time"]) for e in events]
    assert objects[2]["fields"]["lease_id"] == ids["first"]
    assert objects[2]["fields"]["at_ms"] == raw[2][1][b"at_ms"].decode()
    assert set(objects[2]) == {"id", "time", "type", "fields"}


def test_events_count_and_since_pick_a_part(run, broker, start_ns):
    play_scenario(run, broker, start_ns)
    every = parse_event_lines(run("events", "--merchant", MERCHANT).out)

    def types(*options: str) -> list[str]:
        result = run("events", "--merchant", MERCHANT, *options)
        assert result.code == 0, result.err
        return [e["type"] for e in parse_event_lines(result.out)]

    assert types("--count", "2") == SCENARIO_TYPES[-2:]  # the last two
    assert types("--since", every[3]["id"]) == SCENARIO_TYPES[4:]  # after that one
    assert types("--since", every[3]["id"], "--count", "2") == SCENARIO_TYPES[4:6]
    assert types("--since", every[-1]["id"]) == []
    assert types("--count", "0") == []
    assert run("events", "--merchant", "nobody").out == ""


def test_events_once_the_streams_are_turned_off(run, broker, start_ns):
    play_scenario(run, broker, start_ns)
    assert run("config", "set", "--events-retention", "500ms").code == 2
    misspelt = run("config", "set", "--events-retention", "of")
    assert misspelt.code == 2 and "or off" in misspelt.err
    turned = run("config", "set", "--events-retention", "off")
    assert turned.code == 0, turned.err
    assert re.search(r"^events_retention_ms +off$", run("config", "show").out, re.M)
    assert json.loads(run("config", "show", "--json").out)["settings"]["events_retention_ms"] == 0
    events_ttl = [
        k["ttl"] for k in json.loads(run("keys", "--merchant", MERCHANT, "--json").out)["layout"]
    ]
    assert EVENTS_OFF_TTL in events_ttl

    # What the stream holds is still printed, with a note that nothing new comes.
    result = run("events", "--merchant", MERCHANT)
    assert result.code == 0
    assert [e["type"] for e in parse_event_lines(result.out)] == SCENARIO_TYPES
    assert "events are off on key prefix" in result.err
    follow = run("events", "--merchant", MERCHANT, "--follow")
    assert (follow.code, follow.out) == (2, "")
    assert "nothing to follow" in follow.err
    # 0 is off too; a duration turns them on again.
    assert run("config", "set", "--events-retention", "0").code == 0
    assert run("config", "set", "--events-retention", "2h").code == 0
    assert run("events", "--merchant", MERCHANT).err == ""


class WatchedStdout:
    """Stands in for sys.stdout: keeps what is printed and wakes whoever waits for it."""

    def __init__(self) -> None:
        self.text = ""
        self._changed = threading.Condition()

    def write(self, text: str) -> int:
        with self._changed:
            self.text += text
            self._changed.notify_all()
        return len(text)

    def flush(self) -> None:
        pass

    def wait_for_lines(self, count: int) -> list[str]:
        with self._changed:
            done = self._changed.wait_for(lambda: len(self.text.splitlines()) >= count, WAIT_S)
            assert done, f"expected {count} lines, got: {self.text!r}"
            return self.text.splitlines()


def run_until_interrupted(argv: list[str], script: Callable[[], None]) -> int:
    """``main(argv)`` in this thread while ``script`` runs in another; when it returns
    (or fails), Ctrl-C (SIGINT) goes to this thread. Re-raises the script's failure."""
    done = threading.Event()
    failures: list[BaseException] = []
    main_thread = threading.main_thread().ident
    assert threading.get_ident() == main_thread

    def on_sigint(signum: int, frame: Any) -> None:
        if not done.is_set():  # a late signal after main() returned is dropped
            raise KeyboardInterrupt

    def drive() -> None:
        try:
            script()
        except BaseException as exc:
            failures.append(exc)
        finally:
            if not done.is_set():
                signal.pthread_kill(main_thread, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, on_sigint)
    driver = threading.Thread(target=drive, daemon=True)
    try:
        driver.start()
        code = run_main(argv)
    finally:
        done.set()
        driver.join(WAIT_S)
        signal.signal(signal.SIGINT, previous)
    if failures:
        raise failures[0]
    return code


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_events_follow_prints_new_events_until_ctrl_c(
    monkeypatch, capsys, broker, store_args, start_ns, as_json
):
    slot = slot_at(start_ns)
    first = hold(broker, slot, "R1")
    second = hold(broker, slot_at(start_ns, "color"), "R2")
    since = broker.client.xrange(broker.keys.events(MERCHANT))[0][0].decode()
    stdout = WatchedStdout()
    monkeypatch.setattr("sys.stdout", stdout)

    def script() -> None:
        stdout.wait_for_lines(1)  # the history: lease R2 created; now it waits in XREAD
        broker.extend_lease(first.lease_id, 60_000)
        broker.release_lease(first.lease_id)
        book(broker, second.lease_id, client_information=CLIENT)
        stdout.wait_for_lines(5)

    argv = ["events", "--merchant", MERCHANT, "--follow", "--since", since, *store_args]
    code = run_until_interrupted(argv + (["--json"] if as_json else []), script)
    assert code == 0, capsys.readouterr().err
    if as_json:
        printed = [json.loads(line) for line in stdout.text.splitlines()]
        lease_ids = [p["fields"]["lease_id"] for p in printed]
    else:
        printed = parse_event_lines(stdout.text)
        lease_ids = [p["lease_id"] for p in printed]
    assert [p["type"] for p in printed] == [
        "lease.created",
        "lease.extended",
        "lease.released",
        "lease.consumed",
        "booking.created",
    ]
    owners = [second, first, first, second, second]
    assert lease_ids == [lease.lease_id for lease in owners]
    raw = broker.client.xrange(broker.keys.events(MERCHANT))
    assert [p["id"] for p in printed] == [entry_id.decode() for entry_id, _ in raw[1:]]


def test_events_follow_from_now_on_an_empty_stream(
    monkeypatch, capsys, broker, store_args, start_ns
):
    stdout = WatchedStdout()
    monkeypatch.setattr("sys.stdout", stdout)
    argv = ["events", "--merchant", MERCHANT, "--follow", *store_args]

    def script() -> None:
        # Nothing to wait on before the first event: the stream is empty, so whatever
        # the follower reads first, it starts before this lease's event.
        hold(broker, slot_at(start_ns), "R1")
        stdout.wait_for_lines(1)

    assert run_until_interrupted(argv, script) == 0, capsys.readouterr().err
    assert [e["type"] for e in parse_event_lines(stdout.text)] == ["lease.created"]


# --- keys -------------------------------------------------------------------------------

LAYOUT_KINDS = words(
    "slot lease ref inventory fences leases events booking bookings merchants due "
    "settings feed probe"
)


def test_keys_prints_the_layout_with_example_names(run, key_prefix):
    builder = KeyBuilder(key_prefix)
    result = run("keys")
    assert result.code == 0, result.err
    title, *table = result.out.splitlines()
    assert title == f"key layout (prefix {key_prefix}; examples for merchant merchant-1):"
    rows = {row["KIND"]: row for row in table_rows(table)}
    assert list(rows) == LAYOUT_KINDS
    assert rows["events"]["EXAMPLE"] == builder.events("merchant-1")
    assert rows["inventory"]["EXAMPLE"] == builder.inventory("merchant-1")
    assert rows["merchants"]["EXAMPLE"] == builder.merchants()
    assert rows["settings"]["EXAMPLE"] == builder.settings()
    assert rows["feed"]["EXAMPLE"] == builder.feed()
    assert rows["lease"]["EXAMPLE"] == builder.lease("merchant-1", "<token>")
    assert rows["slot"]["EXAMPLE"].startswith(builder.merchant_root("merchant-1") + ":slot:")
    types = words("zset hash string hash hash zset stream hash zset set zset string hash any")
    assert [row["TYPE"] for row in rows.values()] == types
    assert all(row["HOLDS"] != "-" and row["TTL"] != "-" for row in rows.values())
    assert rows["events"]["TTL"] == "none; entries older than 1h are trimmed at each append"

    data = run("keys", "--json").json()
    assert (data["prefix"], data["merchant_id"]) == (key_prefix, "merchant-1")
    assert [k["kind"] for k in data["layout"]] == LAYOUT_KINDS
    assert {k["kind"]: k["example"] for k in data["layout"]} == {
        kind: row["EXAMPLE"] for kind, row in rows.items()
    }
    assert "existing" not in data
    # The layout alone needs no Redis.
    offline = run("keys", "--key-prefix", key_prefix, store=False)
    assert (offline.code, offline.out) == (0, result.out)


def test_keys_of_a_merchant_lists_what_exists_now(run, broker, start_ns, key_prefix):
    builder = KeyBuilder(key_prefix)
    lease = hold(broker, slot_at(start_ns), "R1")
    hold(broker, slot_at(start_ns, merchant="merchant-10"), "R1")  # a longer id, same start

    data = run("keys", "--merchant", MERCHANT, "--json").json()
    assert data["merchant_id"] == MERCHANT
    assert data["registered"] is True
    existing = {k["key"]: k for k in data["existing"]}
    token = lease.lease_id.rsplit(".", 1)[1]
    assert set(existing) == {
        builder.slot(slot_at(start_ns)),
        builder.lease(MERCHANT, token),
        builder.client_ref(MERCHANT, "R1"),
        builder.fences(MERCHANT),
        builder.lease_index(MERCHANT),
        builder.events(MERCHANT),
    }
    assert existing[builder.events(MERCHANT)] == {
        "key": builder.events(MERCHANT),
        "kind": "events",
        "type": "stream",
        "ttl_ms": None,
    }
    assert existing[builder.lease(MERCHANT, token)]["kind"] == "lease"
    assert existing[builder.lease(MERCHANT, token)]["ttl_ms"] > 0
    assert data["layout"][0]["example"].startswith(builder.merchant_root(MERCHANT))

    result = run("keys", "--merchant", MERCHANT)
    assert result.code == 0, result.err
    tail = result.out.split(f"keys of merchant {MERCHANT} now:\n", 1)[1].splitlines()
    rows = table_rows(tail[:-1])
    assert {row["KEY"]: row["TYPE"] for row in rows} == {
        key: k["type"] for key, k in existing.items()
    }
    assert {row["KEY"]: row["TTL"] for row in rows}[builder.events(MERCHANT)] == "none"
    assert tail[-1] == f"in the merchant registry ({builder.merchants()}): yes"

    nobody = run("keys", "--merchant", "nobody")
    assert "no keys of merchant nobody now" in nobody.out
    assert nobody.out.rstrip().endswith(": no")


def test_keys_of_a_merchant_with_glob_characters(run, broker, start_ns, key_prefix):
    odd, plain = "m*[1]?", "mx1y"
    hold(broker, slot_at(start_ns, merchant=odd), "R1")
    hold(broker, slot_at(start_ns, merchant=plain), "R1")
    data = run("keys", "--merchant", odd, "--json").json()
    root = KeyBuilder(key_prefix).merchant_root(odd)
    assert data["existing"]
    assert all(k["key"].startswith(root + ":") for k in data["existing"])


def test_glob_escape_makes_a_pattern_match_only_itself():
    assert glob_escape("a*b?c[d]e\\f^g{h}") == "a\\*b\\?c\\[d\\]e\\\\f\\^g{h}"
    assert glob_escape("lb:{merchant-1}") == "lb:{merchant-1}"


# --- sweep ------------------------------------------------------------------------------


def test_sweep_marks_expired_leases_once(run, broker, start_ns):
    lease = expired_lease(broker, slot_at(start_ns), "R1")
    live = hold(broker, slot_at(start_ns, "color"), "R2")

    result = run("sweep")
    assert (result.code, result.out) == (0, "marked 1 lease(s) expired\n")
    assert broker.get_lease(lease.lease_id).ended_ms is not None
    assert broker.get_lease(live.lease_id).state == "held"
    assert run("sweep", "--json").json() == {"expired": 0}


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_sweep_loop_keeps_sweeping_until_ctrl_c(
    monkeypatch, capsys, broker, store_args, start_ns, as_json
):
    stdout = WatchedStdout()
    monkeypatch.setattr("sys.stdout", stdout)
    leases = []

    def script() -> None:
        leases.append(expired_lease(broker, slot_at(start_ns), "R1"))
        stdout.wait_for_lines(1)
        leases.append(expired_lease(broker, slot_at(start_ns, "color"), "R2"))
        stdout.wait_for_lines(2)

    argv = ["sweep", "--loop", "--interval", "20ms", *store_args, *(["--json"] * as_json)]
    assert run_until_interrupted(argv, script) == 0, capsys.readouterr().err
    lines = stdout.text.splitlines()
    if as_json:
        assert [json.loads(line)["expired"] for line in lines] == [1, 1]
        assert all(json.loads(line)["time"].endswith("Z") for line in lines)
    else:
        assert all(re.fullmatch(r"\S+Z marked 1 lease\(s\) expired", line) for line in lines)
        assert len(lines) == 2
    assert [broker.get_lease(lease.lease_id).state for lease in leases] == ["expired"] * 2


# --- inventory show / set ---------------------------------------------------------------


def test_inventory_set_warns_when_it_creates_the_inventory(run, broker, start_ns):
    start = iso_ns(start_ns)
    base = ["inventory", "set", "--merchant", MERCHANT, "--service", "haircut", "--start", start]
    result = run(*base, "--duration", "30m", "--staff", "ann", "--capacity", "2")
    assert result.code == 0, result.err
    assert "warning: merchant merchant-1 had no inventory" in result.err
    assert "only the slots in its inventory are offered" in result.err
    assert result.fields() == {
        "merchant": MERCHANT,
        "service": "haircut",
        "start": start,
        "duration": "30m",
        "staff": "ann",
        "room": "-",
        "capacity": "2",
        "was": "not listed",
    }

    again = run(*base, "--duration", "30m", "--staff", "ann", "--capacity", "3", "--json")
    assert again.err == ""
    assert again.json() == {
        "slot": slot_json(slot_at(start_ns, staff_id="ann")),
        "capacity": 3,
        "previous_capacity": 2,
    }
    other = run(*base, "--duration", "1h", "--capacity", "0")
    assert (other.code, other.err) == (0, "")  # the merchant has an inventory now
    assert other.fields()["was"] == "not listed"
    assert broker.slot_status(slot_at(start_ns, staff_id="ann")).capacity == 3


def test_inventory_show(run, broker, start_ns):
    empty = run("inventory", "show", "--merchant", MERCHANT)
    assert empty.code == 0
    assert empty.out.startswith(f"merchant {MERCHANT} has no inventory: every slot is offered")
    none = {"merchant_id": MERCHANT, "state": "none", "slots": []}
    assert run("inventory", "show", "--merchant", MERCHANT, "--json").json() == none
    no_default = run("inventory", "show", "--merchant", MERCHANT, "--default-capacity", "0")
    assert "the default capacity is 0: it offers nothing" in no_default.out

    broker.replace_inventory(MERCHANT, [])
    withdrawn = run("inventory", "show", "--merchant", MERCHANT)
    assert withdrawn.out.startswith(f"merchant {MERCHANT} is withdrawn: it offers nothing")
    state = run("inventory", "show", "--merchant", MERCHANT, "--json").json()["state"]
    assert state == "withdrawn"

    late, early = slot_at(start_ns + HOUR_NS, room_id="r2"), slot_at(start_ns)
    broker.replace_inventory(MERCHANT, [InventorySlot(late, 1), InventorySlot(early, 4)])
    rows = run("inventory", "show", "--merchant", MERCHANT).rows()
    assert [list(row.values()) for row in rows] == [
        ["haircut", iso_ns(start_ns), "30m", "-", "-", "4"],
        ["haircut", iso_ns(start_ns + HOUR_NS), "30m", "-", "r2", "1"],
    ]
    assert list(rows[0]) == ["SERVICE", "START", "DURATION", "STAFF", "ROOM", "CAPACITY"]
    data = run("inventory", "show", "--merchant", MERCHANT, "--json").json()
    assert data["state"] == "loaded"
    assert data["slots"] == [
        {"slot": slot_json(s), "capacity": c} for s, c in ((early, 4), (late, 1))
    ]


def test_inventory_set_of_an_invalid_slot_is_refused(run, start_ns):
    start = iso_ns(start_ns)
    argv = ["inventory", "set", "--merchant", MERCHANT, "--service", "", "--start", start]
    result = run(*argv, "--duration", "30m", "--capacity", "1")
    assert result.code == 1
    assert result.err.startswith("leasebroker: INVALID_FIELD: ")
    assert "--service: is required" in result.err


# --- usage errors, unreachable store ----------------------------------------------------

SOME_LEASE = unknown_id("l")
SET_S = f"inventory set --merchant {MERCHANT} --service s --duration 30m"
EVERY_COMMAND = [
    ["inspect", SOME_LEASE],
    ["slots", "--merchant", MERCHANT],
    ["leases", "--merchant", MERCHANT],
    ["bookings", "--merchant", MERCHANT],
    ["release", SOME_LEASE],
    ["extend", SOME_LEASE, "--by", "5m"],
    ["events", "--merchant", MERCHANT],
    ["keys", "--merchant", MERCHANT],
    ["sweep"],
    ["inventory", "show", "--merchant", MERCHANT],
    words(f"{SET_S} --start 2030-01-01T10:00:00Z --capacity 1"),
]
COMMAND_IDS = [" ".join(argv[:2]) if argv[0] == "inventory" else argv[0] for argv in EVERY_COMMAND]


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=COMMAND_IDS)
def test_every_command_needs_a_redis_url(capsys, argv):
    code = run_main(argv)
    _out, err = capsys.readouterr()
    assert code == 2
    assert "needs --redis-url (or LEASEBROKER_REDIS_URL)" in err


@pytest.mark.parametrize("argv", EVERY_COMMAND, ids=COMMAND_IDS)
def test_unreachable_redis_exits_3(run, monkeypatch, argv):
    def refuse(*_args: Any, **_kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6379.")

    monkeypatch.setattr(redis.Redis, "ping", refuse)
    result = run(*argv)
    assert result.code == 3
    assert f"cannot reach Redis at {REAL_REDIS_URL}" in result.err
    assert "Traceback" not in result.err
    assert result.out == ""


def test_redis_url_from_the_environment(capsys, monkeypatch, key_prefix, broker):
    monkeypatch.setenv("LEASEBROKER_REDIS_URL", REAL_REDIS_URL)
    monkeypatch.setenv("LEASEBROKER_KEY_PREFIX", key_prefix)
    assert run_main(["inventory", "show", "--merchant", MERCHANT, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["slots"] == []


def test_store_failing_after_connecting_exits_3(run, monkeypatch, broker, start_ns):
    lease = hold(broker, slot_at(start_ns), "R1")

    def unavailable(*_args: Any, **_kwargs: Any) -> Any:
        raise BrokerError(Reason.STORE_UNAVAILABLE, "the lease store is unreachable")

    monkeypatch.setattr(LeaseBroker, "get_lease", unavailable)
    result = run("inspect", lease.lease_id)
    assert result.code == 3
    assert f"cannot reach Redis at {REAL_REDIS_URL}: the lease store is unreachable" in result.err

    def lost(*_args: Any, **_kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Connection closed by server.")

    monkeypatch.setattr(redis.Redis, "xrange", lost)
    result = run("events", "--merchant", MERCHANT)
    assert result.code == 3
    assert f"cannot reach Redis at {REAL_REDIS_URL}: Connection closed by server." in result.err


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["slots", "--merchant", MERCHANT, "--day", "2026-13-01"], "--day"),
        (["slots", "--merchant", MERCHANT, "--day", "tomorrow"], "--day"),
        (["leases"], "--merchant"),
        (["extend", SOME_LEASE], "--by"),
        (["extend", SOME_LEASE, "--by", "0s"], "--by"),
        (["extend", SOME_LEASE, "--by", "soon"], "--by"),
        (["extend", SOME_LEASE, "--by", "5m", "--fence", "x"], "--fence"),
        (["extend", SOME_LEASE, "--by", "5m", "--max-hold", "1m"], "maximum hold"),
        (["events", "--merchant", MERCHANT, "--count", "-1"], "--count"),
        (["events", "--merchant", MERCHANT, "--since", "yesterday"], "--since"),
        (["sweep", "--loop", "--interval", "0"], "--interval"),
        (words(f"{SET_S} --start 2030-01-01T10:00:00 --capacity 1"), "--start"),
        (words(f"{SET_S} --start 2030-01-01T10:00:00Z --capacity -1"), "--capacity"),
        (words(f"{SET_S} --start 2030-01-01T10:00:00Z"), "--capacity"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_usage_exits_2(run, argv, complaint):
    result = run(*argv)
    assert result.code == 2, result.err
    assert complaint in result.err
    assert result.out == ""


def test_bad_key_prefix_exits_2(capsys):
    code = run_main(["inspect", SOME_LEASE, "--redis-url", REAL_REDIS_URL, "--key-prefix", "a b"])
    assert code == 2
    assert "key prefix 'a b'" in capsys.readouterr().err


def test_bad_setting_in_the_environment_is_a_usage_error(run, monkeypatch):
    monkeypatch.setenv("LEASEBROKER_MAX_HOLD", "banana")
    result = run("extend", SOME_LEASE, "--by", "5m")
    assert result.code == 2
    assert "--max-hold" in result.err


def test_durations_show_in_the_largest_units(run, broker, start_ns):
    odd = SlotId(MERCHANT, "long", start_ns, 5400 * NS_PER_S + 500 * NS_PER_MS)
    broker.set_capacity(odd, 1)
    rows = run("inventory", "show", "--merchant", MERCHANT).rows()
    assert rows[0]["DURATION"] == format_span(odd.duration_ns) == "5400.5s"
    broker.set_capacity(SlotId(MERCHANT, "long", start_ns, 5400 * NS_PER_S), 1)
    rows = run("inventory", "show", "--merchant", MERCHANT).rows()
    assert sorted(row["DURATION"] for row in rows) == ["1h30m", "5400.5s"]
