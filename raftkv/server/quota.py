"""The backend quota (etcd's etcdserver/quota.go), as pure functions of a request and sizes.

A request's *cost* estimates what it adds to the db: a put costs its key and value plus 256
bytes of metadata; a txn costs its costlier branch (only direct puts count, as in etcd); a
lease grant 64 bytes; everything else 0 and always passes. A costed request is admitted while
``db size + cost < quota``; otherwise the member raises the NOSPACE alarm through Raft and the
client gets ``etcdserver: mvcc: database space exceeded``. While any NOSPACE alarm is active,
the applier refuses every request with a cost (puts, lease grants, txns with puts), on every
member, until the alarm is disarmed; reads, deletes and compactions still apply.
"""

from __future__ import annotations

from typing import Any

from raftkv.pb import rpc

__all__ = ["DEFAULT_QUOTA_BYTES", "MAX_QUOTA_BYTES", "available", "cost"]

DEFAULT_QUOTA_BYTES = 2 << 30
MAX_QUOTA_BYTES = 8 << 30  # etcd warns above this
LEASE_OVERHEAD = 64
KV_OVERHEAD = 256


def _cost_put(p: rpc.PutRequest) -> int:
    return KV_OVERHEAD + len(p.key) + len(p.value)


def _cost_ops(ops: list[rpc.RequestOp]) -> int:
    return sum(_cost_put(op.request_put) for op in ops if op.request_put is not None)


def cost(req: Any) -> int:
    if isinstance(req, rpc.PutRequest):
        return _cost_put(req)
    if isinstance(req, rpc.TxnRequest):
        return max(_cost_ops(req.success), _cost_ops(req.failure))
    if isinstance(req, rpc.LeaseGrantRequest):
        return LEASE_OVERHEAD
    return 0


def available(db_size: int, req_cost: int, quota: int) -> bool:
    """etcd's backendQuota.Available (a negative quota disables the check)."""
    return req_cost == 0 or quota < 0 or db_size + req_cost < quota
