"""Booking operations: consume a lease (v0 CreateBooking), cancel, reschedule, inspect, list."""

from __future__ import annotations

import dataclasses
import hashlib

import msgpack

from leasebroker.core.base import BrokerCore, Refusals
from leasebroker.core.errors import BrokerError, FieldViolation, Reason
from leasebroker.core.keys import IdKind, SlotId, make_public_id, new_token
from leasebroker.core.leases import LEASE_REFUSALS, lease_slot, lease_texts, slot_matches
from leasebroker.core.model import Booking, BookingRequest, BookingStatus
from leasebroker.core.outcomes import Outcome
from leasebroker.core.steps import RunScript, Steps
from leasebroker.core.units import NS_PER_MS, floor_ms
from leasebroker.core.validation import (
    check_duration,
    check_fence,
    check_start,
    raise_if_invalid,
)

_CONSUME_REFUSALS: Refusals = {
    **LEASE_REFUSALS,
    # On CreateBooking a consumed lease means another client booked it first.
    Outcome.LEASE_CONSUMED: (
        Reason.LEASE_ALREADY_BOOKED,
        "this lease was already booked with different client_information",
    ),
    Outcome.SLOT_FULL: (
        Reason.SLOT_FULL,
        "the slot is no longer available: its capacity was lowered below its bookings",
    ),
}

# The record kept moving under us (a storm of concurrent reschedules): the caller may retry.
_MOVED = (Reason.CONFLICT, "the booking changed concurrently; retry")

_CANCEL_REFUSALS: Refusals = {
    Outcome.SLOT_MOVED: _MOVED,
    Outcome.BOOKING_NOT_FOUND: (Reason.BOOKING_NOT_FOUND, "no such booking"),
    Outcome.SLOT_STARTED: (
        Reason.SLOT_STARTED,
        "the booked slot has started: too late to cancel",
        "status",
    ),
}

_RESCHEDULE_REFUSALS: Refusals = {
    Outcome.SLOT_MOVED: _MOVED,
    Outcome.BOOKING_NOT_FOUND: (Reason.BOOKING_NOT_FOUND, "no such booking"),
    Outcome.BOOKING_CANCELLED: (
        Reason.BOOKING_CANCELLED,
        "a cancelled booking cannot be rescheduled",
        "start_time",
    ),
    Outcome.SLOT_STARTED: (
        Reason.SLOT_STARTED,
        "the booked slot has started: too late to reschedule",
        "start_time",
    ),
    Outcome.START_TIME_PASSED: (
        Reason.START_TIME_PASSED,
        "the new start_time has passed",
        "start_time",
    ),
    Outcome.SLOT_NOT_OFFERED: (Reason.SLOT_NOT_OFFERED, "the new slot is not offered"),
    Outcome.SLOT_FULL: (Reason.SLOT_FULL, "the new slot has no free spot"),
}


def client_violations(serialized: bytes | None) -> list[FieldViolation]:
    """The client's information is required; the broker stores it byte for byte (a
    front end checks what its own message must hold)."""
    if serialized is None:
        return [FieldViolation("client_information", "is required")]
    if not isinstance(serialized, bytes):
        return [FieldViolation("client_information", "must be bytes")]
    return []


@dataclasses.dataclass
class _Attempt:
    """What the last attempt of a change read and got back: the booking record, the
    script's reply and (reschedule) the slot it asked for. The answer is built from
    them, so a change costs two round trips (read, script), not a third read."""

    record: dict[str, bytes] = dataclasses.field(default_factory=dict)
    reply: list = dataclasses.field(default_factory=list)
    target: SlotId | None = None


def _client_fingerprint(serialized: bytes) -> str:
    return hashlib.sha256(serialized).hexdigest()


