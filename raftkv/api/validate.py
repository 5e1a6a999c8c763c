"""Request checks etcd makes at its gRPC layer, before a request reaches Raft.

Ports of etcd v3.4's ``etcdserver/api/v3rpc/key.go`` (checkTxnRequest with the gateway's
``max_txn_ops`` budget and sort-target check; checkRangeRequest, checkPutRequest,
checkDeleteRequest and checkIntervals are the applier's, from ``raftkv.mvcc.apply``, so the
two layers refuse the same requests), the gRPC server's receive limit
(``max_request_bytes`` + 512 KiB, over the request's protobuf size), and etcd's own
``request is too large`` check over the marshalled Raft proposal. Sizes are computed from the
``raftkv.pb`` field tables with protobuf's encoding rules (only for big bodies).

Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from raftkv import errors
from raftkv.errors import EtcdError, GrpcCode

# the single-request checks are the applier's own (it runs them again after Raft)
from raftkv.mvcc.apply import check_delete_request as check_delete
from raftkv.mvcc.apply import check_put_request as check_put
from raftkv.mvcc.apply import check_range_request as check_range
from raftkv.mvcc.apply import check_txn_intervals
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
    "check_sort_target",
    "check_txn",
    "proto_size",
]

GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd's grpcOverheadBytes


# Enum numbers outside the proto that etcd 3.4 does not survive (its process panics: a sort with
# an unknown target, an Alarm with an unknown action). raftkv refuses them instead, with the
# message jsonpb gives an unknown enum name. Other unknown numbers pass, as in etcd (an alarm of
# an unknown type is stored and listed with its number).
def _unknown_enum(n: int, goname: str) -> EtcdError:
    return EtcdError(f"unknown value {int(n)} for enum {goname}", GrpcCode.INVALID_ARGUMENT)


def check_sort_target(r: rpc.RangeRequest) -> None:
    # (etcd sorts ascending when only a target is given, so the order does not matter)
    if int(r.sort_target) not in rpc.SortTarget._value2member_map_:
        raise _unknown_enum(r.sort_target, "etcdserverpb.RangeRequest_SortTarget")


def check_alarm(r: rpc.AlarmRequest) -> None:
    if int(r.action) not in rpc.AlarmAction._value2member_map_:
        raise _unknown_enum(r.action, "etcdserverpb.AlarmRequest_AlarmAction")


def _check_op(u: rpc.RequestOp, max_txn_ops: int) -> None:
    if u.request_range is not None:
        check_range(u.request_range)
        check_sort_target(u.request_range)
    elif u.request_put is not None:
        check_put(u.request_put)
    elif u.request_delete_range is not None:
        check_delete(u.request_delete_range)
    elif u.request_txn is not None:
        _check_txn_ops(u.request_txn, max_txn_ops)
    else:
        raise errors.ErrKeyNotFound  # an empty RequestOp


def _check_txn_ops(r: rpc.TxnRequest, max_txn_ops: int) -> None:
    opc = max(len(r.compare), len(r.success), len(r.failure))
    if opc > max_txn_ops:
        raise errors.ErrTooManyOps
    for c in r.compare:
        if not c.key:
            raise errors.ErrEmptyKey
    for u in r.success:
        _check_op(u, max_txn_ops - opc)
    for u in r.failure:
        _check_op(u, max_txn_ops - opc)


def check_txn(r: rpc.TxnRequest, max_txn_ops: int) -> None:
    _check_txn_ops(r, max_txn_ops)
    check_txn_intervals(r)  # the applier's own check, so both refuse the same txns


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
