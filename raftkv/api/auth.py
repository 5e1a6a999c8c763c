"""The ``/v3/auth/*`` routes as etcd 3.4 answers them while authentication is disabled.

raftkv has no users or roles (auth runs disabled), so: ``authenticate`` fails with
``authentication is not enabled``; ``enable`` with ``root user does not exist`` (there is no
root user to enable it with); ``disable`` and the two ``list`` calls succeed with just a header;
lookups of a user or role find none; adding one is refused as unimplemented. Empty names get
etcd's validation errors first, as etcd checks them before anything else.
"""

from __future__ import annotations

from typing import Any

from raftkv.errors import EtcdError, GrpcCode
from raftkv.pb import rpc

__all__ = ["AUTH_ROUTES", "auth_call"]

_NOT_ENABLED = EtcdError("etcdserver: authentication is not enabled", GrpcCode.FAILED_PRECONDITION)
_NO_ROOT = EtcdError("etcdserver: root user does not exist", GrpcCode.FAILED_PRECONDITION)
_USER_EMPTY = EtcdError("etcdserver: user name is empty", GrpcCode.INVALID_ARGUMENT)
_ROLE_EMPTY = EtcdError("etcdserver: role name is empty", GrpcCode.INVALID_ARGUMENT)
_USER_NOT_FOUND = EtcdError("etcdserver: user name not found", GrpcCode.FAILED_PRECONDITION)
_ROLE_NOT_FOUND = EtcdError("etcdserver: role name not found", GrpcCode.FAILED_PRECONDITION)
_UNIMPLEMENTED = EtcdError("raftkv: users and roles are not supported", GrpcCode.UNIMPLEMENTED)

# route -> (string fields of the request, what to answer)
AUTH_ROUTES: dict[str, tuple[tuple[str, ...], Any]] = {
    "/v3/auth/authenticate": (("name", "password"), _NOT_ENABLED),
    "/v3/auth/enable": ((), _NO_ROOT),
    "/v3/auth/disable": ((), "header"),
    "/v3/auth/user/list": ((), "header"),
    "/v3/auth/role/list": ((), "header"),
    "/v3/auth/user/add": (("name", "password"), ("user_add", _USER_EMPTY)),
    "/v3/auth/role/add": (("name",), ("role_add", _ROLE_EMPTY)),
    "/v3/auth/user/get": (("name",), _USER_NOT_FOUND),
    "/v3/auth/user/delete": (("name",), _USER_NOT_FOUND),
    "/v3/auth/user/changepw": (("name", "password"), _USER_NOT_FOUND),
    "/v3/auth/user/grant": (("user", "role"), _USER_NOT_FOUND),
    "/v3/auth/user/revoke": (("name", "role"), _USER_NOT_FOUND),
    "/v3/auth/role/get": (("role",), _ROLE_NOT_FOUND),
    "/v3/auth/role/delete": (("role",), _ROLE_NOT_FOUND),
    "/v3/auth/role/grant": (("name",), _ROLE_NOT_FOUND),
    "/v3/auth/role/revoke": (("role", "key", "range_end"), _ROLE_NOT_FOUND),
}


def check_fields(fields: tuple[str, ...], value: Any) -> dict:
    """jsonpb's type checks for the string fields of an auth request (others are ignored)."""
    from raftkv.api.codec import _dec_str, decode_message

    if value is None:
        return {}
    if not isinstance(value, dict):
        decode_message(rpc.StatusRequest, value)  # raises Go's error for a non-object
    out = {}
    for f in fields:
        v = value.get(f)
        if v is not None:
            out[f] = _dec_str(v)
    return out


async def auth_call(server: Any, route: str, value: Any) -> Any:
    """The response message for an auth route, or raise the EtcdError etcd answers with."""
    fields, answer = AUTH_ROUTES[route]
    got = check_fields(fields, value)
    if answer == "header":
        # etcd fills the header with the current revision: a local count-only read gives it
        r = await server.range(
            rpc.RangeRequest(key=b"\x00", range_end=b"\x00", serializable=True, count_only=True)
        )
        return rpc.CompactionResponse(header=r.header)  # any message of just a header
    if isinstance(answer, tuple):
        _kind, empty_error = answer
        if not got.get("name"):
            raise empty_error
        raise _UNIMPLEMENTED
    raise answer
