"""raftkvctl's ``user``, ``role`` and ``auth`` commands, and the global ``--user`` login
(etcdctl 3.4's arguments, output texts and exit codes: 128 for bad arguments, 1 for an error
the server answered, 2 for a failed login).

``--user name[:password]`` (or ``--user name --password pw``) authenticates once through the
gateway before the command; the token then goes with every request in the ``Authorization``
header. As etcdctl's client does, a cluster with auth disabled is used without a token.
Passwords never come from a prompt unless the command asks one interactively (etcdctl's
default for ``user add`` / ``passwd`` without ``name:password``); ``--interactive=false``
reads one word from stdin instead.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from raftkv.cli.ctl_client import Client, CtlError
from raftkv.cli.ctl_print import go_json, json_line
from raftkv.cli.ctl_print import out as _out
from raftkv.errors import ErrAuthNotEnabled
from raftkv.pb import rpc
from raftkv.pb.auth import Permission, PermissionType, UserAddOptions

__all__ = ["add_parsers", "login"]

BAD_ARGS = 128
BAD_CONNECTION = 2


def _go_bool(v: str) -> bool:
    """A Go bool flag's value (``--interactive=false``)."""
    low = v.lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f'strconv.ParseBool: parsing "{v}": invalid syntax')


def add_parsers(sp: Any, common: argparse.ArgumentParser) -> None:
    q = sp.add_parser("user", parents=[common])
    up = q.add_subparsers(dest="user_cmd", required=True)
    for name in ("add", "delete", "get", "list", "passwd", "grant-role", "revoke-role"):
        x = up.add_parser(name, parents=[common])
        x.add_argument("args", nargs="*")
        if name in ("add", "passwd"):
            x.add_argument("--interactive", type=_go_bool, nargs="?", const=True, default=True)
        if name == "add":
            x.add_argument("--new-user-password", default="")
            x.add_argument("--no-password", action="store_true")
        if name == "get":
            x.add_argument("--detail", action="store_true")
    q.set_defaults(fn=cmd_user)

    q = sp.add_parser("role", parents=[common])
    rp = q.add_subparsers(dest="role_cmd", required=True)
    for name in ("add", "delete", "get", "list", "grant-permission", "revoke-permission"):
        x = rp.add_parser(name, parents=[common])
        x.add_argument("args", nargs="*")
        if name.endswith("-permission"):
            x.add_argument("--prefix", action="store_true")
            x.add_argument("--from-key", action="store_true")
    q.set_defaults(fn=cmd_role)

    q = sp.add_parser("auth", parents=[common])
    ap = q.add_subparsers(dest="auth_cmd", required=True)
    for name in ("enable", "disable"):
        ap.add_parser(name, parents=[common]).add_argument("args", nargs="*")
    q.set_defaults(fn=cmd_auth)


def login(c: Client, user: str, password: str | None) -> None:
    """Authenticate as ``user`` (``name:password`` unless ``password`` is given) and make
    ``c`` send the token."""
    if password is None:
        name, sep, password = user.partition(":")
        if not sep:
            password = getpass.getpass("Password: ")
    else:
        name = user
    try:
        resp = c.call(
            "/v3/auth/authenticate",
            rpc.AuthenticateRequest(name=name, password=password),
            rpc.AuthenticateResponse,
        )
    except CtlError as e:
        if str(e) == ErrAuthNotEnabled.message:
            return  # (etcd's client goes on without a token)
        raise CtlError(str(e), BAD_CONNECTION) from None  # (etcdctl: no client to run with)
    c.token = resp.token


def _print(a: argparse.Namespace, resp: Any, simple: list[str] | str) -> None:
    if a.write_out == "json":
        _out(json_line(go_json(resp)))
    else:
        _out(simple)


def _args(a: argparse.Namespace, n: int, why: str, at_least: bool = False) -> list[str]:
    args: list[str] = a.args
    if len(args) < n if at_least else len(args) != n:
        raise CtlError(why, BAD_ARGS)
    return args


def _ask_password(name: str, interactive: bool) -> str:
    if not interactive:
        words = sys.stdin.read().split()
        return words[0] if words else ""
    first = getpass.getpass(f"Password of {name}: ")
    if not first:
        raise CtlError("empty password", BAD_ARGS)
    if getpass.getpass(f"Type password of {name} again for confirmation: ") != first:
        raise CtlError("given passwords are different", BAD_ARGS)
    return first


# --- user ----------------------------------------------------------------------------------------


