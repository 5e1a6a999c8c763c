"""etcd's client-visible errors: message, gRPC code, and the gateway's HTTP status.

Every error a client can see is an ``EtcdError`` carrying etcd v3.4's exact message (see
etcdserver/api/v3rpc/rpctypes/error.go) and gRPC code. Lower layers raise these; the API
translates them once, at its boundary, into ``{"error","message","code"}`` with the HTTP status
that grpc-gateway maps the code to. Internal failures are never shown as tracebacks.

Instances below are templates: raise them directly (they carry no per-call state).
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["EtcdError", "GrpcCode", "http_status"]


class GrpcCode(IntEnum):
    OK = 0
    CANCELED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


# grpc-gateway v1's runtime.HTTPStatusFromCode, which etcd 3.4's gateway uses.
_HTTP_STATUS = {
    GrpcCode.OK: 200,
    GrpcCode.CANCELED: 408,
    GrpcCode.UNKNOWN: 500,
    GrpcCode.INVALID_ARGUMENT: 400,
    GrpcCode.DEADLINE_EXCEEDED: 504,
    GrpcCode.NOT_FOUND: 404,
    GrpcCode.ALREADY_EXISTS: 409,
    GrpcCode.PERMISSION_DENIED: 403,
    GrpcCode.RESOURCE_EXHAUSTED: 429,
    GrpcCode.FAILED_PRECONDITION: 412,
    GrpcCode.ABORTED: 409,
    GrpcCode.OUT_OF_RANGE: 400,
    GrpcCode.UNIMPLEMENTED: 501,
    GrpcCode.INTERNAL: 500,
    GrpcCode.UNAVAILABLE: 503,
    GrpcCode.DATA_LOSS: 500,
    GrpcCode.UNAUTHENTICATED: 401,
}


def http_status(code: GrpcCode) -> int:
    return _HTTP_STATUS[code]


class EtcdError(Exception):
    """An error with etcd's exact client-visible message and gRPC code."""

    def __init__(self, message: str, code: GrpcCode) -> None:
        super().__init__(message)
        self.message = message
        self.code = code

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self.code]

    def __repr__(self) -> str:
        return f"EtcdError({self.message!r}, {self.code.name})"


_IA = GrpcCode.INVALID_ARGUMENT
_FP = GrpcCode.FAILED_PRECONDITION
_UN = GrpcCode.UNAVAILABLE

# --- request validation ---
ErrEmptyKey = EtcdError("etcdserver: key is not provided", _IA)
ErrKeyNotFound = EtcdError("etcdserver: key not found", _IA)
ErrValueProvided = EtcdError("etcdserver: value is provided", _IA)
ErrLeaseProvided = EtcdError("etcdserver: lease is provided", _IA)
ErrTooManyOps = EtcdError("etcdserver: too many operations in txn request", _IA)
ErrDuplicateKey = EtcdError("etcdserver: duplicate key given in txn request", _IA)
ErrCompacted = EtcdError(
    "etcdserver: mvcc: required revision has been compacted", GrpcCode.OUT_OF_RANGE
)
ErrFutureRev = EtcdError(
    "etcdserver: mvcc: required revision is a future revision", GrpcCode.OUT_OF_RANGE
)
ErrNoSpace = EtcdError("etcdserver: mvcc: database space exceeded", GrpcCode.RESOURCE_EXHAUSTED)
ErrRequestTooLarge = EtcdError("etcdserver: request is too large", _IA)
ErrTooManyRequests = EtcdError("etcdserver: too many requests", GrpcCode.RESOURCE_EXHAUSTED)

# --- leases ---
ErrLeaseNotFound = EtcdError("etcdserver: requested lease not found", GrpcCode.NOT_FOUND)
ErrLeaseExist = EtcdError("etcdserver: lease already exists", _FP)
ErrLeaseTTLTooLarge = EtcdError("etcdserver: too large lease TTL", GrpcCode.OUT_OF_RANGE)

