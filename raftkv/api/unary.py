"""etcd's unary RPCs, independent of the wire: what each checks before it reaches the member.

Both client codecs (the JSON gateway in ``app.py``, gRPC) decode a request into its
``raftkv.pb.rpc`` dataclass, then call ``call(ops, spec, req, wire_size)``, so the two refuse
exactly the same requests in the same order, as etcd's gRPC layer does them:
the receive limit (``max_request_bytes`` + 512 KiB) -> the learner interceptor -> (gRPC only)
the ``hasleader`` metadata -> the request's own checks (key.go) -> ``request is too large``
over the Raft proposal -> the member. The response gets the shape etcd gives it (``fixup``).
``EtcdError`` propagates to the codec.

``keep_alive_once`` is one LeaseKeepAlive exchange of the bidi stream, shared by both streams.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from raftkv import errors
from raftkv.api import validate
from raftkv.api.ops import ClientOps
from raftkv.errors import EtcdError
from raftkv.mvcc.validate import is_txn_readonly
from raftkv.pb import rpc

__all__ = ["UNARY", "Unary", "call", "keep_alive_once"]


@dataclass(frozen=True, slots=True)
class Unary:
    method: str  # the ClientOps method ``run`` calls
    run: Callable[[ClientOps, Any], Awaitable[Any]]
    req_cls: type
    check: Callable[[Any, ClientOps], None] | None  # raises EtcdError
    proposal: bool  # goes through Raft: subject to etcd's "request is too large"
    fixup: Callable[[Any], None] | None = None  # adjust the response to etcd's exact shape


def _request_only(check: Callable[[Any], None]) -> Callable[[Any, ClientOps], None]:
    """A check of the request alone (most of them; the txn check also reads a limit)."""
    return lambda r, _ops: check(r)


def _check_txn(r: rpc.TxnRequest, ops: ClientOps) -> None:
    validate.check_txn(r, ops.max_txn_ops)


def _member_list_fixup(resp: Any) -> None:
    # etcd's cluster service fills the header without a revision.
    if resp.header is not None:
        resp.header.revision = 0


def _alarm_fixup(resp: Any) -> None:
    # etcd's maintenance Alarm returns the applier's response as is: no header.
    resp.header = None


# by ClientOps method name; the codecs map their paths onto these
UNARY: dict[str, Unary] = {
    u.method: u
    for u in (
        Unary(
            "range",
            lambda o, r: o.range(r),
            rpc.RangeRequest,
            _request_only(validate.check_range),
            False,
        ),
        Unary(
            "put", lambda o, r: o.put(r), rpc.PutRequest, _request_only(validate.check_put), True
        ),
        Unary(
            "delete_range",
            lambda o, r: o.delete_range(r),
            rpc.DeleteRangeRequest,
            _request_only(validate.check_delete),
            True,
        ),
        Unary("txn", lambda o, r: o.txn(r), rpc.TxnRequest, _check_txn, True),
        Unary("compact", lambda o, r: o.compact(r), rpc.CompactionRequest, None, True),
        Unary("lease_grant", lambda o, r: o.lease_grant(r), rpc.LeaseGrantRequest, None, True),
        Unary("lease_revoke", lambda o, r: o.lease_revoke(r), rpc.LeaseRevokeRequest, None, True),
        Unary(
            "lease_time_to_live",
            lambda o, r: o.lease_time_to_live(r),
            rpc.LeaseTimeToLiveRequest,
            None,
            False,
        ),
        Unary("lease_leases", lambda o, r: o.lease_leases(r), rpc.LeaseLeasesRequest, None, False),
        Unary(
            "member_list",
            lambda o, r: o.member_list(r),
            rpc.MemberListRequest,
            None,
            False,
            _member_list_fixup,
        ),
        Unary("member_add", lambda o, r: o.member_add(r), rpc.MemberAddRequest, None, False),
        Unary(
            "member_remove", lambda o, r: o.member_remove(r), rpc.MemberRemoveRequest, None, False
        ),
        Unary(
            "member_update", lambda o, r: o.member_update(r), rpc.MemberUpdateRequest, None, False
        ),
        Unary(
            "member_promote",
            lambda o, r: o.member_promote(r),
            rpc.MemberPromoteRequest,
            None,
            False,
        ),
        Unary("status", lambda o, r: o.status(r), rpc.StatusRequest, None, False),
        Unary("hash", lambda o, r: o.hash(r), rpc.HashRequest, None, False),
        Unary("hash_kv", lambda o, r: o.hash_kv(r), rpc.HashKVRequest, None, False),
        Unary(
            "alarm",
            lambda o, r: o.alarm(r),
            rpc.AlarmRequest,
            _request_only(validate.check_alarm),
            True,
            _alarm_fixup,
        ),
        Unary("defragment", lambda o, r: o.defragment(r), rpc.DefragmentRequest, None, False),
        Unary("move_leader", lambda o, r: o.move_leader(r), rpc.MoveLeaderRequest, None, False),
    )
}


def _refused_to_learner(ops: ClientOps, spec: Unary, req: Any) -> bool:
    """etcd's interceptor: a learner serves only status and serializable ranges."""
    if not ops.is_learner():
        return False
    return not (spec.method == "status" or (spec.method == "range" and req.serializable))


async def call(
    ops: ClientOps, spec: Unary, req: Any, wire_size: int, require_leader: bool = False
) -> Any:
    """Check ``req`` as etcd does, run it on the member, and return etcd's response.

    ``wire_size`` is the size of the request as it arrived (JSON bytes or protobuf bytes):
    below half a limit no exact protobuf size need be computed. ``require_leader``: the gRPC
    call carried the ``hasleader`` metadata (refused while the member knows no leader).
    """
    validate.check_grpc_size(req, ops.max_request_bytes, wire_size)
    if _refused_to_learner(ops, spec, req):
        raise errors.ErrNotSupportedForLearner
    if require_leader and not ops.has_leader():
        raise errors.ErrNoLeader
    if spec.check is not None:
        spec.check(req, ops)
    if (
        spec.proposal
        and wire_size * 2 >= ops.max_request_bytes
        and (spec.method != "txn" or not is_txn_readonly(req))
    ):
        validate.check_proposal_size(req, ops.max_request_bytes, wire_size)
    resp = await spec.run(ops, req)
    if spec.fixup is not None:
        spec.fixup(resp)
    return resp


async def keep_alive_once(ops: ClientOps, req: rpc.LeaseKeepAliveRequest) -> Any:
    """One keep-alive of the LeaseKeepAlive stream. etcd answers an unknown lease with TTL 0
    (omitted) and a fresh header rather than an error."""
    try:
        return await ops.lease_renew(req)
    except EtcdError as e:
        if e is not errors.ErrLeaseNotFound and e.message != errors.ErrLeaseNotFound.message:
            raise
    ttl = await ops.lease_time_to_live(rpc.LeaseTimeToLiveRequest(ID=req.ID))
    return rpc.LeaseKeepAliveResponse(header=ttl.header, ID=req.ID, TTL=0)
