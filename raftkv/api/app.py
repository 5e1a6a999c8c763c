"""The client API: etcd v3.4's HTTP/JSON gateway routes over an ``EtcdServer``.

One catch-all aiohttp route dispatches by exact path through a dict (no regex routing on the
hot path). A unary call: read the body -> decode the first JSON value (Go's errors) -> jsonpb
decode into the request dataclass -> the checks etcd's gRPC layer makes -> ``server.<method>``
-> encode -> 200. ``EtcdError`` is translated once, here, into etcd's error reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from raftkv import errors
from raftkv.api import validate
from raftkv.api.codec import decode_message, dumps, encoder
from raftkv.api.gojson import GoJSONError, decode_first_value
from raftkv.api.gojson import fast_decode as _fast_decode
from raftkv.api.http import (
    CORS,
    METRICS_CONTENT_TYPE,
    Response,
    gateway_error,
    grpc_error,
    json_ok,
    method_not_allowed,
    not_found,
    request_token,
)
from raftkv.api.ops import ClientOps
from raftkv.api.snapshot_stream import handle_snapshot
from raftkv.api.streams import handle_keepalive, handle_watch, stream_refusal
from raftkv.api.unary import UNARY, Unary, call
from raftkv.errors import EtcdError, GrpcCode
from raftkv.pb import rpc
from raftkv.version import ETCD_CLUSTER_VERSION, ETCD_VERSION

__all__ = ["UNARY_PATHS", "create_app", "run_unary"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024 * 1024

SERVER_KEY: web.AppKey[ClientOps] = web.AppKey("raftkv_server", object)


# gateway path -> the unary RPC it carries
UNARY_PATHS: dict[str, Unary] = {
    "/v3/kv/range": UNARY["range"],
    "/v3/kv/put": UNARY["put"],
    "/v3/kv/deleterange": UNARY["delete_range"],
    "/v3/kv/txn": UNARY["txn"],
    "/v3/kv/compaction": UNARY["compact"],
    "/v3/lease/grant": UNARY["lease_grant"],
    "/v3/lease/revoke": UNARY["lease_revoke"],
    "/v3/kv/lease/revoke": UNARY["lease_revoke"],
    "/v3/lease/timetolive": UNARY["lease_time_to_live"],
    "/v3/kv/lease/timetolive": UNARY["lease_time_to_live"],
    "/v3/lease/leases": UNARY["lease_leases"],
    "/v3/cluster/member/list": UNARY["member_list"],
    "/v3/cluster/member/add": UNARY["member_add"],
    "/v3/cluster/member/remove": UNARY["member_remove"],
    "/v3/cluster/member/update": UNARY["member_update"],
    "/v3/cluster/member/promote": UNARY["member_promote"],
    "/v3/maintenance/status": UNARY["status"],
    "/v3/maintenance/hash": UNARY["hash"],
    "/v3/maintenance/hashkv": UNARY["hash_kv"],
    "/v3/maintenance/alarm": UNARY["alarm"],
    "/v3/maintenance/defragment": UNARY["defragment"],
    "/v3/maintenance/transfer-leadership": UNARY["move_leader"],
    "/v3/auth/enable": UNARY["auth_enable"],
    "/v3/auth/disable": UNARY["auth_disable"],
    "/v3/auth/authenticate": UNARY["authenticate"],
    "/v3/auth/user/add": UNARY["user_add"],
    "/v3/auth/user/get": UNARY["user_get"],
    "/v3/auth/user/list": UNARY["user_list"],
    "/v3/auth/user/delete": UNARY["user_delete"],
    "/v3/auth/user/changepw": UNARY["user_change_password"],
    "/v3/auth/user/grant": UNARY["user_grant_role"],
    "/v3/auth/user/revoke": UNARY["user_revoke_role"],
    "/v3/auth/role/add": UNARY["role_add"],
    "/v3/auth/role/get": UNARY["role_get"],
    "/v3/auth/role/list": UNARY["role_list"],
    "/v3/auth/role/delete": UNARY["role_delete"],
    "/v3/auth/role/grant": UNARY["role_grant_permission"],
    "/v3/auth/role/revoke": UNARY["role_revoke_permission"],
}

_STREAMS: dict[str, Callable[[web.Request, ClientOps], Awaitable[web.StreamResponse]]] = {
    "/v3/watch": handle_watch,
    "/v3/lease/keepalive": handle_keepalive,
    "/v3/maintenance/snapshot": handle_snapshot,
}


def parse_body(body: bytes, cls: type) -> Any:
    """The first JSON value of ``body`` as a ``cls``; raises GoJSONError with Go's message."""
    if not body:
        return cls()
    text = body.decode("utf-8", "replace")
    try:
        value = _fast_decode(text)  # the whole body is one JSON value: the common case
    except (ValueError, RecursionError):
        _found, value, _end = decode_first_value(text)
    return decode_message(cls, value)


