"""The auth store: users, roles, their key-range permissions, and whether auth is enabled
(etcd 3.4's auth/store.go and etcdserver/apply_auth.go).

State lives in the backend's ``auth`` (``authEnabled``: 1 byte; ``authRevision``: 8-byte
big-endian), ``authUsers`` (name -> User) and ``authRoles`` (name -> Role) buckets, so it is
persisted with the member's other state, part of every snapshot's db, and changed only by
applied Raft entries (``apply``). Every change bumps the auth revision; a store that never
had one starts at revision 1, as etcd's does.

Permission checks (``is_*_permitted``, ``check_request``) take the caller's ``AuthInfo``: its
revision is the auth revision the caller's token was judged at. A caller whose revision is
older than the store's is refused ("revision of auth store is old"): a permission revoked
while a request was in flight wins. ``None`` is the member itself (lease expiry, alarms,
attributes), which etcd runs as root. With auth disabled every check passes.

Passwords are bcrypt hashes made before proposing (``hash_password``, in a thread); neither a
password nor a hash is ever logged. Nested txns are checked op by op like the outer one (as
etcd 3.5 does; 3.4.23 left the ops of a nested txn unchecked).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import bcrypt
import structlog

from raftkv import errors
from raftkv.auth.perms import UserPerms, merge
from raftkv.auth.tokens import AuthInfo, TokenProvider
from raftkv.pb import decode, encode, rpc
from raftkv.pb.auth import Permission, PermissionType, Role, User, UserAddOptions

__all__ = [
    "AUTH_BUCKET",
    "AUTH_REQUEST_FIELDS",
    "DEFAULT_BCRYPT_COST",
    "AuthStore",
    "Buckets",
    "hash_password",
    "is_auth_request",
    "password_matches",
    "valid_bcrypt_cost",
]

log = structlog.get_logger("raftkv.auth")

AUTH_BUCKET = b"auth"
USERS_BUCKET = b"authUsers"
ROLES_BUCKET = b"authRoles"
_ENABLED_KEY = b"authEnabled"
_REVISION_KEY = b"authRevision"
ROOT = "root"
DEFAULT_BCRYPT_COST = 10
MIN_BCRYPT_COST, MAX_BCRYPT_COST = 4, 31

# InternalRaftRequest fields the auth store applies (etcd's Auth* requests)
AUTH_REQUEST_FIELDS = (
    "authenticate",
    "auth_enable",
    "auth_disable",
    "auth_user_add",
    "auth_user_delete",
    "auth_user_change_password",
    "auth_user_grant_role",
    "auth_user_get",
    "auth_user_revoke_role",
    "auth_user_list",
    "auth_role_list",
    "auth_role_add",
    "auth_role_delete",
    "auth_role_grant_permission",
    "auth_role_get",
    "auth_role_revoke_permission",
)
# those only root may apply (etcd's needAdminPermission; get has its own rule)
_ADMIN_ONLY = frozenset(AUTH_REQUEST_FIELDS) - {"authenticate", "auth_user_get", "auth_role_get"}


class Buckets(Protocol):
    """What the store needs of the backend."""

    def create_bucket(self, name: bytes) -> None: ...
    def get(self, bucket: bytes, key: bytes) -> bytes | None: ...
    def put(self, bucket: bytes, key: bytes, value: bytes) -> None: ...
    def delete(self, bucket: bytes, key: bytes) -> None: ...
    def range(
        self, bucket: bytes, start: bytes, end: bytes | None = None
    ) -> list[tuple[bytes, bytes]]: ...


def is_auth_request(r: rpc.InternalRaftRequest) -> bool:
    return any(getattr(r, f) is not None for f in AUTH_REQUEST_FIELDS)


def hash_password(password: str, cost: int) -> str:
    """bcrypt of ``password`` (slow by design: call it in a thread)."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


def password_matches(password: str, hashed: bytes) -> bool:
    """bcrypt's CompareHashAndPassword (slow by design: call it in a thread)."""
    try:
        return bcrypt.checkpw(password.encode(), hashed)
    except ValueError:
        return False


