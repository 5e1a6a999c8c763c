"""etcdserverpb: the request and response messages of etcd v3.4's rpc.proto.

Field names, kinds and declaration order follow ../shared/reference/rpc.proto (proto field
number order). ``InternalRaftRequest`` is raftkv's own envelope for what goes through the Raft
log (etcd's raft_internal.proto, reduced to what raftkv proposes).
"""

from __future__ import annotations

from enum import IntEnum

from raftkv.pb.auth import Permission, UserAddOptions
from raftkv.pb.fields import (
    Kind,
    bool_,
    bytes_,
    enum_,
    i64,
    message,
    msg,
    rep,
    str_,
    u32,
    u64,
)
from raftkv.pb.kv import Event, KeyValue

__all__ = [
    "AlarmAction",
    "AlarmMember",
    "AlarmRequest",
    "AlarmResponse",
    "AlarmType",
    "AuthDisableRequest",
    "AuthDisableResponse",
    "AuthEnableRequest",
    "AuthEnableResponse",
    "AuthRoleAddRequest",
    "AuthRoleAddResponse",
    "AuthRoleDeleteRequest",
    "AuthRoleDeleteResponse",
    "AuthRoleGetRequest",
    "AuthRoleGetResponse",
    "AuthRoleGrantPermissionRequest",
    "AuthRoleGrantPermissionResponse",
    "AuthRoleListRequest",
    "AuthRoleListResponse",
    "AuthRoleRevokePermissionRequest",
    "AuthRoleRevokePermissionResponse",
    "AuthUserAddRequest",
    "AuthUserAddResponse",
    "AuthUserChangePasswordRequest",
    "AuthUserChangePasswordResponse",
    "AuthUserDeleteRequest",
    "AuthUserDeleteResponse",
    "AuthUserGetRequest",
    "AuthUserGetResponse",
    "AuthUserGrantRoleRequest",
    "AuthUserGrantRoleResponse",
    "AuthUserListRequest",
    "AuthUserListResponse",
    "AuthUserRevokeRoleRequest",
    "AuthUserRevokeRoleResponse",
    "AuthenticateRequest",
    "AuthenticateResponse",
    "CompactionRequest",
    "CompactionResponse",
    "Compare",
    "CompareResult",
    "CompareTarget",
    "DefragmentRequest",
    "DefragmentResponse",
    "DeleteRangeRequest",
    "DeleteRangeResponse",
    "FilterType",
    "HashKVRequest",
    "HashKVResponse",
    "HashRequest",
    "HashResponse",
    "InternalAuthenticateRequest",
    "InternalRaftRequest",
    "LeaseCheckpoint",
    "LeaseCheckpointRequest",
    "LeaseCheckpointResponse",
    "LeaseGrantRequest",
    "LeaseGrantResponse",
    "LeaseKeepAliveRequest",
    "LeaseKeepAliveResponse",
    "LeaseLeasesRequest",
    "LeaseLeasesResponse",
    "LeaseRevokeRequest",
    "LeaseRevokeResponse",
    "LeaseStatus",
    "LeaseTimeToLiveRequest",
    "LeaseTimeToLiveResponse",
    "Member",
    "MemberAddRequest",
    "MemberAddResponse",
    "MemberListRequest",
    "MemberListResponse",
    "MemberPromoteRequest",
    "MemberPromoteResponse",
    "MemberRemoveRequest",
    "MemberRemoveResponse",
    "MemberUpdateRequest",
    "MemberUpdateResponse",
    "MoveLeaderRequest",
    "MoveLeaderResponse",
    "PutRequest",
    "PutResponse",
    "RangeRequest",
    "RangeResponse",
    "RequestHeader",
    "RequestOp",
    "ResponseHeader",
    "ResponseOp",
    "SnapshotRequest",
    "SnapshotResponse",
    "SortOrder",
    "SortTarget",
    "StatusRequest",
    "StatusResponse",
    "TxnRequest",
    "TxnResponse",
    "WatchCancelRequest",
    "WatchCreateRequest",
    "WatchProgressRequest",
    "WatchRequest",
    "WatchResponse",
]


# --- enums (numbers are proto's) ---------------------------------------------------------------


