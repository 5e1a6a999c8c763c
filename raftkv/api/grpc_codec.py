"""Protobuf encoding straight to and from the ``raftkv.pb`` dataclasses (no protobuf objects).

gRPC's request deserializer / response serializer for the member: decoding a request into a
generated protobuf class and then copying it into the dataclass the server takes would cost as
much again as the call itself, so each message class gets a codec compiled once from its field
table (``raftkv.pb.fields.specs``) and the field numbers of etcd's protos, read from the
generated descriptors (``raftkv.api.grpcpb``: the format's source of truth).

Rules (proto3, as protobuf-go marshals): fields in number order; zero scalars, empty bytes and
strings, empty repeated fields and unset (``None``) messages are omitted; a set message is
emitted even when empty; repeated scalars are packed; negative int32/int64/enum values take 10
bytes. Decoding accepts packed and unpacked repeated scalars, skips unknown fields, lets the
last occurrence of a scalar win, merges repeated occurrences of a message, and keeps only the
last member of a oneof (the dataclasses have one attribute per oneof member). Checked byte for
byte against the generated classes in tests/grpc/test_codec.py.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor

from raftkv.api.grpcpb import auth_pb2, health_pb2, kv_pb2, rpc_pb2
from raftkv.pb.fields import FieldSpec, Kind, specs

__all__ = ["DecodeError", "decoder", "encoder"]

_U64 = (1 << 64) - 1
_I64_SIGN = 1 << 63


class DecodeError(ValueError):
    """Bytes that are not a valid encoding of the expected message."""


def _descriptors() -> dict[str, Descriptor]:
    out: dict[str, Descriptor] = {}
    for mod in (kv_pb2, rpc_pb2, health_pb2, auth_pb2):
        out.update(mod.DESCRIPTOR.message_types_by_name)
    return out


_DESCRIPTORS = _descriptors()

# wire types
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(v: int) -> bytes:
    if 0 <= v < 0x80:
        return bytes((v,))
    v &= _U64
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:
        return b, pos + 1
    result = b & 0x7F
    shift = 7
    pos += 1
    while True:
        if pos >= len(buf) or shift > 63:
            raise DecodeError("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result & _U64, pos
        shift += 7


def _skip(buf: bytes, pos: int, wt: int) -> int:
    if wt == _VARINT:
        return _read_varint(buf, pos)[1]
    if wt == _I64:
        return pos + 8
    if wt == _LEN:
        n, pos = _read_varint(buf, pos)
        return pos + n
    if wt == _I32:
        return pos + 4
    raise DecodeError(f"unsupported wire type {wt}")


_SCALAR_KINDS = (Kind.INT64, Kind.UINT64, Kind.INT32, Kind.UINT32, Kind.BOOL, Kind.ENUM)


def _to_value(kind: Kind, v: int, ref: Any) -> Any:
    """A decoded varint as the field's Python value."""
    if kind is Kind.UINT64:
        return v
    if kind is Kind.BOOL:
        return v != 0
    if kind is Kind.UINT32:
        return v & 0xFFFFFFFF
    if kind is Kind.INT64:
        return v - (1 << 64) if v & _I64_SIGN else v
    v &= 0xFFFFFFFF  # int32 and enums: protobuf keeps the low 32 bits
    if v & 0x80000000:
        v -= 1 << 32
    if kind is Kind.ENUM:
        try:
            return ref(v)
        except ValueError:
            return v  # proto3 keeps an unknown enum number
    return v


class _Field:
    __slots__ = ("kind", "name", "number", "oneof", "ref", "repeated", "tag")

    def __init__(self, spec: FieldSpec, number: int, oneof: tuple[tuple[str, Any], ...]) -> None:
        self.name = spec.name
        self.kind = spec.kind
        self.repeated = spec.repeated
        self.ref = spec.ref
        self.number = number
        self.oneof = oneof  # (name, zero value) of the other members of this field's oneof
        if spec.kind in (Kind.BYTES, Kind.STRING, Kind.MESSAGE) or spec.repeated:
            wt = _LEN
        else:
            wt = _VARINT
        self.tag = _varint(number << 3 | wt)


def _fields(cls: type) -> list[_Field]:
    desc = _DESCRIPTORS[cls.__name__]
    zero = {f.name: f.default for f in dataclasses.fields(cls)}
    out = []
    for s in specs(cls):
        fd = desc.fields_by_name.get(s.name)
        if fd is None:
            continue  # raftkv's own field, never on etcd's wire (a password's hash)
        oneof: tuple[tuple[str, Any], ...] = ()
        if fd.containing_oneof is not None:
            others = (f.name for f in fd.containing_oneof.fields if f.name != s.name)
            oneof = tuple((o, zero[o]) for o in others)
        out.append(_Field(s, fd.number, oneof))
    out.sort(key=lambda f: f.number)
    return out


# --- encode ------------------------------------------------------------------------------------

_encoders: dict[type, Callable[[Any], bytes]] = {}


def encoder(cls: type) -> Callable[[Any], bytes]:
    """``obj -> bytes``: ``obj`` (an instance of ``cls``) marshalled as protobuf."""
    got = _encoders.get(cls)
    if got is None:
        got = _encoders[cls] = _compile_encoder(cls)
    return got


def _compile_encoder(cls: type) -> Callable[[Any], bytes]:
    steps: list[Callable[[Any, bytearray], None]] = []
    for f in _fields(cls):
        steps.append(_encode_step(f))

    def encode(obj: Any) -> bytes:
        out = bytearray()
        for step in steps:
            step(obj, out)
        return bytes(out)

    return encode


