"""The checks a KV request must pass, written once (etcd v3.4's v3rpc/key.go).

Run by every client codec before a request reaches Raft (``raftkv.api.unary``, for the JSON
gateway and gRPC alike) and again by the store when the request is applied (``requests.py``),
so both layers refuse exactly the same requests with the same error:

- range / put / delete: a key is required; put refuses a value or lease given together with
  ``ignore_value`` / ``ignore_lease``; a range with a sort target outside the proto is refused
  (etcd 3.4's process does not survive one);
- txn (``check_txn_request``): etcd's checkTxnRequest walk over compares and both branches,
  nested txns included, with the ``max_txn_ops`` budget shrinking per nesting level as etcd's
  does, then checkIntervals (a key put twice, or put and deleted, on one path);
- ``is_txn_readonly``: etcd's isTxnReadonly (only ranges; a nested txn counts as a write), the
  one decision of whether a txn is served as a read or proposed.

Pure functions of the request; they raise ``EtcdError``.
"""

from __future__ import annotations

from raftkv import errors
from raftkv.errors import EtcdError, GrpcCode
from raftkv.pb.rpc import (
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    SortTarget,
    TxnRequest,
)

__all__ = [
    "check_delete_request",
    "check_put_request",
    "check_range_request",
    "check_txn_request",
    "is_txn_readonly",
    "unknown_enum",
]


def unknown_enum(n: int, goname: str) -> EtcdError:
    """The error jsonpb gives an enum number outside the proto. raftkv refuses the numbers
    etcd 3.4 does not survive (its process panics) with it; other unknown numbers pass."""
    return EtcdError(f"unknown value {int(n)} for enum {goname}", GrpcCode.INVALID_ARGUMENT)


def check_range_request(r: RangeRequest) -> None:
    if not r.key:
        raise errors.ErrEmptyKey
    # (etcd sorts ascending when only a target is given, so the order does not matter)
    if int(r.sort_target) not in SortTarget._value2member_map_:
        raise unknown_enum(r.sort_target, "etcdserverpb.RangeRequest_SortTarget")


def check_put_request(r: PutRequest) -> None:
    if not r.key:
        raise errors.ErrEmptyKey
    if r.ignore_value and r.value:
        raise errors.ErrValueProvided
    if r.ignore_lease and r.lease:
        raise errors.ErrLeaseProvided


def check_delete_request(r: DeleteRangeRequest) -> None:
    if not r.key:
        raise errors.ErrEmptyKey


def _check_request_op(op: RequestOp, max_txn_ops: int | None) -> None:
    if op.request_range is not None:
        check_range_request(op.request_range)
    elif op.request_put is not None:
        check_put_request(op.request_put)
    elif op.request_delete_range is not None:
        check_delete_request(op.request_delete_range)
    elif op.request_txn is not None:
        _check_txn_ops(op.request_txn, max_txn_ops)
    else:
        raise errors.ErrKeyNotFound  # etcd: "empty op / nil entry"


def _check_txn_ops(r: TxnRequest, max_txn_ops: int | None) -> None:
    opc = max(len(r.compare), len(r.success), len(r.failure))
    if max_txn_ops is not None:
        if opc > max_txn_ops:
            raise errors.ErrTooManyOps
        max_txn_ops -= opc
    for c in r.compare:
        if not c.key:
            raise errors.ErrEmptyKey
    for op in r.success:
        _check_request_op(op, max_txn_ops)
    for op in r.failure:
        _check_request_op(op, max_txn_ops)


def check_txn_request(r: TxnRequest, max_txn_ops: int | None = None) -> None:
    """etcd's checkTxnRequest (the ``max_txn_ops`` budget when given) + checkIntervals."""
    _check_txn_ops(r, max_txn_ops)
    # after the empty-key checks: an empty key or range_end means something else to etcd's
    # interval tree
    _check_intervals(r.success)
    _check_intervals(r.failure)


def _in_dels(dels: list[tuple[bytes, bytes | None]], k: bytes) -> bool:
    # etcd's interval tree holds [key, range_end) with range_end compared literally (so
    # b"\\0" is an empty interval there), or the point key when range_end is empty.
    for start, end in dels:
        if end is None:
            if k == start:
                return True
        elif start <= k < end:
            return True
    return False


def _check_intervals(
    reqs: list[RequestOp],
) -> tuple[set[bytes], list[tuple[bytes, bytes | None]]]:
    """etcd's checkIntervals on one branch: ErrDuplicateKey when one path of the txn (nested
    txns included) puts a key twice, or puts a key it also deletes."""
    dels: list[tuple[bytes, bytes | None]] = []
    for op in reqs:
        d = op.request_delete_range
        if d is not None:
            dels.append((d.key, d.range_end if d.range_end else None))
    puts: set[bytes] = set()
    for op in reqs:
        t = op.request_txn
        if t is None:
            continue
        puts_then, dels_then = _check_intervals(t.success)
        puts_else, dels_else = _check_intervals(t.failure)
        for k in puts_then:
            if k in puts or _in_dels(dels, k):
                raise errors.ErrDuplicateKey
            puts.add(k)
        for k in puts_else:
            if k in puts and k not in puts_then:
                raise errors.ErrDuplicateKey
            if _in_dels(dels, k):
                raise errors.ErrDuplicateKey
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in reqs:
        p = op.request_put
        if p is None:
            continue
        if p.key in puts or _in_dels(dels, p.key):
            raise errors.ErrDuplicateKey
        puts.add(p.key)
    return puts, dels


def is_txn_readonly(r: TxnRequest) -> bool:
    """etcd's isTxnReadonly: every op of both branches is a range (nested txns are writes)."""
    return all(op.request_range is not None for op in r.success) and all(
        op.request_range is not None for op in r.failure
    )