class BookingOps(BrokerCore):
    """Turning leases into bookings and changing bookings."""

    def create_booking(self, request: BookingRequest) -> Booking:
        """Consume a live lease and book its spot. A retry with the same
        client_information returns the same booking (``replayed``)."""
        return self.drive(self.create_booking_steps(request))

    def create_booking_steps(self, request: BookingRequest) -> Steps[Booking]:
        """:meth:`create_booking` as steps (core/steps.py)."""
        client = request.client_information
        raise_if_invalid([*client_violations(client), check_fence(request.expected_fence)])
        assert client is not None  # checked just above
        parsed, lease_key, record = yield from self._load_steps(IdKind.LEASE, request.lease_id)
        merchant = parsed.merchant_id
        slot = lease_slot(merchant, record)
        availability_tag = lease_texts(record)[1]
        token = new_token()
        booking_data = msgpack.packb(
            {
                "v": 1,
                "merchant_id": merchant,
                "service_id": slot.service_id,
                "staff_id": slot.staff_id,
                "room_id": slot.room_id,
                "availability_tag": availability_tag,
                "client_information": client,
                "payment_information": request.payment_information,
            }
        )
        fence = request.expected_fence
        reply = yield RunScript(
            "consume_lease",
            [
                lease_key,
                self.keys.slot_named(merchant, record["slot_field"].decode()),
                self.keys.inventory(merchant),
                self.keys.booking(merchant, token),
                self.keys.booking_index(merchant),
                self.keys.lease_index(merchant),
                self.keys.events(merchant),
            ],
            [
                request.lease_id,
                make_public_id(IdKind.BOOKING, merchant, token),
                _client_fingerprint(client),
                booking_data,
                self.config.default_capacity,
                "" if fence is None else fence,
                self.config.record_retention_ms,
                self.config.events_retention_ms,
                slot.start_ns,
                slot.duration_ns,
                self._deadline_arg(),
            ],
        )
        outcome = Outcome(int(reply[0]))
        if outcome is Outcome.BOOKING_REPLAYED:
            booking = yield from self.get_booking_steps(reply[1].decode())
            return dataclasses.replace(booking, replayed=True)
        if outcome is not Outcome.OK:
            raise self._refuse(outcome, _CONSUME_REFUSALS)
        now = int(reply[3])
        return Booking(
            booking_id=reply[1].decode(),
            lease_id=request.lease_id,
            slot=slot,
            availability_tag=availability_tag,
            status=BookingStatus.CONFIRMED,
            fence=int(reply[2]),
            created_ms=now,
            updated_ms=now,
            client_information=client,
            payment_information=request.payment_information,
        )

    def _booking_view(self, record: dict[str, bytes]) -> Booking:
        data = msgpack.unpackb(record["data"])
        slot = SlotId(
            merchant_id=data["merchant_id"],
            service_id=data["service_id"],
            start_ns=int(record["start_ns"]),
            duration_ns=int(record["duration_ns"]),
            staff_id=data["staff_id"],
            room_id=data["room_id"],
        )
        return Booking(
            booking_id=record["booking_id"].decode(),
            lease_id=record["lease_id"].decode(),
            slot=slot,
            availability_tag=data["availability_tag"],
            status=BookingStatus(record["status"].decode()),
            fence=int(record["fence"]),
            created_ms=int(record["created_ms"]),
            updated_ms=int(record["updated_ms"]),
            client_information=data["client_information"],
            payment_information=data["payment_information"],
        )

    def get_booking(self, booking_id: str) -> Booking:
        return self.drive(self.get_booking_steps(booking_id))

    def get_booking_steps(self, booking_id: str) -> Steps[Booking]:
        _parsed, _key, record = yield from self._load_steps(IdKind.BOOKING, booking_id)
        return self._booking_view(record)

    def list_bookings(
        self,
        merchant_id: str,
        slot: SlotId | None = None,
        start_from_ns: int | None = None,
        start_before_ns: int | None = None,
    ) -> list[Booking]:
        """The merchant's bookings (cancelled ones too), by slot start, optionally of one
        slot or of slots starting in [from, before)."""
        self.check_selection(merchant_id, slot, start_from_ns, start_before_ns)
        low = "-inf" if start_from_ns is None else start_from_ns // NS_PER_MS
        high = "+inf" if start_before_ns is None else f"({-(-start_before_ns // NS_PER_MS)}"
        ids = self._read(self.client.zrangebyscore, self.keys.booking_index(merchant_id), low, high)
        bookings = []
        for booking_id in ids:
            try:
                booking = self.get_booking(booking_id.decode())
            except BrokerError as error:
                if error.reason is Reason.BOOKING_NOT_FOUND:
                    continue
                raise
            # The index holds whole milliseconds; the bounds are exact to the nanosecond.
            if slot_matches(booking.slot, slot, start_from_ns, start_before_ns):
                bookings.append(booking)
        return bookings

    def cancel_booking(self, booking_id: str) -> Booking:
        """Cancel a booking and free its spot now. Cancelling a cancelled booking
        returns it unchanged; after its slot has started it is refused (SLOT_STARTED)."""
        return self.drive(self.cancel_booking_steps(booking_id))

    def cancel_booking_steps(self, booking_id: str) -> Steps[Booking]:
        """:meth:`cancel_booking` as steps (core/steps.py)."""
        last = _Attempt()

        def attempt() -> Steps[list]:
            parsed, key, last.record = yield from self._load_steps(IdKind.BOOKING, booking_id)
            last.reply = yield RunScript(
                "cancel_booking",
                [key, last.record["slot"].decode(), self.keys.events(parsed.merchant_id)],
                [booking_id, self.config.events_retention_ms, self._deadline_arg()],
            )
            return last.reply

        outcome = yield from self._until_settled(attempt)
        if outcome not in (Outcome.OK, Outcome.UNCHANGED):
            raise self._refuse(outcome, _CANCEL_REFUSALS)
        if outcome is Outcome.UNCHANGED:
            # Cancelled by another call, maybe after this one read the record.
            return (yield from self.get_booking_steps(booking_id))
        # What the script wrote, on the record it was given: no third round trip.
        return dataclasses.replace(
            self._booking_view(last.record),
            status=BookingStatus.CANCELLED,
            updated_ms=int(last.reply[1]),
        )

    def reschedule_booking(
        self, booking_id: str, start_ns: int | None, duration_ns: int | None
    ) -> Booking:
        """Move a booking to the slot with the same service and resources at the new
        start and duration (None keeps the booking's current one), if that slot has
        room; otherwise it stays where it was. The booking gets the new slot's next
        fencing token."""
        return self.drive(self.reschedule_booking_steps(booking_id, start_ns, duration_ns))

    def reschedule_booking_steps(
        self, booking_id: str, start_ns: int | None, duration_ns: int | None
    ) -> Steps[Booking]:
        """:meth:`reschedule_booking` as steps (core/steps.py)."""
        violations = [
            None if start_ns is None else check_start(start_ns, "start_time"),
            None if duration_ns is None else check_duration(duration_ns, "duration"),
        ]
        raise_if_invalid([v for v in violations if v is not None])

        last = _Attempt()

        def attempt() -> Steps[list]:
            parsed, key, last.record = yield from self._load_steps(IdKind.BOOKING, booking_id)
            record = last.record
            merchant = parsed.merchant_id
            current = self._booking_view(record).slot
            # Filled in from the record read in this very attempt, so a concurrent
            # reschedule can never mix its values with ours (SLOT_MOVED retries).
            last.target = target = dataclasses.replace(
                current,
                start_ns=current.start_ns if start_ns is None else start_ns,
                duration_ns=current.duration_ns if duration_ns is None else duration_ns,
            )
            last.reply = yield RunScript(
                "reschedule_booking",
                [
                    key,
                    record["slot"].decode(),
                    self.keys.slot(target),
                    self.keys.inventory(merchant),
                    self.keys.booking_index(merchant),
                    self.keys.events(merchant),
                    self.keys.fences(merchant),
                ],
                [
                    booking_id,
                    target.field(),
                    floor_ms(target.start_ns),
                    target.start_ns,
                    target.duration_ns,
                    self.config.default_capacity,
                    self.config.events_retention_ms,
                    self._deadline_arg(),
                ],
            )
            return last.reply

        outcome = yield from self._until_settled(attempt)
        if outcome not in (Outcome.OK, Outcome.UNCHANGED):
            raise self._refuse(outcome, _RESCHEDULE_REFUSALS)
        if outcome is Outcome.UNCHANGED:
            return (yield from self.get_booking_steps(booking_id))
        # What the script wrote, on the record it was given: no third round trip.
        return dataclasses.replace(
            self._booking_view(last.record),
            slot=last.target,
            fence=int(last.reply[1]),
            updated_ms=int(last.reply[2]),
        )
