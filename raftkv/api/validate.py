"""The size limits etcd's gRPC layer puts on a request, and its enum checks outside mvcc.

The KV request checks (etcd v3.4's v3rpc/key.go) are MVCC's own (``raftkv.mvcc.validate``,
run again when applied) and re-exported here for the client pipeline (``unary.py``). Sizes:
the gRPC server's receive limit (``max_request_bytes`` + 512 KiB, over the request's protobuf
size), and etcd's own ``request is too large`` check over the marshalled Raft proposal; both
are computed from the ``raftkv.pb`` field tables with protobuf's encoding rules (only for big
requests: a small one cannot exceed either).

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from raftkv import errors
from raftkv.errors import EtcdError, GrpcCode
from raftkv.mvcc.validate import check_delete_request as check_delete
from raftkv.mvcc.validate import check_put_request as check_put
from raftkv.mvcc.validate import check_range_request as check_range
from raftkv.mvcc.validate import check_txn_request as check_txn
from raftkv.mvcc.validate import unknown_enum
from raftkv.pb import rpc
from raftkv.pb.fields import Kind, specs

__all__ = [
    "GRPC_OVERHEAD_BYTES",
    "check_alarm",
    "check_delete",
    "check_grpc_size",
    "check_proposal_size",
    "check_put",
    "check_range",
    "check_txn",
    "proto_size",
]

GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd's grpcOverheadBytes


def check_alarm(r: rpc.AlarmRequest) -> None:
    # an Alarm with an unknown action: etcd 3.4's process does not survive it
    if int(r.action) not in rpc.AlarmAction._value2member_map_:
        raise unknown_enum(r.action, "etcdserverpb.AlarmRequest_AlarmAction")


# --- protobuf sizes ----------------------------------------------------------------------------

# Fields whose proto number is not their position (everything else is numbered 1, 2, 3, ...).
_FIELD_NUMBERS = {("Compare", "range_end"): 64}


def _varint_size(v: int) -> int:
    if v < 0:
        return 10
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


def proto_size(obj: Any) -> int:
    """The size of ``obj`` marshalled as protobuf (proto3, packed repeated scalars)."""
    total = 0
    cname = type(obj).__name__
    for i, s in enumerate(specs(type(obj)), 1):
        num = _FIELD_NUMBERS.get((cname, s.name), i)
        tag = _varint_size(num << 3)
        v = getattr(obj, s.name)
        k = s.kind
        if s.repeated:
            if not v:
                continue
            if k is Kind.MESSAGE:
                for x in v:
                    n = proto_size(x)
                    total += tag + _varint_size(n) + n
            elif k in (Kind.BYTES, Kind.STRING):
                for x in v:
                    n = len(x) if k is Kind.BYTES else len(x.encode())
                    total += tag + _varint_size(n) + n
            else:
                n = sum(1 if k is Kind.BOOL else _varint_size(int(x)) for x in v)
                total += tag + _varint_size(n) + n
            continue
        if k is Kind.MESSAGE:
            if v is not None:
                n = proto_size(v)
                total += tag + _varint_size(n) + n
        elif k is Kind.BYTES:
            if v:
                total += tag + _varint_size(len(v)) + len(v)
        elif k is Kind.STRING:
            if v:
                n = len(v.encode())
                total += tag + _varint_size(n) + n
        elif k is Kind.BOOL:
            if v:
                total += tag + 1
        elif v:
            total += tag + _varint_size(int(v))
    return total


def check_grpc_size(req: Any, max_request_bytes: int, body_len: int) -> None:
    """gRPC's receive limit: ``grpc: received message larger than max (N vs. M)``."""
    limit = max_request_bytes + GRPC_OVERHEAD_BYTES
    # A JSON body is never much smaller than its protobuf form (base64 alone is 4/3).
    if body_len * 2 < limit:
        return
    n = proto_size(req)
    if n > limit:
        msg = f"grpc: received message larger than max ({n} vs. {limit})"
        raise EtcdError(msg, GrpcCode.RESOURCE_EXHAUSTED)


# The proposal etcd marshals: InternalRaftRequest{header: RequestHeader{ID}, <op>: req}. Its
# header is field 100 (2-byte tag) holding a 64-bit ID (tag + ~9-byte varint).
_PROPOSAL_OVERHEAD = 2 + 1 + 1 + 9


def check_proposal_size(req: Any, max_request_bytes: int, body_len: int) -> None:
    """etcd's ``request is too large`` check over the marshalled proposal."""
    if body_len * 2 < max_request_bytes:
        return
    n = proto_size(req)
    if _PROPOSAL_OVERHEAD + 1 + _varint_size(n) + n > max_request_bytes:
        raise errors.ErrRequestTooLarge
