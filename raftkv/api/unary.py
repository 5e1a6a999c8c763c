"""etcd's unary RPCs, independent of the wire: what each checks before it reaches the member.

Both client codecs (the JSON gateway in ``app.py``, gRPC) decode a request into its
``raftkv.pb.rpc`` dataclass, then call ``call(ops, spec, req, wire_size)``, so the two refuse
exactly the same requests in the same order, as etcd's gRPC layer does them:
the receive limit (``max_request_bytes`` + 512 KiB) -> the learner interceptor -> (gRPC only)
the ``hasleader`` metadata -> the request's own checks (key.go) -> ``request is too large``
over the Raft proposal -> the caller's token (``Access``) -> the member. The response gets the
shape etcd gives it (``fixup``).
``EtcdError`` propagates to the codec.

The caller's token comes from the codec (the gateway's ``Authorization`` header, gRPC's
``token`` metadata). Where etcd looks at it (``Access``): a token that names nobody is
"invalid auth token"; reads are checked here before they run and refused afterwards if the
auth store changed meanwhile (etcd's doSerialize); admin calls need root; a proposal carries
its caller to the applier, which checks it (``raftkv.auth.caller``).

``keep_alive_once`` is one LeaseKeepAlive exchange of the bidi stream, shared by both streams;
``watch_refusal`` the auth check of one watch create.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from raftkv import errors
from raftkv.api import validate
from raftkv.api.ops import ClientOps, PermissionChecks
from raftkv.auth import AuthInfo
from raftkv.auth.caller import CALLER, NO_USER
from raftkv.errors import EtcdError
from raftkv.mvcc.validate import is_txn_readonly
from raftkv.pb import rpc

__all__ = [
    "UNARY",
    "Access",
    "Unary",
    "admin_refusal",
    "call",
    "caller_of",
    "keep_alive_once",
    "watch_refusal",
]


class Access(Enum):
    """What etcd does with the caller's token for an RPC."""

    NONE = 0  # never looked at (lease TTL / leases / keep-alive, member list, status, move)
    CALLER = 1  # resolved; its user travels with the proposal and the applier checks it
    ADMIN = 2  # resolved; root only (membership calls)
    READ = 3  # resolved; ``read_check`` here, served, then the auth revision re-checked
    MAINTENANCE = 4  # as ADMIN, refused in the auth package's own words (``admin_refusal``)


ReadCheck = Callable[[PermissionChecks, AuthInfo, Any], None]


@dataclass(frozen=True, slots=True)
class Unary:
    method: str  # the ClientOps method ``run`` calls
    run: Callable[[ClientOps, Any], Awaitable[Any]]
    req_cls: type
    check: Callable[[Any, ClientOps], None] | None  # raises EtcdError
    proposal: bool  # goes through Raft: subject to etcd's "request is too large"
    fixup: Callable[[Any], None] | None = None  # adjust the response to etcd's exact shape
    access: Access = Access.CALLER
    read_check: ReadCheck | None = None  # Access.READ: raises EtcdError


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


def _range_read(a: PermissionChecks, ai: AuthInfo, r: rpc.RangeRequest) -> None:
    a.is_range_permitted(ai, r.key, r.range_end)


