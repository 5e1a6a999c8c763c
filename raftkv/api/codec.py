"""The etcd v3 gateway's JSON codec, generic over ``raftkv.pb`` field tables.

Out (grpc-gateway's jsonpb with ``OrigName``, EmitDefaults off): fields in proto field order;
zero scalars and empty repeated fields omitted; a set sub-message always emitted (``{}`` when
empty); int64/uint64 as JSON strings, int32/uint32 as numbers; bytes as padded standard base64;
enums by name (the number when the name is unknown).

In (golang/protobuf jsonpb, ``AllowUnknownFields``): the first JSON value of the body; unknown
fields ignored; a field is found by its proto name or its lowerCamel JSON name (the camel one
wins when both are given); int fields take a number or a string holding one; enums a name or a
number; ``null`` leaves a field unset. Every failure is a ``GoJSONError`` with the message etcd
gives for it, checked field by field in proto order as jsonpb does.

Encoders are generated per message class once (straight-line code, no per-field dispatch at
request time); decoders walk a precomputed table.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from raftkv.api.gojson import FloatLit, GoJSONError, decode_first_value, go_b64decode, go_quote
from raftkv.api.gojson import unmarshal_error_of_text as _syntax_of
from raftkv.pb import kv, rpc
from raftkv.pb.fields import FieldSpec, Kind, specs

__all__ = ["decode_message", "dumps", "encode_message", "encoder"]

# Go's names for the enums, as jsonpb's "unknown value ... for enum X" and json type errors say.
GO_ENUM_NAMES: dict[type, str] = {
    rpc.SortOrder: "etcdserverpb.RangeRequest_SortOrder",
    rpc.SortTarget: "etcdserverpb.RangeRequest_SortTarget",
    rpc.CompareResult: "etcdserverpb.Compare_CompareResult",
    rpc.CompareTarget: "etcdserverpb.Compare_CompareTarget",
    rpc.FilterType: "etcdserverpb.WatchCreateRequest_FilterType",
    rpc.AlarmType: "etcdserverpb.AlarmType",
    rpc.AlarmAction: "etcdserverpb.AlarmRequest_AlarmAction",
    kv.EventType: "mvccpb.Event_EventType",
}

_b2a = binascii.b2a_base64


def _b64(v: bytes) -> str:
    return _b2a(v, newline=False).decode("ascii")


# --- encoding ----------------------------------------------------------------------------------

_encoders: dict[type, Callable[[Any], dict]] = {}


def encoder(cls: type) -> Callable[[Any], dict]:
    """The generated ``obj -> dict`` function for a message class (dict order = JSON order)."""
    enc = _encoders.get(cls)
    if enc is None:
        enc = _build_encoder(cls)
    return enc


def _build_encoder(cls: type) -> Callable[[Any], dict]:
    ns: dict[str, Any] = {"_b64": _b64}
    fname = f"enc_{cls.__name__}"
    lines = [f"def {fname}(o):", "    d = {}"]
    # Register a forwarding stub first: message types can be recursive (RequestOp <-> TxnRequest).
    _encoders[cls] = lambda o: ns[fname](o)
    for s in specs(cls):
        n = s.name
        lines.append(f"    v = o.{n}")
        if s.kind is Kind.MESSAGE:
            sub = s.message_type()
            ns[f"e_{n}"] = encoder(sub)
            if s.repeated:
                lines.append(f"    if v: d[{n!r}] = [e_{n}(x) for x in v]")
            else:
                lines.append(f"    if v is not None: d[{n!r}] = e_{n}(v)")
            continue
        conv = _scalar_conv(s, ns)
        if s.repeated:
            item = conv.replace("v", "x") if conv != "v" else "x"
            lines.append(f"    if v: d[{n!r}] = [{item} for x in v]")
        else:
            lines.append(f"    if v: d[{n!r}] = {conv}")
    lines.append("    return d")
    exec("\n".join(lines), ns)  # generated from our own field tables only
    fn = ns[fname]
    _encoders[cls] = fn
    return fn


def _scalar_conv(s: FieldSpec, ns: dict[str, Any]) -> str:
    k = s.kind
    if k in (Kind.INT64, Kind.UINT64):
        return "str(v)"
    if k is Kind.BYTES:
        return "_b64(v)"
    if k is Kind.ENUM:
        names = {int(m): m.name for m in s.ref}
        ns[f"names_{s.name}"] = names
        return f"names_{s.name}.get(v, int(v))"
    if k is Kind.BOOL:
        return "True"
    return "v"  # int32/uint32 as numbers, strings as they are


def encode_message(obj: Any) -> dict:
    return encoder(type(obj))(obj)


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def dumps(d: Any) -> bytes:
    """Serialise like Go's encoding/json: compact, UTF-8, with <, >, & and U+2028/9 escaped."""
    s = _dumps(d)
    if "<" in s or ">" in s or "&" in s or "\u2028" in s or "\u2029" in s:
        s = (
            s.replace("<", "\\u003c")
            .replace(">", "\\u003e")
            .replace("&", "\\u0026")
            .replace("\u2028", "\\u2028")
            .replace("\u2029", "\\u2029")
        )
    return s.encode("utf-8", "surrogatepass")


