"""authpb: users, roles and key-range permissions, as etcd v3.4's auth.proto defines them.

``User`` and ``Role`` are what the auth store keeps in the backend's ``authUsers`` /
``authRoles`` buckets (msgpack wire form of these tables); ``Permission`` also travels in
RoleGrantPermission requests and RoleGet responses.
"""

from __future__ import annotations

from enum import IntEnum

from raftkv.pb.fields import Kind, bool_, bytes_, enum_, message, msg, rep

__all__ = ["Permission", "PermissionType", "Role", "User", "UserAddOptions"]


class PermissionType(IntEnum):
    READ = 0
    WRITE = 1
    READWRITE = 2


@message
class UserAddOptions:
    no_password: bool = bool_()


@message
class User:
    name: bytes = bytes_()
    password: bytes = bytes_()  # the bcrypt hash, never the password
    roles: list[str] = rep(Kind.STRING)
    options: UserAddOptions | None = msg("UserAddOptions")


@message
class Permission:
    permType: PermissionType = enum_(PermissionType)
    key: bytes = bytes_()
    range_end: bytes = bytes_()


@message
class Role:
    name: bytes = bytes_()
    keyPermission: list[Permission] = rep(Kind.MESSAGE, "Permission")