class SortOrder(IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(IntEnum):
    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class FilterType(IntEnum):
    NOPUT = 0
    NODELETE = 1


class AlarmType(IntEnum):
    NONE = 0
    NOSPACE = 1
    CORRUPT = 2


class AlarmAction(IntEnum):
    GET = 0
    ACTIVATE = 1
    DEACTIVATE = 2


# --- KV ----------------------------------------------------------------------------------------


@message
class ResponseHeader:
    cluster_id: int = u64()
    member_id: int = u64()
    revision: int = i64()
    raft_term: int = u64()


@message
class RangeRequest:
    key: bytes = bytes_()
    range_end: bytes = bytes_()
    limit: int = i64()
    revision: int = i64()
    sort_order: SortOrder = enum_(SortOrder)
    sort_target: SortTarget = enum_(SortTarget)
    serializable: bool = bool_()
    keys_only: bool = bool_()
    count_only: bool = bool_()
    min_mod_revision: int = i64()
    max_mod_revision: int = i64()
    min_create_revision: int = i64()
    max_create_revision: int = i64()


@message
class RangeResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    kvs: list[KeyValue] = rep(Kind.MESSAGE, "KeyValue")
    more: bool = bool_()
    count: int = i64()


@message
class PutRequest:
    key: bytes = bytes_()
    value: bytes = bytes_()
    lease: int = i64()
    prev_kv: bool = bool_()
    ignore_value: bool = bool_()
    ignore_lease: bool = bool_()


@message
class PutResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    prev_kv: KeyValue | None = msg("KeyValue")


@message
class DeleteRangeRequest:
    key: bytes = bytes_()
    range_end: bytes = bytes_()
    prev_kv: bool = bool_()


@message
class DeleteRangeResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    deleted: int = i64()
    prev_kvs: list[KeyValue] = rep(Kind.MESSAGE, "KeyValue")


@message
class RequestOp:
    """oneof request: exactly one of the fields is set."""

    request_range: RangeRequest | None = msg("RangeRequest")
    request_put: PutRequest | None = msg("PutRequest")
    request_delete_range: DeleteRangeRequest | None = msg("DeleteRangeRequest")
    request_txn: TxnRequest | None = msg("TxnRequest")


@message
class ResponseOp:
    """oneof response: exactly one of the fields is set."""

    response_range: RangeResponse | None = msg("RangeResponse")
    response_put: PutResponse | None = msg("PutResponse")
    response_delete_range: DeleteRangeResponse | None = msg("DeleteRangeResponse")
    response_txn: TxnResponse | None = msg("TxnResponse")


@message
class Compare:
    """``target`` says which of the target_union fields (version ... lease) is compared."""

    result: CompareResult = enum_(CompareResult)
    target: CompareTarget = enum_(CompareTarget)
    key: bytes = bytes_()
    version: int = i64()
    create_revision: int = i64()
    mod_revision: int = i64()
    value: bytes = bytes_()
    lease: int = i64()
    range_end: bytes = bytes_()


@message
class TxnRequest:
    compare: list[Compare] = rep(Kind.MESSAGE, "Compare")
    success: list[RequestOp] = rep(Kind.MESSAGE, "RequestOp")
    failure: list[RequestOp] = rep(Kind.MESSAGE, "RequestOp")


@message
class TxnResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    succeeded: bool = bool_()
    responses: list[ResponseOp] = rep(Kind.MESSAGE, "ResponseOp")


@message
class CompactionRequest:
    revision: int = i64()
    physical: bool = bool_()


@message
class CompactionResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


# --- maintenance -------------------------------------------------------------------------------


@message
class HashRequest:
    pass


@message
class HashResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    hash: int = u32()


@message
class HashKVRequest:
    revision: int = i64()


@message
class HashKVResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    hash: int = u32()
    compact_revision: int = i64()


@message
class SnapshotRequest:
    pass


@message
class SnapshotResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    remaining_bytes: int = u64()
    blob: bytes = bytes_()


@message
class DefragmentRequest:
    pass


@message
class DefragmentResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class MoveLeaderRequest:
    targetID: int = u64()


@message
class MoveLeaderResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AlarmRequest:
    action: AlarmAction = enum_(AlarmAction)
    memberID: int = u64()
    alarm: AlarmType = enum_(AlarmType)


@message
class AlarmMember:
    memberID: int = u64()
    alarm: AlarmType = enum_(AlarmType)


@message
class AlarmResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    alarms: list[AlarmMember] = rep(Kind.MESSAGE, "AlarmMember")


@message
class StatusRequest:
    pass


@message
class StatusResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    version: str = str_()
    dbSize: int = i64()
    leader: int = u64()
    raftIndex: int = u64()
    raftTerm: int = u64()
    raftAppliedIndex: int = u64()
    errors: list[str] = rep(Kind.STRING)
    dbSizeInUse: int = i64()
    isLearner: bool = bool_()


# --- watch -------------------------------------------------------------------------------------


@message
class WatchCreateRequest:
    key: bytes = bytes_()
    range_end: bytes = bytes_()
    start_revision: int = i64()
    progress_notify: bool = bool_()
    filters: list[FilterType] = rep(Kind.ENUM, FilterType)
    prev_kv: bool = bool_()
    watch_id: int = i64()
    fragment: bool = bool_()


@message
class WatchCancelRequest:
    watch_id: int = i64()


@message
class WatchProgressRequest:
    pass


@message
class WatchRequest:
    """oneof request_union."""

    create_request: WatchCreateRequest | None = msg("WatchCreateRequest")
    cancel_request: WatchCancelRequest | None = msg("WatchCancelRequest")
    progress_request: WatchProgressRequest | None = msg("WatchProgressRequest")


@message
class WatchResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    watch_id: int = i64()
    created: bool = bool_()
    canceled: bool = bool_()
    compact_revision: int = i64()
    cancel_reason: str = str_()
    fragment: bool = bool_()
    events: list[Event] = rep(Kind.MESSAGE, "Event")


# --- lease -------------------------------------------------------------------------------------


@message
class LeaseGrantRequest:
    TTL: int = i64()
    ID: int = i64()


@message
class LeaseGrantResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    ID: int = i64()
    TTL: int = i64()
    error: str = str_()


@message
class LeaseRevokeRequest:
    ID: int = i64()


@message
class LeaseRevokeResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class LeaseCheckpoint:
    ID: int = i64()
    remaining_TTL: int = i64()


@message
class LeaseCheckpointRequest:
    checkpoints: list[LeaseCheckpoint] = rep(Kind.MESSAGE, "LeaseCheckpoint")


@message
class LeaseCheckpointResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class LeaseKeepAliveRequest:
    ID: int = i64()


@message
class LeaseKeepAliveResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    ID: int = i64()
    TTL: int = i64()


@message
class LeaseTimeToLiveRequest:
    ID: int = i64()
    keys: bool = bool_()


@message
class LeaseTimeToLiveResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    ID: int = i64()
    TTL: int = i64()
    grantedTTL: int = i64()
    keys: list[bytes] = rep(Kind.BYTES)


@message
class LeaseLeasesRequest:
    pass


@message
class LeaseStatus:
    ID: int = i64()


@message
class LeaseLeasesResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    leases: list[LeaseStatus] = rep(Kind.MESSAGE, "LeaseStatus")


# --- cluster -----------------------------------------------------------------------------------


@message
class Member:
    ID: int = u64()
    name: str = str_()
    peerURLs: list[str] = rep(Kind.STRING)
    clientURLs: list[str] = rep(Kind.STRING)
    isLearner: bool = bool_()


@message
class MemberAddRequest:
    peerURLs: list[str] = rep(Kind.STRING)
    isLearner: bool = bool_()


@message
class MemberAddResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    member: Member | None = msg("Member")
    members: list[Member] = rep(Kind.MESSAGE, "Member")


@message
class MemberRemoveRequest:
    ID: int = u64()


@message
class MemberRemoveResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    members: list[Member] = rep(Kind.MESSAGE, "Member")


@message
class MemberUpdateRequest:
    ID: int = u64()
    peerURLs: list[str] = rep(Kind.STRING)


@message
class MemberUpdateResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    members: list[Member] = rep(Kind.MESSAGE, "Member")


@message
class MemberListRequest:
    pass


@message
class MemberListResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    members: list[Member] = rep(Kind.MESSAGE, "Member")


@message
class MemberPromoteRequest:
    ID: int = u64()


@message
class MemberPromoteResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    members: list[Member] = rep(Kind.MESSAGE, "Member")


# --- auth --------------------------------------------------------------------------------------


@message
class AuthEnableRequest:
    pass


@message
class AuthDisableRequest:
    pass


@message
class AuthenticateRequest:
    name: str = str_()
    password: str = str_()


@message
class AuthUserAddRequest:
    """``hashedPassword`` (etcd 3.5's field 4): the member hashes the password before proposing
    it, so the log and the snapshot never hold it in clear; ``password`` is then emptied."""

    name: str = str_()
    password: str = str_()
    options: UserAddOptions | None = msg("UserAddOptions")
    hashedPassword: str = str_()


@message
class AuthUserGetRequest:
    name: str = str_()


@message
class AuthUserDeleteRequest:
    name: str = str_()


@message
class AuthUserChangePasswordRequest:
    """``hashedPassword`` as in AuthUserAddRequest (etcd 3.5's field 3)."""

    name: str = str_()
    password: str = str_()
    hashedPassword: str = str_()


@message
class AuthUserGrantRoleRequest:
    user: str = str_()
    role: str = str_()


@message
class AuthUserRevokeRoleRequest:
    name: str = str_()
    role: str = str_()


@message
class AuthRoleAddRequest:
    name: str = str_()


@message
class AuthRoleGetRequest:
    role: str = str_()


@message
class AuthUserListRequest:
    pass


@message
class AuthRoleListRequest:
    pass


@message
class AuthRoleDeleteRequest:
    role: str = str_()


@message
class AuthRoleGrantPermissionRequest:
    name: str = str_()
    perm: Permission | None = msg("Permission")


@message
class AuthRoleRevokePermissionRequest:
    role: str = str_()
    key: bytes = bytes_()
    range_end: bytes = bytes_()


@message
class AuthEnableResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthDisableResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthenticateResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    token: str = str_()


@message
class AuthUserAddResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthUserGetResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    roles: list[str] = rep(Kind.STRING)


@message
class AuthUserDeleteResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthUserChangePasswordResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthUserGrantRoleResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthUserRevokeRoleResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthRoleAddResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthRoleGetResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    perm: list[Permission] = rep(Kind.MESSAGE, "Permission")


@message
class AuthRoleListResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    roles: list[str] = rep(Kind.STRING)


@message
class AuthUserListResponse:
    header: ResponseHeader | None = msg("ResponseHeader")
    users: list[str] = rep(Kind.STRING)


@message
class AuthRoleDeleteResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthRoleGrantPermissionResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


@message
class AuthRoleRevokePermissionResponse:
    header: ResponseHeader | None = msg("ResponseHeader")


# --- what goes through the Raft log ------------------------------------------------------------


@message
class InternalRaftRequest:
    """A proposal: ``ID`` pairs it with its waiter; exactly one request field is set."""

    ID: int = u64()
    put: PutRequest | None = msg("PutRequest")
    delete_range: DeleteRangeRequest | None = msg("DeleteRangeRequest")
    txn: TxnRequest | None = msg("TxnRequest")
    compaction: CompactionRequest | None = msg("CompactionRequest")
    lease_grant: LeaseGrantRequest | None = msg("LeaseGrantRequest")
    lease_revoke: LeaseRevokeRequest | None = msg("LeaseRevokeRequest")
    lease_checkpoint: LeaseCheckpointRequest | None = msg("LeaseCheckpointRequest")
    alarm: AlarmRequest | None = msg("AlarmRequest")
    member_attributes: Member | None = msg("Member")
    # the caller of a client request (etcd's RequestHeader); None for the member's own
    # proposals (lease expiry, alarms, attributes), which etcd makes as root
    header: RequestHeader | None = msg("RequestHeader")
    authenticate: InternalAuthenticateRequest | None = msg("InternalAuthenticateRequest")
    auth_enable: AuthEnableRequest | None = msg("AuthEnableRequest")
    auth_disable: AuthDisableRequest | None = msg("AuthDisableRequest")
    auth_user_add: AuthUserAddRequest | None = msg("AuthUserAddRequest")
    auth_user_delete: AuthUserDeleteRequest | None = msg("AuthUserDeleteRequest")
    auth_user_change_password: AuthUserChangePasswordRequest | None = msg(
        "AuthUserChangePasswordRequest"
    )
    auth_user_grant_role: AuthUserGrantRoleRequest | None = msg("AuthUserGrantRoleRequest")
    auth_user_get: AuthUserGetRequest | None = msg("AuthUserGetRequest")
    auth_user_revoke_role: AuthUserRevokeRoleRequest | None = msg("AuthUserRevokeRoleRequest")
    auth_user_list: AuthUserListRequest | None = msg("AuthUserListRequest")
    auth_role_list: AuthRoleListRequest | None = msg("AuthRoleListRequest")
    auth_role_add: AuthRoleAddRequest | None = msg("AuthRoleAddRequest")
    auth_role_delete: AuthRoleDeleteRequest | None = msg("AuthRoleDeleteRequest")
    auth_role_grant_permission: AuthRoleGrantPermissionRequest | None = msg(
        "AuthRoleGrantPermissionRequest"
    )
    auth_role_get: AuthRoleGetRequest | None = msg("AuthRoleGetRequest")
    auth_role_revoke_permission: AuthRoleRevokePermissionRequest | None = msg(
        "AuthRoleRevokePermissionRequest"
    )


@message
class RequestHeader:
    """Who proposed a request: the user of its token and the auth revision the token was
    checked at (0: no token); the applier checks permissions with these."""

    ID: int = u64()
    username: str = str_()
    auth_revision: int = u64()


@message
class InternalAuthenticateRequest:
    """Authenticate as proposed: the password was checked before proposing and is not in the
    log; ``simple_token`` is the proposer's random prefix (every member issues the same
    token, ``<prefix>.<entry index>``)."""

    name: str = str_()
    password: str = str_()
    simple_token: str = str_()