async def _unary(request: web.Request, server: ClientOps, spec: Unary) -> web.StreamResponse:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = server.max_request_bytes + validate.GRPC_OVERHEAD_BYTES
        msg = f"grpc: received message larger than max ({MAX_BODY_BYTES * 3 // 4} vs. {limit})"
        return await grpc_error(request, EtcdError(msg, GrpcCode.RESOURCE_EXHAUSTED))
    try:
        answer = await run_unary(server, spec, body, request_token(request))
    except GoJSONError as e:
        return gateway_error(str(e))
    except EtcdError as e:
        return await grpc_error(request, e)
    return await json_ok(request, answer)


async def run_unary(server: ClientOps, spec: Unary, body: bytes, token: str | None) -> bytes:
    """The JSON answer to a unary call's ``body``. Raises GoJSONError (the body does not
    decode: the gateway's own error) or EtcdError (the server's)."""
    req = parse_body(body, spec.req_cls)
    resp = await call(server, spec, req, len(body), token=token)
    return dumps(encoder(type(resp))(resp))


_HEALTH_HEADERS = {**CORS, "Content-Type": "text/plain; charset=utf-8"}
_VERSION_BODY = dumps({"etcdserver": ETCD_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION})


async def _health(server: ClientOps) -> web.Response:
    """etcd 3.4's checkHealth: no alarm, a known leader, and a quorum read within a second."""
    try:
        ok = bool(server.is_healthy())
        if ok:
            await asyncio.wait_for(server.range(rpc.RangeRequest(key=b"health")), 1.0)
    except Exception:
        ok = False
    if ok:
        return Response(body=b'{"health":"true"}', headers=_HEALTH_HEADERS)
    # etcd answers this one through http.Error: nosniff, and a newline after the body
    return Response(
        status=503,
        body=b'{"health":"false"}\n',
        headers={**_HEALTH_HEADERS, "X-Content-Type-Options": "nosniff"},
    )


def _metrics(server: ClientOps) -> web.Response:
    headers = {**CORS, "Content-Type": METRICS_CONTENT_TYPE}
    return Response(body=server.metrics_exposition(), headers=headers)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER_KEY]
    path = request.path
    method = request.method
    spec = UNARY_PATHS.get(path)
    if spec is not None or path in _STREAMS:
        if method == "POST":
            try:
                if spec is not None:
                    return await _unary(request, server, spec)
                if server.is_learner():  # etcd refuses every stream on a learner
                    return await stream_refusal(request, errors.ErrNotSupportedForLearner)
                return await _STREAMS[path](request, server)
            except (ConnectionResetError, web.HTTPException):
                raise
            except Exception as e:  # never a traceback to the client
                log.exception("internal error serving %s", path)
                return await grpc_error(
                    request, EtcdError(str(e) or type(e).__name__, GrpcCode.UNKNOWN)
                )
        if method == "OPTIONS":
            return Response(headers=CORS)
        return method_not_allowed()
    if path == "/health" or path == "/version" or path == "/metrics":
        if method == "GET":  # etcd's handlers accept GET only (HEAD gets 405 too)
            if path == "/health":
                return await _health(server)
            if path == "/metrics":
                return _metrics(server)
            return Response(
                body=_VERSION_BODY, headers={**CORS, "Content-Type": "application/json"}
            )
        if method == "OPTIONS":
            return Response(headers=CORS)
        return method_not_allowed("GET")
    if method == "OPTIONS":
        return Response(headers=CORS)
    return not_found(path)


def create_app(server: ClientOps) -> web.Application:
    """An aiohttp application serving etcd v3.4's JSON gateway over ``server``."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SERVER_KEY] = server
    # exact paths first (aiohttp looks plain routes up in a dict), then everything else
    for path in (*UNARY_PATHS, *_STREAMS, "/health", "/version", "/metrics"):
        app.router.add_route("*", path, _dispatch)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app