# --- membership ---
ErrMemberExist = EtcdError("etcdserver: member ID already exist", _FP)
ErrPeerURLExist = EtcdError("etcdserver: Peer URLs already exists", _FP)
ErrMemberNotEnoughStarted = EtcdError(
    "etcdserver: re-configuration failed due to not enough started members", _FP
)
ErrMemberBadURLs = EtcdError("etcdserver: given member URLs are invalid", _IA)
ErrMemberNotFound = EtcdError("etcdserver: member not found", GrpcCode.NOT_FOUND)
ErrMemberNotLearner = EtcdError("etcdserver: can only promote a learner member", _FP)
ErrLearnerNotReady = EtcdError(
    "etcdserver: can only promote a learner member which is in sync with leader", _FP
)
ErrTooManyLearners = EtcdError("etcdserver: too many learner members in cluster", _FP)
ErrNotSupportedForLearner = EtcdError("etcdserver: rpc not supported for learner", _UN)

# --- server state ---
ErrNoLeader = EtcdError("etcdserver: no leader", _UN)
ErrNotLeader = EtcdError("etcdserver: not leader", _FP)  # rpctypes.ErrGRPCNotLeader
ErrLeaderChanged = EtcdError("etcdserver: leader changed", _UN)
ErrNotCapable = EtcdError("etcdserver: not capable", _UN)
ErrStopped = EtcdError("etcdserver: server stopped", _UN)
ErrTimeout = EtcdError("etcdserver: request timed out", _UN)
ErrTimeoutDueToLeaderFail = EtcdError(
    "etcdserver: request timed out, possibly due to previous leader failure", _UN
)
ErrTimeoutDueToConnectionLost = EtcdError(
    "etcdserver: request timed out, possibly due to connection lost", _UN
)
ErrUnhealthy = EtcdError("etcdserver: unhealthy cluster", _UN)
ErrCorrupt = EtcdError("etcdserver: corrupt cluster", GrpcCode.DATA_LOSS)
ErrBadLeaderTransferee = EtcdError("etcdserver: bad leader transferee", _FP)
ErrTimeoutLeaderTransfer = EtcdError(  # not in v3rpc's error map: Unknown
    "etcdserver: request timed out, leader transfer took too long", GrpcCode.UNKNOWN
)
ErrContextDeadline = EtcdError("context deadline exceeded", GrpcCode.UNKNOWN)

# --- auth (rpctypes' ErrGRPC* of auth/store.go's errors) ---
ErrRootUserNotExist = EtcdError("etcdserver: root user does not exist", _FP)
ErrRootRoleNotExist = EtcdError("etcdserver: root user does not have root role", _FP)
ErrUserAlreadyExist = EtcdError("etcdserver: user name already exists", _FP)
ErrUserEmpty = EtcdError("etcdserver: user name is empty", _IA)
ErrUserNotFound = EtcdError("etcdserver: user name not found", _FP)
ErrRoleAlreadyExist = EtcdError("etcdserver: role name already exists", _FP)
ErrRoleNotFound = EtcdError("etcdserver: role name not found", _FP)
ErrRoleEmpty = EtcdError("etcdserver: role name is empty", _IA)
ErrAuthFailed = EtcdError("etcdserver: authentication failed, invalid user ID or password", _IA)
ErrPermissionDenied = EtcdError("etcdserver: permission denied", GrpcCode.PERMISSION_DENIED)
ErrRoleNotGranted = EtcdError("etcdserver: role is not granted to the user", _FP)
ErrPermissionNotGranted = EtcdError("etcdserver: permission is not granted to the role", _FP)
ErrAuthNotEnabled = EtcdError("etcdserver: authentication is not enabled", _FP)
ErrInvalidAuthToken = EtcdError("etcdserver: invalid auth token", GrpcCode.UNAUTHENTICATED)
ErrInvalidAuthMgmt = EtcdError("etcdserver: invalid auth management", _IA)
ErrAuthOldRevision = EtcdError("etcdserver: revision of auth store is old", _IA)
# not in v3rpc's error map: etcd answers these as Unknown with the auth package's own text
ErrNoPasswordUser = EtcdError(
    "auth: authentication failed, password was given for no password user", GrpcCode.UNKNOWN
)
ErrVerifyOnly = EtcdError("auth: token signing attempted with verify-only key", GrpcCode.UNKNOWN)