# --- decoding ----------------------------------------------------------------------------------

_INT_RANGES = {
    Kind.INT64: ("int64", -(1 << 63), (1 << 63) - 1),
    Kind.UINT64: ("uint64", 0, (1 << 64) - 1),
    Kind.INT32: ("int32", -(1 << 31), (1 << 31) - 1),
    Kind.UINT32: ("uint32", 0, (1 << 32) - 1),
}


def _json_kind(v: Any) -> str:
    if isinstance(v, FloatLit):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "number"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    return "null"


def _type_error(what: str, gotype: str) -> GoJSONError:
    return GoJSONError(f"json: cannot unmarshal {what} into Go value of type {gotype}")


def _dec_int(v: Any, gotype: str, lo: int, hi: int, *, quoted_ok: bool = True) -> int:
    if type(v) is int:
        if lo <= v <= hi:
            return v
        raise _type_error(f"number {v}", gotype)
    if isinstance(v, FloatLit):
        raise _type_error(f"number {v}", gotype)
    if isinstance(v, str) and quoted_ok:
        # jsonpb strips the quotes and hands the inside to json.Unmarshal.
        t = v
        digits = t.isascii() and (t.isdigit() or (t[:1] == "-" and t[1:].isdigit()))
        if digits and (len(t) == 1 or (t[0] != "0" and t[:2] != "-0")):
            return _dec_int(int(t), gotype, lo, hi)
        err = _syntax_of(t)
        if err is not None:
            raise GoJSONError(err)
        _, inner, _ = decode_first_value(t)
        if inner is None:
            return 0
        return _dec_int(inner, gotype, lo, hi, quoted_ok=False)
    if v is None:
        return 0
    raise _type_error(_json_kind(v), gotype)


def _dec_bool(v: Any) -> bool:
    if v is True or v is False:
        return v
    if v is None:
        return False
    raise _type_error(_json_kind(v), "bool")


def _dec_bytes(v: Any) -> bytes:
    if isinstance(v, str) and not isinstance(v, FloatLit):
        return go_b64decode(v)
    if v is None:
        return b""
    if isinstance(v, list):  # Go decodes a JSON array into []byte element by element
        return bytes(_dec_int(x, "uint8", 0, 255, quoted_ok=False) for x in v)
    raise _type_error(_json_kind(v), "[]uint8")


def _dec_str(v: Any) -> str:
    if isinstance(v, str) and not isinstance(v, FloatLit):
        return v
    if v is None:
        return ""
    raise _type_error(_json_kind(v), "string")


def _dec_enum(v: Any, cls: type[IntEnum]) -> int:
    goname = GO_ENUM_NAMES.get(cls, cls.__name__)
    if isinstance(v, str) and not isinstance(v, FloatLit):
        m = cls.__members__.get(v)
        if m is None:
            raise GoJSONError(f"unknown value {go_quote(v)} for enum {goname}")
        return m
    n = _dec_int(v, goname, -(1 << 31), (1 << 31) - 1, quoted_ok=False)
    try:
        return cls(n)
    except ValueError:
        return n  # proto3 keeps unknown enum numbers


def _camel(name: str) -> str:
    parts = name.split("_")
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


# per class: tuple of (attr name, proto name, camel name or None, value decoder, repeated)
_decoders: dict[type, tuple] = {}


def _field_decoder(s: FieldSpec) -> Callable[[Any], Any]:
    k = s.kind
    if k is Kind.MESSAGE:
        sub = s.message_type()
        return lambda v: decode_message(sub, v)
    if k is Kind.BYTES:
        return _dec_bytes
    if k is Kind.BOOL:
        return _dec_bool
    if k is Kind.STRING:
        return _dec_str
    if k is Kind.ENUM:
        cls = s.ref
        return lambda v: _dec_enum(v, cls)
    gotype, lo, hi = _INT_RANGES[k]
    return lambda v: _dec_int(v, gotype, lo, hi)


def _table(cls: type) -> tuple:
    t = _decoders.get(cls)
    if t is None:
        rows = []
        for s in specs(cls):
            camel = _camel(s.name)
            rows.append((s.name, camel if camel != s.name else None, _field_decoder(s), s))
        t = tuple(rows)
        _decoders[cls] = t
    return t


def decode_message(cls: type, v: Any) -> Any:
    """Build a ``cls`` from a parsed JSON value (``None`` gives an empty message)."""
    if v is None:
        return cls()
    if not isinstance(v, dict):
        raise _type_error(_json_kind(v), "map[string]json.RawMessage")
    if not v:
        return cls()
    kwargs = {}
    for name, camel, dec, s in _table(cls):
        if camel is not None and camel in v:
            x = v[camel]
        elif name in v:
            x = v[name]
        else:
            continue
        if x is None:
            continue
        if s.repeated:
            if not isinstance(x, list):
                raise _type_error(_json_kind(x), "[]json.RawMessage")
            kwargs[name] = [dec(e) for e in x]
        else:
            kwargs[name] = dec(x)
    return cls(**kwargs)
