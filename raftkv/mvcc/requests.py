"""Request semantics on top of the txns: etcd v3.4's etcdserver/apply.go.

Range: limit is ignored while sorting or filtering (then applied after), ``count`` is the number
of keys in the range at the revision before min/max filters, ``more`` when ``limit`` cut the
result; ``keys_only`` drops values, ``count_only`` returns no kvs; sort_target other than KEY
with sort_order NONE sorts ascending; sorting is Go's unstable ``sort.Sort`` (see gosort), so
ties come out in etcd's order.
Put: ``ignore_value``/``ignore_lease`` take the current value/lease (ErrKeyNotFound on a
missing key); ``prev_kv`` returns the previous kv.
Txn: every compare (nested ones too) is evaluated against the state *before* the txn; then
every put of the chosen path is checked (ErrKeyNotFound, ErrLeaseNotFound), then every range
(ErrFutureRev, ErrCompacted); only then anything is written, all at one revision. A txn of
ranges only is read-only and does not bump the revision. A nested txn's response header is
empty (revision 0), as etcd's is.

Every request is checked first (``validate.py``, the same checks the client API makes before
proposing: they are pure functions of the request).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from raftkv import errors
from raftkv.errors import EtcdError
from raftkv.mvcc.gosort import go_sort
from raftkv.mvcc.validate import check_txn_request, is_txn_readonly
from raftkv.pb.kv import KeyValue
from raftkv.pb.rpc import (
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    RequestOp,
    ResponseHeader,
    ResponseOp,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)

if TYPE_CHECKING:
    from raftkv.lease.lessor import Lessor
    from raftkv.mvcc.kvstore_txn import ReadTxn, WriteTxn

    Txn = ReadTxn | WriteTxn

__all__ = ["apply_delete_range", "apply_put", "apply_range", "apply_txn", "mk_gte_range"]


def mk_gte_range(range_end: bytes) -> bytes | None:
    """etcd's range_end: b"" -> single key (None), b"\\0" -> every key >= key (b"")."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end


# --- range / put / delete ----------------------------------------------------------------------

_SORT_KEYS = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


def apply_range(txn: Txn, r: RangeRequest) -> RangeResponse:
    limit = r.limit
    filtered = (
        r.min_mod_revision or r.max_mod_revision or r.min_create_revision or r.max_create_revision
    )
    if r.sort_order != SortOrder.NONE or filtered:
        limit = 0
    if limit > 0:
        limit += 1
    kvs, count, rev = txn.range(r.key, mk_gte_range(r.range_end), limit, r.revision, r.count_only)
    if filtered:
        if r.max_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision <= r.max_mod_revision]
        if r.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= r.min_mod_revision]
        if r.max_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision <= r.max_create_revision]
        if r.min_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision >= r.min_create_revision]
    order = r.sort_order
    if r.sort_target != SortTarget.KEY and order == SortOrder.NONE:
        order = SortOrder.ASCEND
    # Go's sort.Sort is not stable: ties (same version, value, ...) come out in its order
    if order == SortOrder.ASCEND:
        if r.sort_target != SortTarget.KEY:  # kvs come in key order already
            go_sort(kvs, _SORT_KEYS[r.sort_target])
    elif order == SortOrder.DESCEND:
        if r.sort_target == SortTarget.KEY:
            kvs.reverse()
        else:
            go_sort(kvs, _SORT_KEYS[r.sort_target], reverse=True)
    more = False
    if r.limit > 0 and len(kvs) > r.limit:
        del kvs[r.limit :]
        more = True
    if r.keys_only:
        kvs = [
            KeyValue(kv.key, kv.create_revision, kv.mod_revision, kv.version, b"", kv.lease)
            for kv in kvs
        ]
    return RangeResponse(header=ResponseHeader(revision=rev), kvs=kvs, more=more, count=count)


def apply_put(txn: WriteTxn, p: PutRequest) -> PutResponse:
    value, lease = p.value, p.lease
    prev = None
    if p.ignore_value or p.ignore_lease or p.prev_kv:
        kvs = txn.range(p.key, None)[0]
        if kvs:
            prev = kvs[0]
    if p.ignore_value or p.ignore_lease:
        if prev is None:
            raise errors.ErrKeyNotFound
        if p.ignore_value:
            value = prev.value
        if p.ignore_lease:
            lease = prev.lease
    rev = txn.put(p.key, value, lease)
    return PutResponse(header=ResponseHeader(revision=rev), prev_kv=prev if p.prev_kv else None)


def apply_delete_range(txn: WriteTxn, d: DeleteRangeRequest) -> DeleteRangeResponse:
    end = mk_gte_range(d.range_end)
    prev_kvs = txn.range(d.key, end)[0] if d.prev_kv else []
    n, rev = txn.delete_range(d.key, end)
    return DeleteRangeResponse(header=ResponseHeader(revision=rev), deleted=n, prev_kvs=prev_kvs)


# --- txn ---------------------------------------------------------------------------------------