def cmd_user(c: Client, a: argparse.Namespace) -> None:
    sub = a.user_cmd
    if sub == "add":
        (arg,) = _args(a, 1, "user add command requires user name as its argument")
        options = UserAddOptions(no_password=a.no_password)
        if a.no_password:
            name, password = arg, ""
        elif a.new_user_password:
            name, password = arg, a.new_user_password
        else:
            name, sep, password = arg.partition(":")
            if not sep:
                password = _ask_password(arg, a.interactive)
            elif not name:
                raise CtlError("empty user name is not allowed", BAD_ARGS)
        req = rpc.AuthUserAddRequest(name=name, password=password, options=options)
        r = c.call("/v3/auth/user/add", req, rpc.AuthUserAddResponse)
        _print(a, r, f"User {name} created")
    elif sub == "delete":
        (name,) = _args(a, 1, "user delete command requires user name as its argument")
        req = rpc.AuthUserDeleteRequest(name=name)
        r = c.call("/v3/auth/user/delete", req, rpc.AuthUserDeleteResponse)
        _print(a, r, f"User {name} deleted")
    elif sub == "get":
        (name,) = _args(a, 1, "user get command requires user name as its argument")
        r = c.call("/v3/auth/user/get", rpc.AuthUserGetRequest(name=name), rpc.AuthUserGetResponse)
        if a.detail:
            _out(f"User: {name}")
            for role in r.roles:
                _out("")
                _print_role(a, role, _role_get(c, role))
        else:
            _print(a, r, [f"User: {name}", "Roles:" + "".join(f" {x}" for x in r.roles)])
    elif sub == "list":
        _args(a, 0, "user list command requires no arguments")
        r = c.call("/v3/auth/user/list", rpc.AuthUserListRequest(), rpc.AuthUserListResponse)
        _print(a, r, list(r.users))
    elif sub == "passwd":
        (name,) = _args(a, 1, "user passwd command requires user name as its argument")
        password = _ask_password(name, a.interactive)
        req = rpc.AuthUserChangePasswordRequest(name=name, password=password)
        r = c.call("/v3/auth/user/changepw", req, rpc.AuthUserChangePasswordResponse)
        _print(a, r, "Password updated")
    elif sub == "grant-role":
        why = "user grant command requires user name and role name as its argument"
        name, role = _args(a, 2, why)
        req = rpc.AuthUserGrantRoleRequest(user=name, role=role)
        r = c.call("/v3/auth/user/grant", req, rpc.AuthUserGrantRoleResponse)
        _print(a, r, f"Role {role} is granted to user {name}")
    else:  # revoke-role
        why = "user revoke-role requires user name and role name as its argument"
        name, role = _args(a, 2, why)
        req = rpc.AuthUserRevokeRoleRequest(name=name, role=role)
        r = c.call("/v3/auth/user/revoke", req, rpc.AuthUserRevokeRoleResponse)
        _print(a, r, f"Role {role} is revoked from user {name}")


# --- role ----------------------------------------------------------------------------------------


