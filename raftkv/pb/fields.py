"""A tiny protobuf-like runtime: dataclass messages whose fields know their proto kind.

etcd's API is defined in proto3; its JSON gateway and its Raft log both serialise the same
messages. Here each message is a slotted dataclass declared with the field helpers below
(``i64()``, ``u64()``, ``bytes_()``, ``msg("KeyValue")``, ``rep(...)``...), so two generic codecs
can walk it without per-class code:

- the **wire** codec in this module (a msgpack-ready nested list, fields in declaration order;
  used for proposals in the Raft log and for anything persisted), and
- the JSON gateway codec in ``raftkv.api`` (int64 as strings, bytes as base64, zero values
  omitted, enums by name), which reads the same ``FieldSpec`` table.

Attribute names are the proto field names exactly (``ID``, ``TTL``, ``prev_kv``), so the JSON
name of a field is its attribute name.

Invariants: a message-typed field defaults to ``None`` (unset) and is emitted whenever set, even
when empty, as proto3 does for sub-messages and oneof members; scalar fields default to their
zero value; fields are only ever appended to a message, so old wire lists stay decodable.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgpack

__all__ = [
    "FieldSpec",
    "Kind",
    "bool_",
    "bytes_",
    "decode",
    "encode",
    "enum_",
    "from_wire",
    "i32",
    "i64",
    "message",
    "message_class",
    "msg",
    "rep",
    "specs",
    "str_",
    "to_wire",
    "u32",
    "u64",
]

T = TypeVar("T")


class Kind(enum.Enum):
    INT64 = "int64"
    UINT64 = "uint64"
    INT32 = "int32"
    UINT32 = "uint32"
    BOOL = "bool"
    BYTES = "bytes"
    STRING = "string"
    ENUM = "enum"
    MESSAGE = "message"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    kind: Kind
    repeated: bool
    ref: Any  # the enum class, the message class name (str) before resolution, or None

    def message_type(self) -> type:
        return message_class(self.ref)


_ZERO = {
    Kind.INT64: 0,
    Kind.UINT64: 0,
    Kind.INT32: 0,
    Kind.UINT32: 0,
    Kind.BOOL: False,
    Kind.BYTES: b"",
    Kind.STRING: "",
}


def _scalar(kind: Kind) -> Any:
    return field(default=_ZERO[kind], metadata={"pb": (kind, False, None)})


def i64() -> Any:
    return _scalar(Kind.INT64)


def u64() -> Any:
    return _scalar(Kind.UINT64)


def i32() -> Any:
    return _scalar(Kind.INT32)


def u32() -> Any:
    return _scalar(Kind.UINT32)


def bool_() -> Any:
    return _scalar(Kind.BOOL)


def bytes_() -> Any:
    return _scalar(Kind.BYTES)


def str_() -> Any:
    return _scalar(Kind.STRING)


def enum_(cls: type[enum.IntEnum]) -> Any:
    return field(default=cls(0), metadata={"pb": (Kind.ENUM, False, cls)})


def msg(name: str) -> Any:
    """A singular sub-message (or oneof member) field; ``None`` when unset."""
    return field(default=None, metadata={"pb": (Kind.MESSAGE, False, name)})


def rep(kind: Kind, ref: Any = None) -> Any:
    """A repeated field of ``kind`` (``ref``: enum class or message class name)."""
    return field(default_factory=list, metadata={"pb": (kind, True, ref)})


_registry: dict[str, type] = {}
_specs: dict[type, tuple[FieldSpec, ...]] = {}


def message(cls: type[T]) -> type[T]:
    """Class decorator: make ``cls`` a slotted dataclass and register it as a pb message."""
    dc = dataclass(slots=True)(cls)
    _registry[dc.__name__] = dc
    return dc


def message_class(name: str | type) -> type:
    return name if isinstance(name, type) else _registry[name]


def specs(cls: type) -> tuple[FieldSpec, ...]:
    """The field table of a message class, in declaration (= wire) order."""
    got = _specs.get(cls)
    if got is None:
        got = tuple(
            FieldSpec(f.name, *f.metadata["pb"])
            for f in dataclasses.fields(cls)
            if "pb" in f.metadata
        )
        _specs[cls] = got
    return got


# --- wire codec (msgpack-ready nested lists) ---------------------------------------------------


def _value_to_wire(spec: FieldSpec, v: Any) -> Any:
    if spec.kind is Kind.MESSAGE:
        return None if v is None else to_wire(v)
    if spec.kind is Kind.ENUM:
        return int(v)
    return v


def _value_from_wire(spec: FieldSpec, w: Any) -> Any:
    if spec.kind is Kind.MESSAGE:
        return None if w is None else from_wire(spec.message_type(), w)
    if spec.kind is Kind.ENUM:
        try:
            return spec.ref(w)
        except ValueError:
            return w  # proto3 keeps an unknown enum number (etcd stores an unknown alarm type)
    return w


def to_wire(obj: Any) -> list[Any]:
    out = []
    for s in specs(type(obj)):
        v = getattr(obj, s.name)
        if s.repeated:
            out.append([_value_to_wire(s, x) for x in v])
        else:
            out.append(_value_to_wire(s, v))
    return out


def from_wire(cls: type[T], w: list[Any]) -> T:
    kwargs = {}
    for s, x in zip(specs(cls), w, strict=False):
        kwargs[s.name] = (
            [_value_from_wire(s, y) for y in x] if s.repeated else _value_from_wire(s, x)
        )
    return cls(**kwargs)


def encode(obj: Any) -> bytes:
    return msgpack.packb(to_wire(obj), use_bin_type=True)


def decode(cls: type[T], data: bytes) -> T:
    return from_wire(cls, msgpack.unpackb(data, raw=False, strict_map_key=False))
