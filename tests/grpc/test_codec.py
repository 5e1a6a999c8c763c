"""raftkv.api.grpc_codec against the protobuf classes generated from etcd's protos.

For every message the gRPC API sends or receives: the codec's bytes are exactly what protobuf
marshals for the same message, and the codec decodes protobuf's bytes (including concatenated
messages: merges, the last scalar and the last oneof member winning) into what protobuf
itself parsed.
"""

from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftkv.api.grpc_codec import DecodeError, decoder, encoder
from raftkv.api.grpc_server import _RESPONSES
from raftkv.api.grpcpb import auth_pb2, kv_pb2, rpc_pb2
from raftkv.api.unary import UNARY
from raftkv.pb import kv, rpc
from raftkv.pb.fields import Kind, message_class, specs

CLASSES = sorted(
    {
        *(u.req_cls for u in UNARY.values()),
        *_RESPONSES.values(),
        rpc.WatchRequest,
        rpc.WatchResponse,
        rpc.LeaseKeepAliveRequest,
        rpc.LeaseKeepAliveResponse,
        rpc.SnapshotRequest,
        rpc.SnapshotResponse,
    },
    key=lambda c: c.__name__,
)


def pb_class(cls: type) -> Any:
    for mod in (rpc_pb2, kv_pb2, auth_pb2):
        got = getattr(mod, cls.__name__, None)
        if got is not None:
            return got
    raise LookupError(cls.__name__)


def wire_specs(cls: type) -> list:
    """The fields etcd's proto has (raftkv's own, like a password's hash, never go out)."""
    names = pb_class(cls).DESCRIPTOR.fields_by_name
    return [s for s in specs(cls) if s.name in names]


def _oneofs(cls: type) -> list[list[str]]:
    desc = pb_class(cls).DESCRIPTOR
    return [[f.name for f in o.fields] for o in desc.oneofs]


_RANGES = {
    Kind.INT64: (-(2**63), 2**63 - 1),
    Kind.UINT64: (0, 2**64 - 1),
    Kind.INT32: (-(2**31), 2**31 - 1),
    Kind.UINT32: (0, 2**32 - 1),
}


def _value(kind: Kind, ref: Any, depth: int) -> st.SearchStrategy:
    if kind in _RANGES:
        lo, hi = _RANGES[kind]
        return st.one_of(st.integers(lo, hi), st.integers(-2, 300).filter(lambda v: lo <= v <= hi))
    if kind is Kind.BOOL:
        return st.booleans()
    if kind is Kind.BYTES:
        return st.binary(max_size=12)
    if kind is Kind.STRING:
        return st.text(max_size=6)
    if kind is Kind.ENUM:
        known = st.sampled_from(list(ref))
        return st.one_of(
            known, st.integers(-3, 40).filter(lambda v: v not in ref._value2member_map_)
        )
    return messages(message_class(ref), depth + 1)


def messages(cls: type, depth: int = 0) -> st.SearchStrategy:
    """Instances of ``cls`` with at most one member of each oneof set."""
    fields = {}
    for s in wire_specs(cls):
        if s.kind is Kind.MESSAGE and depth >= 3:
            continue
        v = _value(s.kind, s.ref, depth)
        fields[s.name] = st.lists(v, max_size=3) if s.repeated else v
    groups = _oneofs(cls)

    @st.composite
    def build(draw: Any) -> Any:
        kw = {name: draw(strat) for name, strat in fields.items()}
        for members in groups:
            keep = draw(st.sampled_from([*members, None]))
            for m in members:
                if m != keep and m in kw:
                    del kw[m]
        return cls(**kw)

    return build()


def to_pb(obj: Any) -> Any:
    """The generated protobuf message holding the same values (built field by field)."""
    m = pb_class(type(obj))()
    for s in wire_specs(type(obj)):
        v = getattr(obj, s.name)
        if s.kind is Kind.MESSAGE:
            if s.repeated:
                getattr(m, s.name).extend(to_pb(x) for x in v)
            elif v is not None:
                getattr(m, s.name).CopyFrom(to_pb(v))
        elif s.repeated:
            getattr(m, s.name).extend(int(x) if s.kind is Kind.ENUM else x for x in v)
        elif v:  # a zero oneof scalar would be "set" in protobuf: leave it unset
            setattr(m, s.name, int(v) if s.kind is Kind.ENUM else v)
    return m


def from_pb(cls: type, m: Any) -> Any:
    kw = {}
    for s in wire_specs(cls):
        v = getattr(m, s.name)
        if s.kind is Kind.MESSAGE:
            sub = message_class(s.ref)
            if s.repeated:
                kw[s.name] = [from_pb(sub, x) for x in v]
            else:
                kw[s.name] = from_pb(sub, v) if m.HasField(s.name) else None
        elif s.repeated:
            kw[s.name] = list(v)
        else:
            kw[s.name] = v
    return cls(**kw)


def _same(a: Any, b: Any) -> bool:
    """Dataclass equality, with enum members and their numbers alike."""
    if isinstance(a, enum.Enum) or isinstance(b, enum.Enum):
        return int(a) == int(b)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if hasattr(a, "__dataclass_fields__"):
        return type(a) is type(b) and all(
            _same(getattr(a, s.name), getattr(b, s.name)) for s in specs(type(a))
        )
    return a == b


_settings = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_encode_is_protobufs_bytes(cls: type) -> None:
    @_settings
    @given(messages(cls))
    def check(obj: Any) -> None:
        assert encoder(cls)(obj) == to_pb(obj).SerializeToString(deterministic=True)

    check()


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_decode_is_protobufs_parse(cls: type) -> None:
    @_settings
    @given(messages(cls), messages(cls))
    def check(a: Any, b: Any) -> None:
        data = to_pb(a).SerializeToString()
        assert _same(decoder(cls)(data), a)
        both = data + to_pb(b).SerializeToString()  # protobuf merges concatenated messages
        assert _same(decoder(cls)(both), from_pb(cls, pb_class(cls).FromString(both)))

    check()


def test_decode_accepts_unpacked_repeated_and_skips_unknown_fields() -> None:
    # filters = [NODELETE, NOPUT] unpacked (field 5 varints), then an unknown field 99
    data = b"\x0a\x01k" + b"\x28\x01" + b"\x28\x00" + b"\x98\x06\x07"
    got = decoder(rpc.WatchCreateRequest)(data)
    assert got.key == b"k" and got.filters == [rpc.FilterType.NODELETE, rpc.FilterType.NOPUT]
    assert got == from_pb(rpc.WatchCreateRequest, rpc_pb2.WatchCreateRequest.FromString(data))


@pytest.mark.parametrize("data", [b"\x0a\x05ab", b"\x08", b"\x0a", b"\x08\xff\xff\xff\xff"])
def test_truncated_input_is_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decoder(rpc.RangeRequest)(data)


def test_event_and_keyvalue_match_mvccpb() -> None:
    ev = kv.Event(kv.EventType.DELETE, kv.KeyValue(b"k", 2, 3, 1, b"v", -1), kv.KeyValue(key=b"k"))
    assert encoder(kv.Event)(ev) == to_pb(ev).SerializeToString()
