from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ProcessingInstruction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PROCESS_UNKNOWN: _ClassVar[ProcessingInstruction]
    PROCESS_AS_COMPLETE: _ClassVar[ProcessingInstruction]
    PROCESS_AS_INCREMENTAL: _ClassVar[ProcessingInstruction]
PROCESS_UNKNOWN: ProcessingInstruction
PROCESS_AS_COMPLETE: ProcessingInstruction
PROCESS_AS_INCREMENTAL: ProcessingInstruction

class AvailabilityFeed(_message.Message):
    __slots__ = ("metadata", "service_availability")
    METADATA_FIELD_NUMBER: _ClassVar[int]
    SERVICE_AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    metadata: FeedMetadata
    service_availability: _containers.RepeatedCompositeFieldContainer[ServiceAvailability]
    def __init__(self, metadata: _Optional[_Union[FeedMetadata, _Mapping]] = ..., service_availability: _Optional[_Iterable[_Union[ServiceAvailability, _Mapping]]] = ...) -> None: ...

class FeedMetadata(_message.Message):
    __slots__ = ("processing_instruction", "shard_number", "total_shards", "nonce", "generation_timestamp")
    PROCESSING_INSTRUCTION_FIELD_NUMBER: _ClassVar[int]
    SHARD_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SHARDS_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    GENERATION_TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    processing_instruction: ProcessingInstruction
    shard_number: int
    total_shards: int
    nonce: int
    generation_timestamp: int
    def __init__(self, processing_instruction: _Optional[_Union[ProcessingInstruction, str]] = ..., shard_number: _Optional[int] = ..., total_shards: _Optional[int] = ..., nonce: _Optional[int] = ..., generation_timestamp: _Optional[int] = ...) -> None: ...

class ServiceAvailability(_message.Message):
    __slots__ = ("start_timestamp_restrict", "end_timestamp_restrict", "merchant_id_restrict", "service_id_restrict", "resources_restrict", "duration_restrict_sec", "availability")
    START_TIMESTAMP_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    END_TIMESTAMP_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    MERCHANT_ID_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_RESTRICT_FIELD_NUMBER: _ClassVar[int]
    DURATION_RESTRICT_SEC_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_FIELD_NUMBER: _ClassVar[int]
    start_timestamp_restrict: int
    end_timestamp_restrict: int
    merchant_id_restrict: str
    service_id_restrict: str
    resources_restrict: Resources
    duration_restrict_sec: int
    availability: _containers.RepeatedCompositeFieldContainer[Availability]
    def __init__(self, start_timestamp_restrict: _Optional[int] = ..., end_timestamp_restrict: _Optional[int] = ..., merchant_id_restrict: _Optional[str] = ..., service_id_restrict: _Optional[str] = ..., resources_restrict: _Optional[_Union[Resources, _Mapping]] = ..., duration_restrict_sec: _Optional[int] = ..., availability: _Optional[_Iterable[_Union[Availability, _Mapping]]] = ...) -> None: ...

class Availability(_message.Message):
    __slots__ = ("merchant_id", "service_id", "start_sec", "duration_sec", "spots_total", "spots_open", "availability_tag", "resources", "payment_option_id", "recurrence", "schedule_exception", "deposit", "no_show_fee", "prepayment", "require_credit_card", "ticket_type_id", "duration_requirement", "scheduling_rule_overrides", "confirmation_mode", "linkout_required_reason")
    MERCHANT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ID_FIELD_NUMBER: _ClassVar[int]
    START_SEC_FIELD_NUMBER: _ClassVar[int]
    DURATION_SEC_FIELD_NUMBER: _ClassVar[int]
    SPOTS_TOTAL_FIELD_NUMBER: _ClassVar[int]
    SPOTS_OPEN_FIELD_NUMBER: _ClassVar[int]
    AVAILABILITY_TAG_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    PAYMENT_OPTION_ID_FIELD_NUMBER: _ClassVar[int]
    RECURRENCE_FIELD_NUMBER: _ClassVar[int]
    SCHEDULE_EXCEPTION_FIELD_NUMBER: _ClassVar[int]
    DEPOSIT_FIELD_NUMBER: _ClassVar[int]
    NO_SHOW_FEE_FIELD_NUMBER: _ClassVar[int]
    PREPAYMENT_FIELD_NUMBER: _ClassVar[int]
    REQUIRE_CREDIT_CARD_FIELD_NUMBER: _ClassVar[int]
    TICKET_TYPE_ID_FIELD_NUMBER: _ClassVar[int]
    DURATION_REQUIREMENT_FIELD_NUMBER: _ClassVar[int]
    SCHEDULING_RULE_OVERRIDES_FIELD_NUMBER: _ClassVar[int]
    CONFIRMATION_MODE_FIELD_NUMBER: _ClassVar[int]
    LINKOUT_REQUIRED_REASON_FIELD_NUMBER: _ClassVar[int]
    merchant_id: str
    service_id: str
    start_sec: int
    duration_sec: int
    spots_total: int
    spots_open: int
    availability_tag: str
    resources: Resources
    payment_option_id: _containers.RepeatedScalarFieldContainer[str]
    recurrence: _struct_pb2.Struct
    schedule_exception: _containers.RepeatedCompositeFieldContainer[_struct_pb2.Struct]
    deposit: _struct_pb2.Struct
    no_show_fee: _struct_pb2.Struct
    prepayment: _struct_pb2.Struct
    require_credit_card: str
    ticket_type_id: _containers.RepeatedScalarFieldContainer[str]
    duration_requirement: str
    scheduling_rule_overrides: _struct_pb2.Struct
    confirmation_mode: str
    linkout_required_reason: str
    def __init__(self, merchant_id: _Optional[str] = ..., service_id: _Optional[str] = ..., start_sec: _Optional[int] = ..., duration_sec: _Optional[int] = ..., spots_total: _Optional[int] = ..., spots_open: _Optional[int] = ..., availability_tag: _Optional[str] = ..., resources: _Optional[_Union[Resources, _Mapping]] = ..., payment_option_id: _Optional[_Iterable[str]] = ..., recurrence: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., schedule_exception: _Optional[_Iterable[_Union[_struct_pb2.Struct, _Mapping]]] = ..., deposit: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., no_show_fee: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., prepayment: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., require_credit_card: _Optional[str] = ..., ticket_type_id: _Optional[_Iterable[str]] = ..., duration_requirement: _Optional[str] = ..., scheduling_rule_overrides: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., confirmation_mode: _Optional[str] = ..., linkout_required_reason: _Optional[str] = ...) -> None: ...

class Resources(_message.Message):
    __slots__ = ("staff_id", "staff_name", "room_id", "room_name", "party_size")
    STAFF_ID_FIELD_NUMBER: _ClassVar[int]
    STAFF_NAME_FIELD_NUMBER: _ClassVar[int]
    ROOM_ID_FIELD_NUMBER: _ClassVar[int]
    ROOM_NAME_FIELD_NUMBER: _ClassVar[int]
    PARTY_SIZE_FIELD_NUMBER: _ClassVar[int]
    staff_id: str
    staff_name: str
    room_id: str
    room_name: str
    party_size: int
    def __init__(self, staff_id: _Optional[str] = ..., staff_name: _Optional[str] = ..., room_id: _Optional[str] = ..., room_name: _Optional[str] = ..., party_size: _Optional[int] = ...) -> None: ...