def valid_bcrypt_cost(cost: int) -> int:
    """etcd falls back to bcrypt's default for a cost outside [4, 31]."""
    if cost < MIN_BCRYPT_COST or cost > MAX_BCRYPT_COST:
        log.warning("invalid_bcrypt_cost", given=cost, using=DEFAULT_BCRYPT_COST)
        return DEFAULT_BCRYPT_COST
    return cost


class AuthStore:
    def __init__(self, backend: Buckets, tokens: TokenProvider, bcrypt_cost: int) -> None:
        self._be = backend
        self.tokens = tokens
        self.bcrypt_cost = valid_bcrypt_cost(bcrypt_cost)
        self.enabled = False
        self.revision = 0
        self._perms: dict[str, UserPerms] = {}
        self._roles_of: dict[str, frozenset[str]] = {}
        self.load()

    # --- state ----------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the state from the backend (at start, and after a snapshot's db was installed)."""
        be = self._be
        for b in (AUTH_BUCKET, USERS_BUCKET, ROLES_BUCKET):
            be.create_bucket(b)
        was_enabled = self.enabled
        self.enabled = be.get(AUTH_BUCKET, _ENABLED_KEY) == b"\x01"
        raw = be.get(AUTH_BUCKET, _REVISION_KEY)
        self.revision = struct.unpack(">Q", raw)[0] if raw and len(raw) == 8 else 0
        if self.revision == 0:
            self._commit_revision()
        if self.enabled and not was_enabled:
            self.tokens.enable()
        elif was_enabled and not self.enabled:
            self.tokens.disable()
        self._refresh_perms()

    def _commit_revision(self) -> None:
        self.revision += 1
        self._be.put(AUTH_BUCKET, _REVISION_KEY, struct.pack(">Q", self.revision))

    def _changed(self) -> None:
        self._commit_revision()
        self._refresh_perms()

    def _refresh_perms(self) -> None:
        # every change rebuilds the whole cache, as etcd's refreshRangePermCache does; the
        # checks then read no user from the backend
        roles = {r.name.decode(): r for r in self._roles()}
        users = self._users()
        self._roles_of = {u.name.decode(): frozenset(u.roles) for u in users}
        self._perms = {
            u.name.decode(): merge(
                p for name in u.roles if name in roles for p in roles[name].keyPermission
            )
            for u in users
        }

    def user(self, name: str) -> User | None:
        raw = self._be.get(USERS_BUCKET, name.encode())
        return None if raw is None else decode(User, raw)

    def role(self, name: str) -> Role | None:
        raw = self._be.get(ROLES_BUCKET, name.encode())
        return None if raw is None else decode(Role, raw)

    def _users(self) -> list[User]:
        return [decode(User, v) for _k, v in self._be.range(USERS_BUCKET, b"", None)]

    def _roles(self) -> list[Role]:
        # etcd's getAllRoles ranges ["\x00", "\xff")
        return [decode(Role, v) for _k, v in self._be.range(ROLES_BUCKET, b"\x00", b"\xff")]

    def _put_user(self, u: User) -> None:
        self._be.put(USERS_BUCKET, u.name, encode(u))

    def _put_role(self, r: Role) -> None:
        self._be.put(ROLES_BUCKET, r.name, encode(r))

    def has_role(self, user: str, role: str) -> bool:
        return role in self._roles_of.get(user, ())

    # --- before proposing (the member's API side) ----------------------------------------------

    def password_hash(self, name: str) -> tuple[bytes, int]:
        """(the user's hash, the auth revision) for checking a password (CheckPassword's
        lookup half; the caller compares in a thread, then proposes Authenticate)."""
        if not self.enabled:
            raise errors.ErrAuthNotEnabled
        u = self.user(name)
        if u is None:
            raise errors.ErrAuthFailed
        if u.options is not None and u.options.no_password:
            raise errors.ErrNoPasswordUser
        return u.password, self.revision

    async def auth_info(self, token: str | None) -> AuthInfo | None:
        """The caller of ``token`` (None: no token given). Raises "invalid auth token"."""
        if token is None:
            return None
        ai = await self.tokens.info(token, self.revision)
        if ai is None:
            log.warning("invalid_auth_token")
            raise errors.ErrInvalidAuthToken
        return ai

    # --- permission checks ---------------------------------------------------------------------

    def _is_op_permitted(
        self, ai: AuthInfo | None, key: bytes, range_end: bytes, kind: PermissionType
    ) -> None:
        if not self.enabled or ai is None:
            return
        if ai.revision == 0:
            raise errors.ErrUserEmpty
        if ai.revision < self.revision:
            raise errors.ErrAuthOldRevision
        roles = self._roles_of.get(ai.username)
        if roles is None:
            raise errors.ErrPermissionDenied
        if ROOT in roles:
            return
        perms = self._perms.get(ai.username)
        if perms is None or not perms.permits(key, range_end, kind):
            raise errors.ErrPermissionDenied

    def is_range_permitted(self, ai: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self._is_op_permitted(ai, key, range_end, PermissionType.READ)

    def is_put_permitted(self, ai: AuthInfo | None, key: bytes) -> None:
        self._is_op_permitted(ai, key, b"", PermissionType.WRITE)

    def is_delete_range_permitted(self, ai: AuthInfo | None, key: bytes, range_end: bytes) -> None:
        self._is_op_permitted(ai, key, range_end, PermissionType.WRITE)

    def is_admin_permitted(self, ai: AuthInfo | None) -> None:
        """Root only (etcd's IsAdminPermitted: no revision check)."""
        if not self.enabled:
            return
        if ai is None:
            return  # the member itself
        if not ai.username:
            raise errors.ErrUserEmpty
        roles = self._roles_of.get(ai.username)
        if roles is None:
            raise errors.ErrUserNotFound
        if ROOT not in roles:
            raise errors.ErrPermissionDenied

    def check_txn(self, ai: AuthInfo | None, t: rpc.TxnRequest) -> None:
        """etcd's checkTxnAuth: read on every compare, then each op of both branches."""
        for c in t.compare:
            self.is_range_permitted(ai, c.key, c.range_end)
        for op in (*t.success, *t.failure):
            if op.request_range is not None:
                r = op.request_range
                self.is_range_permitted(ai, r.key, r.range_end)
            elif op.request_put is not None:
                self.is_put_permitted(ai, op.request_put.key)
            elif op.request_delete_range is not None:
                d = op.request_delete_range
                if d.prev_kv:
                    self.is_range_permitted(ai, d.key, d.range_end)
                self.is_delete_range_permitted(ai, d.key, d.range_end)
            elif op.request_txn is not None:
                self.check_txn(ai, op.request_txn)

    def check_request(
        self,
        ai: AuthInfo | None,
        r: rpc.InternalRaftRequest,
        lease_keys: Callable[[int], Iterable[bytes]],
    ) -> None:
        """What etcd's authApplierV3 checks before applying ``r`` (raises EtcdError)."""
        if not self.enabled or ai is None:
            return
        if any(getattr(r, f) is not None for f in _ADMIN_ONLY):
            self.is_admin_permitted(ai)
        elif r.put is not None:
            p = r.put
            self.is_put_permitted(ai, p.key)
            self._check_lease_puts(ai, p.lease, lease_keys)
            if p.prev_kv:
                self.is_range_permitted(ai, p.key, b"")
        elif r.delete_range is not None:
            d = r.delete_range
            self.is_delete_range_permitted(ai, d.key, d.range_end)
            if d.prev_kv:
                self.is_range_permitted(ai, d.key, d.range_end)
        elif r.txn is not None:
            self.check_txn(ai, r.txn)
        elif r.lease_revoke is not None:
            self._check_lease_puts(ai, r.lease_revoke.ID, lease_keys)
        elif r.auth_user_get is not None:
            try:
                self.is_admin_permitted(ai)
            except errors.EtcdError:
                if r.auth_user_get.name != ai.username:
                    raise
        elif r.auth_role_get is not None:
            try:
                self.is_admin_permitted(ai)
            except errors.EtcdError:
                if not self.has_role(ai.username, r.auth_role_get.role):
                    raise

    def _check_lease_puts(
        self, ai: AuthInfo, lease_id: int, lease_keys: Callable[[int], Iterable[bytes]]
    ) -> None:
        # a lease whose keys the caller may not write can be neither revoked nor attached to
        if lease_id:
            for k in lease_keys(lease_id):
                self.is_put_permitted(ai, k)

    # --- applying ------------------------------------------------------------------------------

    def apply(self, r: rpc.InternalRaftRequest, index: int) -> Any:
        """Apply the auth request in ``r`` (``is_auth_request``), the entry at ``index``;
        the response without its header, or raise EtcdError."""
        if r.authenticate is not None:
            return self._authenticate(r.authenticate, index)
        if r.auth_enable is not None:
            return self._enable()
        if r.auth_disable is not None:
            return self._disable()
        if r.auth_user_add is not None:
            return self._user_add(r.auth_user_add)
        if r.auth_user_delete is not None:
            return self._user_delete(r.auth_user_delete)
        if r.auth_user_change_password is not None:
            return self._user_change_password(r.auth_user_change_password)
        if r.auth_user_grant_role is not None:
            return self._user_grant_role(r.auth_user_grant_role)
        if r.auth_user_get is not None:
            u = self.user(r.auth_user_get.name)
            if u is None:
                raise errors.ErrUserNotFound
            return rpc.AuthUserGetResponse(roles=list(u.roles))
        if r.auth_user_revoke_role is not None:
            return self._user_revoke_role(r.auth_user_revoke_role)
        if r.auth_user_list is not None:
            return rpc.AuthUserListResponse(users=[u.name.decode() for u in self._users()])
        if r.auth_role_list is not None:
            return rpc.AuthRoleListResponse(roles=[x.name.decode() for x in self._roles()])
        if r.auth_role_add is not None:
            return self._role_add(r.auth_role_add)
        if r.auth_role_delete is not None:
            return self._role_delete(r.auth_role_delete)
        if r.auth_role_grant_permission is not None:
            return self._role_grant_permission(r.auth_role_grant_permission)
        if r.auth_role_get is not None:
            role = self.role(r.auth_role_get.role)
            if role is None:
                raise errors.ErrRoleNotFound
            return rpc.AuthRoleGetResponse(perm=list(role.keyPermission))
        if r.auth_role_revoke_permission is not None:
            return self._role_revoke_permission(r.auth_role_revoke_permission)
        raise ValueError("not an auth request")

    def _authenticate(self, a: rpc.InternalAuthenticateRequest, index: int) -> Any:
        if not self.enabled:
            raise errors.ErrAuthNotEnabled
        u = self.user(a.name)
        if u is None or (u.options is not None and u.options.no_password):
            raise errors.ErrAuthFailed
        token = self.tokens.assign(a.name, self.revision, a.simple_token, index)
        log.debug("authenticated", user=a.name)
        return rpc.AuthenticateResponse(token=token)

    def _enable(self) -> Any:
        if not self.enabled:
            u = self.user(ROOT)
            if u is None:
                raise errors.ErrRootUserNotExist
            if ROOT not in u.roles:
                raise errors.ErrRootRoleNotExist
            self._be.put(AUTH_BUCKET, _ENABLED_KEY, b"\x01")
            self.enabled = True
            self.tokens.enable()
            self._refresh_perms()  # (etcd does not bump the revision here)
            log.info("auth_enabled")
        return rpc.AuthEnableResponse()

    def _disable(self) -> Any:
        if self.enabled:
            self._be.put(AUTH_BUCKET, _ENABLED_KEY, b"\x00")
            self._commit_revision()
            self.enabled = False
            self.tokens.disable()
            log.info("auth_disabled")
        return rpc.AuthDisableResponse()

    def _user_add(self, r: rpc.AuthUserAddRequest) -> Any:
        if not r.name:
            raise errors.ErrUserEmpty
        if self.user(r.name) is not None:
            raise errors.ErrUserAlreadyExist
        options = r.options if r.options is not None else UserAddOptions()
        hashed = b"" if options.no_password else r.hashedPassword.encode()
        self._put_user(User(name=r.name.encode(), password=hashed, options=options))
        self._changed()
        log.info("user_added", user=r.name)
        return rpc.AuthUserAddResponse()

    def _user_delete(self, r: rpc.AuthUserDeleteRequest) -> Any:
        if self.enabled and r.name == ROOT:
            raise errors.ErrInvalidAuthMgmt
        if self.user(r.name) is None:
            raise errors.ErrUserNotFound
        self._be.delete(USERS_BUCKET, r.name.encode())
        self._changed()
        self.tokens.invalidate_user(r.name)
        log.info("user_deleted", user=r.name)
        return rpc.AuthUserDeleteResponse()

    def _user_change_password(self, r: rpc.AuthUserChangePasswordRequest) -> Any:
        u = self.user(r.name)
        if u is None:
            raise errors.ErrUserNotFound
        u.password = r.hashedPassword.encode()
        self._put_user(u)
        self._changed()
        self.tokens.invalidate_user(r.name)
        log.info("user_password_changed", user=r.name)
        return rpc.AuthUserChangePasswordResponse()

    def _user_grant_role(self, r: rpc.AuthUserGrantRoleRequest) -> Any:
        u = self.user(r.user)
        if u is None:
            raise errors.ErrUserNotFound
        if r.role != ROOT and self.role(r.role) is None:
            raise errors.ErrRoleNotFound
        if r.role in u.roles:
            return rpc.AuthUserGrantRoleResponse()
        u.roles = sorted([*u.roles, r.role])
        self._put_user(u)
        self._changed()
        log.info("role_granted_to_user", user=r.user, role=r.role)
        return rpc.AuthUserGrantRoleResponse()

    def _user_revoke_role(self, r: rpc.AuthUserRevokeRoleRequest) -> Any:
        if self.enabled and r.name == ROOT and r.role == ROOT:
            raise errors.ErrInvalidAuthMgmt
        u = self.user(r.name)
        if u is None:
            raise errors.ErrUserNotFound
        if r.role not in u.roles:
            raise errors.ErrRoleNotGranted
        u.roles = [x for x in u.roles if x != r.role]
        self._put_user(u)
        self._changed()
        log.info("role_revoked_from_user", user=r.name, role=r.role)
        return rpc.AuthUserRevokeRoleResponse()

    def _role_add(self, r: rpc.AuthRoleAddRequest) -> Any:
        if not r.name:
            raise errors.ErrRoleEmpty
        if self.role(r.name) is not None:
            raise errors.ErrRoleAlreadyExist
        self._put_role(Role(name=r.name.encode()))
        self._commit_revision()  # (a role without permissions changes no user's: no refresh)
        log.info("role_added", role=r.name)
        return rpc.AuthRoleAddResponse()

    def _role_delete(self, r: rpc.AuthRoleDeleteRequest) -> Any:
        if self.enabled and r.role == ROOT:
            raise errors.ErrInvalidAuthMgmt
        if self.role(r.role) is None:
            raise errors.ErrRoleNotFound
        self._be.delete(ROLES_BUCKET, r.role.encode())
        for u in self._users():
            if r.role in u.roles:
                u.roles = [x for x in u.roles if x != r.role]
                self._put_user(u)
        self._changed()
        log.info("role_deleted", role=r.role)
        return rpc.AuthRoleDeleteResponse()

    def _role_grant_permission(self, r: rpc.AuthRoleGrantPermissionRequest) -> Any:
        role = self.role(r.name)
        if role is None:
            raise errors.ErrRoleNotFound
        p = r.perm if r.perm is not None else Permission()
        perms = role.keyPermission
        # etcd looks only at the first permission whose key is >= the granted one's
        i = next((i for i, have in enumerate(perms) if have.key >= p.key), len(perms))
        if i < len(perms) and perms[i].key == p.key and perms[i].range_end == p.range_end:
            perms[i].permType = p.permType
        else:
            perms.append(Permission(permType=p.permType, key=p.key, range_end=p.range_end))
            perms.sort(key=lambda x: x.key)
        self._put_role(role)
        self._changed()
        log.info("permission_granted", role=r.name)
        return rpc.AuthRoleGrantPermissionResponse()

    def _role_revoke_permission(self, r: rpc.AuthRoleRevokePermissionRequest) -> Any:
        role = self.role(r.role)
        if role is None:
            raise errors.ErrRoleNotFound
        kept = [p for p in role.keyPermission if p.key != r.key or p.range_end != r.range_end]
        if len(kept) == len(role.keyPermission):
            raise errors.ErrPermissionNotGranted
        role.keyPermission = kept
        self._put_role(role)
        self._changed()
        log.info("permission_revoked", role=r.role)
        return rpc.AuthRoleRevokePermissionResponse()