def _txn_read(a: PermissionChecks, ai: AuthInfo, r: rpc.TxnRequest) -> None:
    a.check_txn(ai, r)


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
            access=Access.READ,
            read_check=_range_read,
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
        Unary(
            "txn",
            lambda o, r: o.txn(r),
            rpc.TxnRequest,
            _check_txn,
            True,
            access=Access.READ,  # (a txn that writes is proposed: Access.CALLER)
            read_check=_txn_read,
        ),
        Unary("compact", lambda o, r: o.compact(r), rpc.CompactionRequest, None, True),
        Unary("lease_grant", lambda o, r: o.lease_grant(r), rpc.LeaseGrantRequest, None, True),
        Unary("lease_revoke", lambda o, r: o.lease_revoke(r), rpc.LeaseRevokeRequest, None, True),
        Unary(
            "lease_time_to_live",
            lambda o, r: o.lease_time_to_live(r),
            rpc.LeaseTimeToLiveRequest,
            None,
            False,
            access=Access.NONE,
        ),
        Unary(
            "lease_leases",
            lambda o, r: o.lease_leases(r),
            rpc.LeaseLeasesRequest,
            None,
            False,
            access=Access.NONE,
        ),
        Unary(
            "member_list",
            lambda o, r: o.member_list(r),
            rpc.MemberListRequest,
            None,
            False,
            _member_list_fixup,
            access=Access.NONE,
        ),
        Unary(
            "member_add",
            lambda o, r: o.member_add(r),
            rpc.MemberAddRequest,
            None,
            False,
            access=Access.ADMIN,
        ),
        Unary(
            "member_remove",
            lambda o, r: o.member_remove(r),
            rpc.MemberRemoveRequest,
            None,
            False,
            access=Access.ADMIN,
        ),
        Unary(
            "member_update",
            lambda o, r: o.member_update(r),
            rpc.MemberUpdateRequest,
            None,
            False,
            access=Access.ADMIN,
        ),
        Unary(
            "member_promote",
            lambda o, r: o.member_promote(r),
            rpc.MemberPromoteRequest,
            None,
            False,
            access=Access.ADMIN,
        ),
        Unary(
            "status",
            lambda o, r: o.status(r),
            rpc.StatusRequest,
            None,
            False,
            access=Access.NONE,
        ),
        Unary(
            "hash", lambda o, r: o.hash(r), rpc.HashRequest, None, False, access=Access.MAINTENANCE
        ),
        Unary(
            "hash_kv",
            lambda o, r: o.hash_kv(r),
            rpc.HashKVRequest,
            None,
            False,
            access=Access.MAINTENANCE,
        ),
        Unary(
            "alarm",
            lambda o, r: o.alarm(r),
            rpc.AlarmRequest,
            _request_only(validate.check_alarm),
            True,
            _alarm_fixup,
        ),
        Unary(
            "defragment",
            lambda o, r: o.defragment(r),
            rpc.DefragmentRequest,
            None,
            False,
            access=Access.MAINTENANCE,
        ),
        Unary(
            "move_leader",
            lambda o, r: o.move_leader(r),
            rpc.MoveLeaderRequest,
            None,
            False,
            access=Access.NONE,
        ),
        # the Auth service: proposed with the caller; the applier decides who may
        Unary("auth_enable", lambda o, r: o.auth_enable(r), rpc.AuthEnableRequest, None, True),
        Unary("auth_disable", lambda o, r: o.auth_disable(r), rpc.AuthDisableRequest, None, True),
        Unary("authenticate", lambda o, r: o.authenticate(r), rpc.AuthenticateRequest, None, True),
        Unary("user_add", lambda o, r: o.user_add(r), rpc.AuthUserAddRequest, None, True),
        Unary("user_get", lambda o, r: o.user_get(r), rpc.AuthUserGetRequest, None, True),
        Unary("user_list", lambda o, r: o.user_list(r), rpc.AuthUserListRequest, None, True),
        Unary("user_delete", lambda o, r: o.user_delete(r), rpc.AuthUserDeleteRequest, None, True),
        Unary(
            "user_change_password",
            lambda o, r: o.user_change_password(r),
            rpc.AuthUserChangePasswordRequest,
            None,
            True,
        ),
        Unary(
            "user_grant_role",
            lambda o, r: o.user_grant_role(r),
            rpc.AuthUserGrantRoleRequest,
            None,
            True,
        ),
        Unary(
            "user_revoke_role",
            lambda o, r: o.user_revoke_role(r),
            rpc.AuthUserRevokeRoleRequest,
            None,
            True,
        ),
        Unary("role_add", lambda o, r: o.role_add(r), rpc.AuthRoleAddRequest, None, True),
        Unary("role_get", lambda o, r: o.role_get(r), rpc.AuthRoleGetRequest, None, True),
        Unary("role_list", lambda o, r: o.role_list(r), rpc.AuthRoleListRequest, None, True),
        Unary("role_delete", lambda o, r: o.role_delete(r), rpc.AuthRoleDeleteRequest, None, True),
        Unary(
            "role_grant_permission",
            lambda o, r: o.role_grant_permission(r),
            rpc.AuthRoleGrantPermissionRequest,
            None,
            True,
        ),
        Unary(
            "role_revoke_permission",
            lambda o, r: o.role_revoke_permission(r),
            rpc.AuthRoleRevokePermissionRequest,
            None,
            True,
        ),
    )
}


def _refused_to_learner(ops: ClientOps, spec: Unary, req: Any) -> bool:
    """etcd's interceptor: a learner serves only status and serializable ranges."""
    if not ops.is_learner():
        return False
    return not (spec.method == "status" or (spec.method == "range" and req.serializable))


