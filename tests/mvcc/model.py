"""A trivially correct model of etcd v3.4's key space, for model-based tests of the store.

Every revision's whole state is kept as a dict (key -> KeyValue), with the events that made it.
Nothing clever: ranges filter, sort and cut lists; txns copy the state, apply, and commit one
revision if anything changed.
"""

from __future__ import annotations

from dataclasses import replace

from raftkv import errors
from raftkv.pb.kv import EventType, KeyValue
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


def in_range(k: bytes, key: bytes, range_end: bytes) -> bool:
    if not range_end:
        return k == key
    if range_end == b"\x00":
        return k >= key
    return key <= k < range_end


class Model:
    def __init__(self) -> None:
        self.rev = 1
        self.compacted = -1
        self.compactions: list[int] = []
        self.states: dict[int, dict[bytes, KeyValue]] = {1: {}}
        self.events: dict[int, list[tuple[EventType, KeyValue]]] = {}
        self.leases: set[int] = set()

    # --- reads ---------------------------------------------------------------------------------

    def state_at(self, rev: int) -> dict[bytes, KeyValue]:
        return self.states[rev]

    def range(self, r: RangeRequest, view: int | None = None) -> RangeResponse:
        view = self.rev if view is None else view
        at = r.revision or view
        if r.revision > view:
            raise errors.ErrFutureRev
        if at < self.compacted:
            raise errors.ErrCompacted
        st = self.states[at]
        kvs = sorted((kv for k, kv in st.items() if in_range(k, r.key, r.range_end)), key=_key)
        count = len(kvs)
        if r.count_only:
            return RangeResponse(header=ResponseHeader(revision=view), count=count)
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
        attr = {
            SortTarget.KEY: "key",
            SortTarget.VERSION: "version",
            SortTarget.CREATE: "create_revision",
            SortTarget.MOD: "mod_revision",
            SortTarget.VALUE: "value",
        }[r.sort_target]
        if order == SortOrder.ASCEND:
            kvs = sorted(kvs, key=lambda kv: getattr(kv, attr))
        elif order == SortOrder.DESCEND:
            kvs = sorted(kvs, key=lambda kv: getattr(kv, attr), reverse=True)
        more = False
        if r.limit > 0 and len(kvs) > r.limit:
            kvs = kvs[: r.limit]
            more = True
        if r.keys_only:
            kvs = [replace(kv, value=b"") for kv in kvs]
        return RangeResponse(header=ResponseHeader(revision=view), kvs=kvs, more=more, count=count)

    # --- writes --------------------------------------------------------------------------------

    def _commit(self, st: dict[bytes, KeyValue], evs: list) -> None:
        if evs:
            self.rev += 1
            self.states[self.rev] = st
            self.events[self.rev] = evs

    def _put(self, st: dict, evs: list, p: PutRequest) -> PutResponse:
        r = self.rev + 1
        prev = st.get(p.key)
        value, lease = p.value, p.lease
        if p.ignore_value or p.ignore_lease:
            if prev is None:
                raise errors.ErrKeyNotFound
            if p.ignore_value:
                value = prev.value
            if p.ignore_lease:
                lease = prev.lease
        kv = KeyValue(
            p.key,
            prev.create_revision if prev else r,
            r,
            prev.version + 1 if prev else 1,
            value,
            lease,
        )
        st[p.key] = kv
        evs.append((EventType.PUT, kv))
        return PutResponse(header=ResponseHeader(revision=r), prev_kv=prev if p.prev_kv else None)

    def _delete(self, st: dict, evs: list, d: DeleteRangeRequest) -> DeleteRangeResponse:
        keys = sorted(k for k in st if in_range(k, d.key, d.range_end))
        prev = [st[k] for k in keys] if d.prev_kv else []
        for k in keys:
            del st[k]
            evs.append((EventType.DELETE, KeyValue(k, mod_revision=self.rev + 1)))
        rev = self.rev + 1 if evs else self.rev
        return DeleteRangeResponse(
            header=ResponseHeader(revision=rev), deleted=len(keys), prev_kvs=prev
        )

    def put(self, p: PutRequest) -> PutResponse:
        if p.lease and p.lease not in self.leases:
            raise errors.ErrLeaseNotFound
        st = dict(self.states[self.rev])
        evs: list = []
        resp = self._put(st, evs, p)
        self._commit(st, evs)
        return resp

    def delete_range(self, d: DeleteRangeRequest) -> DeleteRangeResponse:
        st = dict(self.states[self.rev])
        evs: list = []
        resp = self._delete(st, evs, d)
        self._commit(st, evs)
        return resp

    def _compare(self, c: Compare) -> bool:
        st = self.states[self.rev]
        kvs = [kv for k, kv in st.items() if in_range(k, c.key, c.range_end)]
        if not kvs:
            if c.target == CompareTarget.VALUE:
                return False
            kvs = [KeyValue()]
        for kv in kvs:
            a, b = {
                CompareTarget.VALUE: (kv.value, c.value),
                CompareTarget.VERSION: (kv.version, c.version),
                CompareTarget.CREATE: (kv.create_revision, c.create_revision),
                CompareTarget.MOD: (kv.mod_revision, c.mod_revision),
                CompareTarget.LEASE: (kv.lease, c.lease),
            }[c.target]
            ok = {
                CompareResult.EQUAL: a == b,
                CompareResult.NOT_EQUAL: a != b,
                CompareResult.GREATER: a > b,
                CompareResult.LESS: a < b,
            }[c.result]
            if not ok:
                return False
        return True

    def txn(self, t: TxnRequest) -> TxnResponse:
        """Flat txns only (no nested txn ops), keys written at most once."""
        ok = all(self._compare(c) for c in t.compare)
        ops: list[RequestOp] = t.success if ok else t.failure
        readonly = all(op.request_range is not None for op in t.success + t.failure)
        st0 = self.states[self.rev]
        for op in ops:
            p = op.request_put
            if p is not None and not readonly:
                if (p.ignore_value or p.ignore_lease) and p.key not in st0:
                    raise errors.ErrKeyNotFound
                if p.lease and p.lease not in self.leases:
                    raise errors.ErrLeaseNotFound
        for op in ops:
            rr = op.request_range
            if rr is not None and rr.revision:
                if rr.revision > self.rev:
                    raise errors.ErrFutureRev
                if rr.revision < self.compacted:
                    raise errors.ErrCompacted
        st = dict(st0)
        evs: list = []
        resps = []
        for op in ops:
            if op.request_range is not None:
                view = self.rev + 1 if evs else self.rev
                saved = self.states.get(view)
                self.states[view] = st  # the txn's own view
                try:
                    resps.append(ResponseOp(response_range=self.range(op.request_range, view)))
                finally:
                    if saved is None:
                        del self.states[view]
                    else:
                        self.states[view] = saved
            elif op.request_put is not None:
                resps.append(ResponseOp(response_put=self._put(st, evs, op.request_put)))
            elif op.request_delete_range is not None:
                resps.append(
                    ResponseOp(response_delete_range=self._delete(st, evs, op.request_delete_range))
                )
        rev = self.rev + 1 if evs else self.rev
        self._commit(st, evs)
        return TxnResponse(header=ResponseHeader(revision=rev), succeeded=ok, responses=resps)

    def compact(self, rev: int) -> None:
        if rev <= self.compacted:
            raise errors.ErrCompacted
        if rev > self.rev:
            raise errors.ErrFutureRev
        self.compacted = rev
        self.compactions.append(rev)

    def grant(self, lease_id: int) -> None:
        self.leases.add(lease_id)

    def revoke(self, lease_id: int) -> int:
        if lease_id not in self.leases:
            raise errors.ErrLeaseNotFound
        st = dict(self.states[self.rev])
        evs: list = []
        for k in sorted(k for k, kv in st.items() if kv.lease == lease_id):
            del st[k]
            evs.append((EventType.DELETE, KeyValue(k, mod_revision=self.rev + 1)))
        self._commit(st, evs)
        self.leases.discard(lease_id)
        return self.rev

    # --- watch ---------------------------------------------------------------------------------

    def watch_events(self, start: int, key: bytes, range_end: bytes) -> list:
        out = []
        for r in range(max(start, 2), self.rev + 1):
            for typ, kv in self.events.get(r, ()):
                if in_range(kv.key, key, range_end):
                    out.append((typ, kv))
        return out


def _key(kv: KeyValue) -> bytes:
    return kv.key
