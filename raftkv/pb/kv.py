"""mvccpb: KeyValue and Event, as etcd v3.4's kv.proto defines them."""

from __future__ import annotations

from enum import IntEnum

from raftkv.pb.fields import bytes_, enum_, i64, message, msg

__all__ = ["Event", "EventType", "KeyValue"]


class EventType(IntEnum):
    PUT = 0
    DELETE = 1


@message
class KeyValue:
    key: bytes = bytes_()
    create_revision: int = i64()
    mod_revision: int = i64()
    version: int = i64()
    value: bytes = bytes_()
    lease: int = i64()


@message
class Event:
    type: EventType = enum_(EventType)
    kv: KeyValue | None = msg("KeyValue")
    prev_kv: KeyValue | None = msg("KeyValue")