async def call(
    ops: ClientOps,
    spec: Unary,
    req: Any,
    wire_size: int,
    require_leader: bool = False,
    *,
    token: str | None = None,
    cert_user: str | None = None,
) -> Any:
    """Check ``req`` as etcd does, run it on the member, and return etcd's response.

    ``wire_size`` is the size of the request as it arrived (JSON bytes or protobuf bytes):
    below half a limit no exact protobuf size need be computed. ``require_leader``: the gRPC
    call carried the ``hasleader`` metadata (refused while the member knows no leader).
    ``token``: the caller's auth token, if the request came with one; ``cert_user``: the
    common name of its verified client certificate (gRPC).
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
    if spec.access is Access.NONE or (token is None and not ops.auth.enabled):
        resp = await spec.run(ops, req)  # (auth off, no token: nobody to check)
    else:
        resp = await _run_as_caller(ops, spec, req, token, cert_user)
    if spec.fixup is not None:
        spec.fixup(resp)
    return resp


# etcd 3.4's maintenance server returns the auth package's errors unconverted: gRPC Unknown,
# with auth/store.go's own texts
_AUTH_PACKAGE_TEXT = {
    errors.ErrPermissionDenied.message: "auth: permission denied",
    errors.ErrUserEmpty.message: "auth: user name is empty",
    errors.ErrUserNotFound.message: "auth: user not found",
    errors.ErrInvalidAuthToken.message: "auth: invalid auth token",
}


async def caller_of(ops: ClientOps, token: str | None, cert_user: str | None) -> AuthInfo | None:
    """etcd's AuthInfoFromCtx: the user of ``token``; without one, the common name of a
    verified client certificate (gRPC only: etcd ignores it through the gateway); else None.
    Raises "invalid auth token"."""
    ai = await ops.auth_info(token)
    if ai is None and cert_user:
        ai = AuthInfo(cert_user, ops.auth.revision)
    return ai


async def admin_refusal(ops: ClientOps, token: str | None, cert_user: str | None = None) -> None:
    """Root only, for the maintenance calls (hash, hash-kv, defragment, snapshot): raises
    the refusal as etcd's authMaintenanceServer words it."""
    try:
        ai = await caller_of(ops, token, cert_user)
        ops.auth.is_admin_permitted(ai if ai is not None else NO_USER)
    except EtcdError as e:
        text = _AUTH_PACKAGE_TEXT.get(e.message)
        if text is None:
            raise
        raise EtcdError(text, errors.GrpcCode.UNKNOWN) from None


async def _run_as_caller(
    ops: ClientOps, spec: Unary, req: Any, token: str | None, cert_user: str | None
) -> Any:
    if spec.access is Access.MAINTENANCE:  # (served here, never proposed)
        await admin_refusal(ops, token, cert_user)
        return await spec.run(ops, req)
    ai = await caller_of(ops, token, cert_user)
    auth = ops.auth
    who = ai if ai is not None else NO_USER
    read = spec.read_check is not None and (spec.method != "txn" or is_txn_readonly(req))
    if spec.access is Access.ADMIN:
        auth.is_admin_permitted(who)
    elif read:
        assert spec.read_check is not None
        spec.read_check(auth, who, req)
    # with auth off and no token there is nobody to check: propose as before (no header)
    reset = CALLER.set(ai if ai is not None or not auth.enabled else NO_USER)
    try:
        resp = await spec.run(ops, req)
    finally:
        CALLER.reset(reset)
    if read and ai is not None and ai.revision != auth.revision:
        raise errors.ErrAuthOldRevision  # the permissions changed while it was served
    return resp


_GO_CODE_NAMES = {
    errors.ErrInvalidAuthToken: "Unauthenticated",
    errors.ErrAuthOldRevision: "InvalidArgument",
    errors.ErrUserEmpty: "InvalidArgument",
}


async def watch_refusal(
    ops: ClientOps, token: str | None, c: rpc.WatchCreateRequest, cert_user: str | None = None
) -> str | None:
    """The cancel reason etcd refuses a watch create with (read permission on its range), or
    None when it may be created. etcd words it as gRPC's error text of the refusal, and any
    refusal but these three as "permission denied"."""
    try:
        ai = await caller_of(ops, token, cert_user)
        ops.auth.is_range_permitted(ai if ai is not None else NO_USER, c.key, c.range_end)
    except EtcdError as e:
        known = next((k for k in _GO_CODE_NAMES if k.message == e.message), None)
        err = known if known is not None else errors.ErrPermissionDenied
        code = _GO_CODE_NAMES.get(err, "PermissionDenied")
        return f"rpc error: code = {code} desc = {err.message}"
    return None


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