def prefix_range_end(key: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd."""
    end = bytearray(key)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


def _role_get(c: Client, role: str) -> rpc.AuthRoleGetResponse:
    return c.call("/v3/auth/role/get", rpc.AuthRoleGetRequest(role=role), rpc.AuthRoleGetResponse)


def _perm_text(p: Permission) -> str:
    key = p.key.decode("utf-8", "replace")
    if not p.range_end:
        return f"\t{key}"
    if p.range_end == b"\x00":
        text = f"\t[{key}, <open ended>"
    else:
        text = f"\t[{key}, {p.range_end.decode('utf-8', 'replace')})"
    if prefix_range_end(p.key) == p.range_end:
        text += f" (prefix {key})"
    return text


def _print_role(a: argparse.Namespace, role: str, r: rpc.AuthRoleGetResponse) -> None:
    lines = [f"Role {role}", "KV Read:"]
    read = (PermissionType.READ, PermissionType.READWRITE)
    lines += [_perm_text(p) for p in r.perm if p.permType in read]
    lines.append("KV Write:")
    write = (PermissionType.WRITE, PermissionType.READWRITE)
    lines += [_perm_text(p) for p in r.perm if p.permType in write]
    _print(a, r, lines)


def _perm_range(a: argparse.Namespace, args: list[str]) -> tuple[bytes, bytes]:
    """etcdctl's permRange: the key and range end the arguments and flags give."""
    key = args[0].encode()
    if not key:
        if a.prefix and a.from_key:
            raise CtlError("--from-key and --prefix flags are mutually exclusive", BAD_ARGS)
        # every key: ["\0", end), "\0" being open-ended on the server
        return b"\x00", b"\x00" if a.prefix or a.from_key else b""
    if len(args) == 1:
        if a.prefix:
            if a.from_key:
                raise CtlError("--from-key and --prefix flags are mutually exclusive", BAD_ARGS)
            return key, prefix_range_end(key)
        return key, b"\x00" if a.from_key else b""
    if a.prefix:
        raise CtlError("unexpected endkey argument with --prefix flag", BAD_ARGS)
    if a.from_key:
        raise CtlError("unexpected endkey argument with --from-key flag", BAD_ARGS)
    return key, args[1].encode()


def cmd_role(c: Client, a: argparse.Namespace) -> None:
    sub = a.role_cmd
    if sub == "add":
        (role,) = _args(a, 1, "role add command requires role name as its argument")
        r = c.call("/v3/auth/role/add", rpc.AuthRoleAddRequest(name=role), rpc.AuthRoleAddResponse)
        _print(a, r, f"Role {role} created")
    elif sub == "delete":
        (role,) = _args(a, 1, "role delete command requires role name as its argument")
        req = rpc.AuthRoleDeleteRequest(role=role)
        r = c.call("/v3/auth/role/delete", req, rpc.AuthRoleDeleteResponse)
        _print(a, r, f"Role {role} deleted")
    elif sub == "get":
        (role,) = _args(a, 1, "role get command requires role name as its argument")
        _print_role(a, role, _role_get(c, role))
    elif sub == "list":
        _args(a, 0, "role list command requires no arguments")
        r = c.call("/v3/auth/role/list", rpc.AuthRoleListRequest(), rpc.AuthRoleListResponse)
        _print(a, r, list(r.roles))
    elif sub == "grant-permission":
        why = (
            "role grant command requires role name, permission type, and key [endkey] as its "
            "argument"
        )
        role, kind, *rest = _args(a, 3, why, at_least=True)
        ptype = PermissionType.__members__.get(kind.upper())
        if ptype is None:
            raise CtlError(f"invalid permission type: {kind}", BAD_ARGS)
        key, end = _perm_range(a, rest)
        perm = Permission(permType=ptype, key=key, range_end=end)
        req = rpc.AuthRoleGrantPermissionRequest(name=role, perm=perm)
        r = c.call("/v3/auth/role/grant", req, rpc.AuthRoleGrantPermissionResponse)
        _print(a, r, f"Role {role} updated")
    else:  # revoke-permission
        why = "role revoke-permission command requires role name and key [endkey] as its argument"
        role, *rest = _args(a, 2, why, at_least=True)
        key, end = _perm_range(a, rest)
        req = rpc.AuthRoleRevokePermissionRequest(role=role, key=key, range_end=end)
        r = c.call("/v3/auth/role/revoke", req, rpc.AuthRoleRevokePermissionResponse)
        shown = rest[0]  # (etcdctl prints the key as typed)
        if not end:
            text = f"Permission of key {shown} is revoked from role {role}"
        elif end != b"\x00":
            text = f"Permission of range [{shown}, {end.decode('utf-8', 'replace')}) is revoked "
            text += f"from role {role}"
        else:
            text = f"Permission of range [{shown}, <open ended> is revoked from role {role}"
        _print(a, r, text)


# --- auth ----------------------------------------------------------------------------------------


def cmd_auth(c: Client, a: argparse.Namespace) -> None:
    if a.auth_cmd == "enable":
        _args(a, 0, "auth enable command does not accept any arguments")
        while True:
            try:
                c.call("/v3/auth/enable", rpc.AuthEnableRequest(), rpc.AuthEnableResponse)
                break
            except CtlError as e:
                # etcdctl gives root the root role (creating it) and tries again
                if str(e) != "etcdserver: root user does not have root role":
                    raise
                c.call(
                    "/v3/auth/role/add",
                    rpc.AuthRoleAddRequest(name="root"),
                    rpc.AuthRoleAddResponse,
                )
                req = rpc.AuthUserGrantRoleRequest(user="root", role="root")
                c.call("/v3/auth/user/grant", req, rpc.AuthUserGrantRoleResponse)
        _out("Authentication Enabled")
    else:
        _args(a, 0, "auth disable command does not accept any arguments")
        c.call("/v3/auth/disable", rpc.AuthDisableRequest(), rpc.AuthDisableResponse)
        _out("Authentication Disabled")
