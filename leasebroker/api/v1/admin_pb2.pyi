import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from leasebroker.api.v0 import booking_service_pb2 as _booking_service_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LeaseState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LEASE_STATE_UNSPECIFIED: _ClassVar[LeaseState]
    HELD: _ClassVar[LeaseState]
    EXPIRED: _ClassVar[LeaseState]
    RELEASED: _ClassVar[LeaseState]
    CONSUMED: _ClassVar[LeaseState]

class BookingState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BOOKING_STATE_UNSPECIFIED: _ClassVar[BookingState]
    CONFIRMED: _ClassVar[BookingState]
    CANCELLED: _ClassVar[BookingState]

class CapacitySource(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CAPACITY_SOURCE_UNSPECIFIED: _ClassVar[CapacitySource]
    INVENTORY: _ClassVar[CapacitySource]
    DEFAULT: _ClassVar[CapacitySource]
    UNLISTED: _ClassVar[CapacitySource]

class InventoryState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    INVENTORY_STATE_UNSPECIFIED: _ClassVar[InventoryState]
    NO_INVENTORY: _ClassVar[InventoryState]
    LOADED: _ClassVar[InventoryState]
    WITHDRAWN: _ClassVar[InventoryState]
LEASE_STATE_UNSPECIFIED: LeaseState
HELD: LeaseState
EXPIRED: LeaseState
RELEASED: LeaseState
CONSUMED: LeaseState
BOOKING_STATE_UNSPECIFIED: BookingState
CONFIRMED: BookingState
CANCELLED: BookingState
CAPACITY_SOURCE_UNSPECIFIED: CapacitySource
INVENTORY: CapacitySource
DEFAULT: CapacitySource
UNLISTED: CapacitySource
INVENTORY_STATE_UNSPECIFIED: InventoryState
NO_INVENTORY: InventoryState
LOADED: InventoryState
WITHDRAWN: InventoryState

class Slot(_message.Message):
    __slots__ = ("merchant_id", "service_id", "start_time", "duration", "staff_id", "room_id")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    service_id: str
    start_time: _timestamp_pb2.Timestamp
    duration: _duration_pb2.Duration
    staff_id: str
    room_id: str
    def __init__(self, merchant_id: _Optional[str] = ..., service_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., staff_id: _Optional[str] = ..., room_id: _Optional[str] = ...) -> None: ...

class LeaseInfo(_message.Message):
    __slots__ = ("lease_id", "slot", "client_reference", "availability_tag", "state", "fencing_token", "create_time", "expire_time", "end_time", "booking_id")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CLIENT_REFERENCE_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_TAG_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    EXPIRE_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    slot: Slot
    client_reference: str
    availability_tag: str
    state: LeaseState
    fencing_token: int
    create_time: _timestamp_pb2.Timestamp
    expire_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    booking_id: str
    def __init__(self, lease_id: _Optional[str] = ..., slot: _Optional[_Union[Slot, _Mapping]] = ..., client_reference: _Optional[str] = ..., availability_tag: _Optional[str] = ..., state: _Optional[_Union[LeaseState, str]] = ..., fencing_token: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., expire_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., booking_id: _Optional[str] = ...) -> None: ...

class BookingInfo(_message.Message):
    __slots__ = ("booking_id", "lease_id", "slot", "state", "fencing_token", "create_time", "update_time", "client_information")
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    UPDATE_TIME_FIELD_NUMBER: _ClassVar[int]
    CLIENT_INFORMATION_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    lease_id: str
    slot: Slot
    state: BookingState
    fencing_token: int
    create_time: _timestamp_pb2.Timestamp
    update_time: _timestamp_pb2.Timestamp
    client_information: _booking_service_pb2.ClientInformation
    def __init__(self, booking_id: _Optional[str] = ..., lease_id: _Optional[str] = ..., slot: _Optional[_Union[Slot, _Mapping]] = ..., state: _Optional[_Union[BookingState, str]] = ..., fencing_token: _Optional[int] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., update_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., client_information: _Optional[_Union[_booking_service_pb2.ClientInformation, _Mapping]] = ...) -> None: ...

class SlotAvailability(_message.Message):
    __slots__ = ("slot", "capacity", "capacity_source", "holds", "bookings", "free")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_SOURCE_FIELD_NUMBER: _ClassVar[int]
    HOLDS_FIELD_NUMBER: _ClassVar[int]
    BOOKINGS_FIELD_NUMBER: _ClassVar[int]
    FREE_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    capacity: int
    capacity_source: CapacitySource
    holds: int
    bookings: int
    free: int
    def __init__(self, slot: _Optional[_Union[Slot, _Mapping]] = ..., capacity: _Optional[int] = ..., capacity_source: _Optional[_Union[CapacitySource, str]] = ..., holds: _Optional[int] = ..., bookings: _Optional[int] = ..., free: _Optional[int] = ...) -> None: ...

class SlotCapacity(_message.Message):
    __slots__ = ("slot", "capacity")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    capacity: int
    def __init__(self, slot: _Optional[_Union[Slot, _Mapping]] = ..., capacity: _Optional[int] = ...) -> None: ...

class GetLeaseRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class GetBookingRequest(_message.Message):
    __slots__ = ("booking_id",)
    BOOKING_ID_FIELD_NUMBER: _ClassVar[int]
    booking_id: str
    def __init__(self, booking_id: _Optional[str] = ...) -> None: ...

class ListLeasesRequest(_message.Message):
    __slots__ = ("merchant_id", "slot", "start_time_from", "start_time_before")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FROM_FIELD_NUMBER: _ClassVar[int]
    START_TIME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    slot: Slot
    start_time_from: _timestamp_pb2.Timestamp
    start_time_before: _timestamp_pb2.Timestamp
    def __init__(self, merchant_id: _Optional[str] = ..., slot: _Optional[_Union[Slot, _Mapping]] = ..., start_time_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListLeasesResponse(_message.Message):
    __slots__ = ("leases",)
    LEASES_FIELD_NUMBER: _ClassVar[int]
    leases: _containers.RepeatedCompositeFieldContainer[LeaseInfo]
    def __init__(self, leases: _Optional[_Iterable[_Union[LeaseInfo, _Mapping]]] = ...) -> None: ...

class ListBookingsRequest(_message.Message):
    __slots__ = ("merchant_id", "slot", "start_time_from", "start_time_before")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SLOT_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FROM_FIELD_NUMBER: _ClassVar[int]
    START_TIME_BEFORE_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    slot: Slot
    start_time_from: _timestamp_pb2.Timestamp
    start_time_before: _timestamp_pb2.Timestamp
    def __init__(self, merchant_id: _Optional[str] = ..., slot: _Optional[_Union[Slot, _Mapping]] = ..., start_time_from: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., start_time_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListBookingsResponse(_message.Message):
    __slots__ = ("bookings",)
    BOOKINGS_FIELD_NUMBER: _ClassVar[int]
    bookings: _containers.RepeatedCompositeFieldContainer[BookingInfo]
    def __init__(self, bookings: _Optional[_Iterable[_Union[BookingInfo, _Mapping]]] = ...) -> None: ...

class ReleaseLeaseRequest(_message.Message):
    __slots__ = ("lease_id",)
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    def __init__(self, lease_id: _Optional[str] = ...) -> None: ...

class ExtendLeaseRequest(_message.Message):
    __slots__ = ("lease_id", "extension", "expected_fencing_token")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    EXTENSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_FENCING_TOKEN_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    extension: _duration_pb2.Duration
    expected_fencing_token: int
    def __init__(self, lease_id: _Optional[str] = ..., extension: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., expected_fencing_token: _Optional[int] = ...) -> None: ...

class GetSlotAvailabilityRequest(_message.Message):
    __slots__ = ("slot",)
    SLOT_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    def __init__(self, slot: _Optional[_Union[Slot, _Mapping]] = ...) -> None: ...

class ListSlotAvailabilityRequest(_message.Message):
    __slots__ = ("merchant_id", "day_start")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    DAY_START_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    day_start: _timestamp_pb2.Timestamp
    def __init__(self, merchant_id: _Optional[str] = ..., day_start: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ListSlotAvailabilityResponse(_message.Message):
    __slots__ = ("slots",)
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.RepeatedCompositeFieldContainer[SlotAvailability]
    def __init__(self, slots: _Optional[_Iterable[_Union[SlotAvailability, _Mapping]]] = ...) -> None: ...

class LoadInventoryRequest(_message.Message):
    __slots__ = ("feed_json", "complete")
    FEED_JSON_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_FIELD_NUMBER: _ClassVar[int]
    feed_json: bytes
    complete: bool
    def __init__(self, feed_json: _Optional[bytes] = ..., complete: _Optional[bool] = ...) -> None: ...

class LoadInventoryResponse(_message.Message):
    __slots__ = ("merchants", "slots", "withdrawn_merchants")
    MERCHANTS_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    WITHDRAWN_MERCHANTS_FIELD_NUMBER: _ClassVar[int]
    merchants: int
    slots: int
    withdrawn_merchants: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, merchants: _Optional[int] = ..., slots: _Optional[int] = ..., withdrawn_merchants: _Optional[_Iterable[str]] = ...) -> None: ...

class SetSlotCapacityRequest(_message.Message):
    __slots__ = ("slot", "capacity")
    SLOT_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_FIELD_NUMBER: _ClassVar[int]
    slot: Slot
    capacity: int
    def __init__(self, slot: _Optional[_Union[Slot, _Mapping]] = ..., capacity: _Optional[int] = ...) -> None: ...

class SetSlotCapacityResponse(_message.Message):
    __slots__ = ("previous_capacity",)
    PREVIOUS_CAPACITY_FIELD_NUMBER: _ClassVar[int]
    previous_capacity: int
    def __init__(self, previous_capacity: _Optional[int] = ...) -> None: ...

class GetInventoryRequest(_message.Message):
    __slots__ = ("merchant_id",)
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    def __init__(self, merchant_id: _Optional[str] = ...) -> None: ...

class GetInventoryResponse(_message.Message):
    __slots__ = ("slots", "state")
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    slots: _containers.RepeatedCompositeFieldContainer[SlotCapacity]
    state: InventoryState
    def __init__(self, slots: _Optional[_Iterable[_Union[SlotCapacity, _Mapping]]] = ..., state: _Optional[_Union[InventoryState, str]] = ...) -> None: ...