def _compare_int(a: int, b: int) -> int:
    return (a > b) - (a < b)


def compare_kv(c: Compare, kv: KeyValue) -> bool:
    t = c.target
    if t == CompareTarget.VALUE:
        result = (kv.value > c.value) - (kv.value < c.value)
    elif t == CompareTarget.CREATE:
        result = _compare_int(kv.create_revision, c.create_revision)
    elif t == CompareTarget.MOD:
        result = _compare_int(kv.mod_revision, c.mod_revision)
    elif t == CompareTarget.VERSION:
        result = _compare_int(kv.version, c.version)
    elif t == CompareTarget.LEASE:
        result = _compare_int(kv.lease, c.lease)
    else:
        result = 0  # etcd: an unknown target leaves the zero result (equal)
    res = c.result
    if res == CompareResult.EQUAL:
        return result == 0
    if res == CompareResult.NOT_EQUAL:
        return result != 0
    if res == CompareResult.GREATER:
        return result > 0
    if res == CompareResult.LESS:
        return result < 0
    return True


def _apply_compare(rv: ReadTxn, c: Compare) -> bool:
    try:
        kvs = rv.range(c.key, mk_gte_range(c.range_end))[0]
    except EtcdError:
        return False
    if not kvs:
        if c.target == CompareTarget.VALUE:
            return False
        return compare_kv(c, KeyValue())
    return all(compare_kv(c, kv) for kv in kvs)


def _compare_to_path(rv: ReadTxn, r: TxnRequest, path: list[bool]) -> None:
    ok = all(_apply_compare(rv, c) for c in r.compare)
    path.append(ok)
    for op in r.success if ok else r.failure:
        if op.request_txn is not None:
            _compare_to_path(rv, op.request_txn, path)


def _chosen_ops(r: TxnRequest, path: Iterator[bool]) -> Iterator[RequestOp]:
    """The ops of the chosen branches, depth first, consuming ``path`` as etcd does."""
    for op in r.success if next(path) else r.failure:
        if op.request_txn is not None:
            yield from _chosen_ops(op.request_txn, path)
        else:
            yield op


def _check_put(rv: ReadTxn, lessor: Lessor, p: PutRequest) -> None:
    if (p.ignore_value or p.ignore_lease) and not rv.range(p.key, None, count_only=True)[1]:
        raise errors.ErrKeyNotFound
    if p.lease and not lessor.lookup(p.lease):
        raise errors.ErrLeaseNotFound


def _check_range(rv: ReadTxn, r: RangeRequest) -> None:
    if r.revision == 0:
        return
    if r.revision > rv.rev:
        raise errors.ErrFutureRev
    if r.revision < rv.first_rev:
        raise errors.ErrCompacted


def _apply_ops(txn: Txn, r: TxnRequest, path: Iterator[bool]) -> TxnResponse:
    succeeded = next(path)
    responses = []
    for op in r.success if succeeded else r.failure:
        if op.request_range is not None:
            responses.append(ResponseOp(response_range=apply_range(txn, op.request_range)))
        elif op.request_put is not None:
            responses.append(ResponseOp(response_put=_put_in_txn(txn, op.request_put)))
        elif op.request_delete_range is not None:
            responses.append(
                ResponseOp(response_delete_range=apply_delete_range(txn, op.request_delete_range))
            )
        elif op.request_txn is not None:
            responses.append(ResponseOp(response_txn=_apply_ops(txn, op.request_txn, path)))
    return TxnResponse(header=ResponseHeader(), succeeded=succeeded, responses=responses)


def _put_in_txn(txn: WriteTxn, p: PutRequest) -> PutResponse:
    try:
        return apply_put(txn, p)
    except EtcdError:
        # Only reachable when an earlier op of this txn deleted the key through a range_end of
        # b"\\0" (which etcd's duplicate check does not see) and this put ignores value/lease:
        # etcd panics there. Write it with an empty value and no lease instead.
        p = PutRequest(key=p.key, prev_kv=p.prev_kv)
        return apply_put(txn, p)


def apply_txn(read: ReadTxn, begin_write, lessor: Lessor, r: TxnRequest) -> TxnResponse:
    """Evaluate compares on ``read``, check, then apply on a write txn from ``begin_write()``
    (or on ``read`` itself when the txn is read-only)."""
    check_txn_request(r)
    path: list[bool] = []
    _compare_to_path(read, r, path)
    is_write = not is_txn_readonly(r)
    ops = list(_chosen_ops(r, iter(path)))
    if is_write:
        for op in ops:
            if op.request_put is not None:
                _check_put(read, lessor, op.request_put)
    for op in ops:
        if op.request_range is not None:
            _check_range(read, op.request_range)
    txn = begin_write() if is_write else read
    try:
        resp = _apply_ops(txn, r, iter(path))
        rev = txn.rev + 1 if txn.changes else txn.rev
    finally:
        txn.end()
    resp.header = ResponseHeader(revision=rev)
    return resp