def _encode_step(f: _Field) -> Callable[[Any, bytearray], None]:
    name, tag, kind = f.name, f.tag, f.kind
    if kind is Kind.MESSAGE:
        sub: list[Callable[[Any], bytes]] = []  # resolved on first use (recursive messages)

        def sub_enc(v: Any) -> bytes:
            if not sub:
                sub.append(encoder(_message_class(f)))
            return sub[0](v)

        if f.repeated:

            def rep_msg(obj: Any, out: bytearray) -> None:
                for x in getattr(obj, name):
                    b = sub_enc(x)
                    out += tag
                    out += _varint(len(b))
                    out += b

            return rep_msg

        def one_msg(obj: Any, out: bytearray) -> None:
            v = getattr(obj, name)
            if v is not None:
                b = sub_enc(v)
                out += tag
                out += _varint(len(b))
                out += b

        return one_msg
    if kind in (Kind.BYTES, Kind.STRING):
        is_str = kind is Kind.STRING

        def one_len(out: bytearray, v: Any) -> None:
            b = v.encode() if is_str else v
            out += tag
            out += _varint(len(b))
            out += b

        if f.repeated:

            def rep_len(obj: Any, out: bytearray) -> None:
                for x in getattr(obj, name):
                    one_len(out, x)

            return rep_len

        def len_field(obj: Any, out: bytearray) -> None:
            v = getattr(obj, name)
            if v:
                one_len(out, v)

        return len_field
    if f.repeated:  # packed scalars

        def packed(obj: Any, out: bytearray) -> None:
            vs = getattr(obj, name)
            if vs:
                body = b"".join(_varint(int(x)) for x in vs)
                out += tag
                out += _varint(len(body))
                out += body

        return packed

    def varint_field(obj: Any, out: bytearray) -> None:
        v = getattr(obj, name)
        if v:
            out += tag
            out += _varint(int(v))

    return varint_field


def _message_class(f: _Field) -> type:
    from raftkv.pb.fields import message_class

    return message_class(f.ref)


# --- decode ------------------------------------------------------------------------------------

_decoders: dict[type, Callable[[bytes], Any]] = {}


def decoder(cls: type) -> Callable[[bytes], Any]:
    """``bytes -> cls``: a protobuf message parsed into a new ``cls`` instance. Raises
    DecodeError."""
    got = _decoders.get(cls)
    if got is None:
        into = _decode_into(cls)

        def got(data: bytes) -> Any:
            obj = cls()
            try:
                into(data, obj)
            except IndexError as e:
                raise DecodeError("unexpected EOF") from e
            return obj

        _decoders[cls] = got
    return got


_into: dict[type, Callable[[bytes, Any], None]] = {}


def _decode_into(cls: type) -> Callable[[bytes, Any], None]:
    got = _into.get(cls)
    if got is None:
        got = _into[cls] = _compile_decoder(cls)
    return got


def _compile_decoder(cls: type) -> Callable[[bytes, Any], None]:
    by_number = {f.number: f for f in _fields(cls)}

    def into(buf: bytes, obj: Any) -> None:
        pos = 0
        n = len(buf)
        while pos < n:
            key, pos = _read_varint(buf, pos)
            number, wt = key >> 3, key & 7
            f = by_number.get(number)
            if f is None:
                pos = _skip(buf, pos, wt)
                continue
            kind = f.kind
            if wt == _LEN:
                ln, pos = _read_varint(buf, pos)
                end = pos + ln
                if end > n:
                    raise DecodeError("unexpected EOF")
                chunk = buf[pos:end]
                pos = end
                if kind is Kind.MESSAGE:
                    sub_cls = _message_class(f)
                    if f.repeated:
                        sub = sub_cls()
                        _decode_into(sub_cls)(chunk, sub)
                        getattr(obj, f.name).append(sub)
                    else:
                        sub = getattr(obj, f.name)
                        if sub is None:
                            sub = sub_cls()
                            setattr(obj, f.name, sub)
                        _decode_into(sub_cls)(chunk, sub)
                elif kind is Kind.BYTES:
                    v = bytes(chunk)
                    if f.repeated:
                        getattr(obj, f.name).append(v)
                    else:
                        setattr(obj, f.name, v)
                elif kind is Kind.STRING:
                    try:
                        s = bytes(chunk).decode()
                    except UnicodeDecodeError as e:
                        raise DecodeError("string field contains invalid UTF-8") from e
                    if f.repeated:
                        getattr(obj, f.name).append(s)
                    else:
                        setattr(obj, f.name, s)
                elif f.repeated:  # packed scalars
                    vals = getattr(obj, f.name)
                    p = 0
                    while p < ln:
                        v, p = _read_varint(chunk, p)
                        vals.append(_to_value(kind, v, f.ref))
                else:
                    raise DecodeError(f"field {f.name}: wrong wire type")
            elif wt == _VARINT and kind in _SCALAR_KINDS:
                v, pos = _read_varint(buf, pos)
                if f.repeated:
                    getattr(obj, f.name).append(_to_value(kind, v, f.ref))
                else:
                    setattr(obj, f.name, _to_value(kind, v, f.ref))
            else:
                raise DecodeError(f"field {f.name}: wrong wire type")
            for other, zero in f.oneof:  # a oneof keeps its last member
                setattr(obj, other, zero)
        if pos != n:
            raise DecodeError("unexpected EOF")

    return into
