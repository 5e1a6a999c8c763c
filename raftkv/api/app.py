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
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from raftkv import errors
from raftkv.api import validate
from raftkv.api.auth import AUTH_ROUTES, auth_call, check_fields
from raftkv.api.codec import decode_message, dumps, encoder
from raftkv.api.gojson import GoJSONError, decode_first_value
from raftkv.api.gojson import fast_decode as _fast_decode
from raftkv.api.http import (
    CORS,
    Response,
    gateway_error,
    grpc_error,
    json_ok,
    method_not_allowed,
    not_found,
)
from raftkv.api.snapshot_stream import handle_snapshot
from raftkv.api.streams import handle_keepalive, handle_watch, stream_refusal
from raftkv.errors import EtcdError, GrpcCode
from raftkv.pb import rpc

__all__ = ["ETCD_CLUSTER_VERSION", "ETCD_VERSION", "create_app"]

log = logging.getLogger(__name__)

ETCD_VERSION = "3.4.23"
ETCD_CLUSTER_VERSION = "3.4.0"
MAX_BODY_BYTES = 256 * 1024 * 1024

SERVER_KEY: web.AppKey[Any] = web.AppKey("raftkv_server", object)


@dataclass(frozen=True, slots=True)
class _Unary:
    method: str  # EtcdServer method name
    req_cls: type
    check: Callable[[Any, Any], None] | None  # (request, server) -> None, raises EtcdError
    proposal: bool  # goes through Raft: subject to etcd's "request is too large"
    fixup: Callable[[Any], None] | None = None  # adjust the response to etcd's exact shape


def _check_range(r: Any, _s: Any) -> None:
    validate.check_range(r)
    validate.check_sort_target(r)


def _check_alarm(r: Any, _s: Any) -> None:
    validate.check_alarm(r)


def _check_put(r: Any, _s: Any) -> None:
    validate.check_put(r)


def _check_delete(r: Any, _s: Any) -> None:
    validate.check_delete(r)


def _check_txn(r: Any, s: Any) -> None:
    validate.check_txn(r, s.max_txn_ops)


def _member_list_fixup(resp: Any) -> None:
    # etcd's cluster service fills the header without a revision.
    if resp.header is not None:
        resp.header.revision = 0


def _alarm_fixup(resp: Any) -> None:
    # etcd's maintenance Alarm returns the applier's response as is: no header.
    resp.header = None


def _txn_is_readonly(r: rpc.TxnRequest) -> bool:
    for ops in (r.success, r.failure):
        for u in ops:
            if u.request_range is None and (
                u.request_txn is None or not _txn_is_readonly(u.request_txn)
            ):
                return False
    return True


_UNARY: dict[str, _Unary] = {
    "/v3/kv/range": _Unary("range", rpc.RangeRequest, _check_range, False),
    "/v3/kv/put": _Unary("put", rpc.PutRequest, _check_put, True),
    "/v3/kv/deleterange": _Unary("delete_range", rpc.DeleteRangeRequest, _check_delete, True),
    "/v3/kv/txn": _Unary("txn", rpc.TxnRequest, _check_txn, True),
    "/v3/kv/compaction": _Unary("compact", rpc.CompactionRequest, None, True),
    "/v3/lease/grant": _Unary("lease_grant", rpc.LeaseGrantRequest, None, True),
    "/v3/lease/revoke": _Unary("lease_revoke", rpc.LeaseRevokeRequest, None, True),
    "/v3/kv/lease/revoke": _Unary("lease_revoke", rpc.LeaseRevokeRequest, None, True),
    "/v3/lease/timetolive": _Unary("lease_time_to_live", rpc.LeaseTimeToLiveRequest, None, False),
    "/v3/kv/lease/timetolive": _Unary(
        "lease_time_to_live", rpc.LeaseTimeToLiveRequest, None, False
    ),
    "/v3/lease/leases": _Unary("lease_leases", rpc.LeaseLeasesRequest, None, False),
    "/v3/cluster/member/list": _Unary(
        "member_list", rpc.MemberListRequest, None, False, _member_list_fixup
    ),
    "/v3/cluster/member/add": _Unary("member_add", rpc.MemberAddRequest, None, False),
    "/v3/cluster/member/remove": _Unary("member_remove", rpc.MemberRemoveRequest, None, False),
    "/v3/cluster/member/update": _Unary("member_update", rpc.MemberUpdateRequest, None, False),
    "/v3/cluster/member/promote": _Unary("member_promote", rpc.MemberPromoteRequest, None, False),
    "/v3/maintenance/status": _Unary("status", rpc.StatusRequest, None, False),
    "/v3/maintenance/hash": _Unary("hash", rpc.HashRequest, None, False),
    "/v3/maintenance/hashkv": _Unary("hash_kv", rpc.HashKVRequest, None, False),
    "/v3/maintenance/alarm": _Unary("alarm", rpc.AlarmRequest, _check_alarm, True, _alarm_fixup),
    "/v3/maintenance/defragment": _Unary("defragment", rpc.DefragmentRequest, None, False),
    "/v3/maintenance/transfer-leadership": _Unary(
        "move_leader", rpc.MoveLeaderRequest, None, False
    ),
}

_STREAMS: dict[str, Callable[[web.Request, Any], Awaitable[web.StreamResponse]]] = {
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


def _is_learner(server: Any) -> bool:
    is_learner = getattr(server, "is_learner", None)
    return is_learner is not None and is_learner()


def _refused_to_learner(server: Any, spec: _Unary, req: Any) -> bool:
    """etcd's interceptor: a learner serves only status and serializable ranges."""
    if not _is_learner(server):
        return False
    return not (spec.method == "status" or (spec.method == "range" and req.serializable))


async def _unary(request: web.Request, server: Any, spec: _Unary) -> web.StreamResponse:
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        limit = server.max_request_bytes + validate.GRPC_OVERHEAD_BYTES
        msg = f"grpc: received message larger than max ({MAX_BODY_BYTES * 3 // 4} vs. {limit})"
        return await grpc_error(request, EtcdError(msg, GrpcCode.RESOURCE_EXHAUSTED))
    try:
        req = parse_body(body, spec.req_cls)
    except GoJSONError as e:
        return gateway_error(str(e))
    try:
        n = len(body)
        validate.check_grpc_size(req, server.max_request_bytes, n)
        if _refused_to_learner(server, spec, req):
            raise errors.ErrNotSupportedForLearner
        if spec.check is not None:
            spec.check(req, server)
        if (
            spec.proposal
            and n * 2 >= server.max_request_bytes
            and (spec.method != "txn" or not _txn_is_readonly(req))
        ):
            validate.check_proposal_size(req, server.max_request_bytes, n)
        resp = await getattr(server, spec.method)(req)
    except EtcdError as e:
        return await grpc_error(request, e)
    if spec.fixup is not None:
        spec.fixup(resp)
    return await json_ok(request, dumps(encoder(type(resp))(resp)))


async def _auth(request: web.Request, server: Any, path: str) -> web.StreamResponse:
    body = await request.read()
    try:
        value = None
        if body:
            _found, value, _end = decode_first_value(body.decode("utf-8", "replace"))
        fields = check_fields(AUTH_ROUTES[path][0], value)
        del fields
    except GoJSONError as e:
        return gateway_error(str(e))
    try:
        resp = await auth_call(server, path, value)
    except EtcdError as e:
        return await grpc_error(request, e)
    return await json_ok(request, dumps(encoder(type(resp))(resp)))


_HEALTH_HEADERS = {**CORS, "Content-Type": "text/plain; charset=utf-8"}
_VERSION_BODY = dumps({"etcdserver": ETCD_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION})


async def _health(server: Any) -> web.Response:
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


def _metrics(server: Any) -> web.Response:
    from raftkv.server.metrics import CONTENT_TYPE

    headers = {**CORS, "Content-Type": CONTENT_TYPE}
    return Response(body=server.metrics.exposition(), headers=headers)


async def _dispatch(request: web.Request) -> web.StreamResponse:
    server = request.app[SERVER_KEY]
    path = request.path
    method = request.method
    spec = _UNARY.get(path)
    if spec is not None or path in _STREAMS:
        if method == "POST":
            try:
                if spec is not None:
                    return await _unary(request, server, spec)
                if _is_learner(server):  # etcd refuses every stream on a learner
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
    if path in AUTH_ROUTES:
        if method == "POST":
            return await _auth(request, server, path)
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


def create_app(server: Any) -> web.Application:
    """An aiohttp application serving etcd v3.4's JSON gateway over ``server``."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SERVER_KEY] = server
    # exact paths first (aiohttp looks plain routes up in a dict), then everything else
    for path in (*_UNARY, *_STREAMS, *AUTH_ROUTES, "/health", "/version", "/metrics"):
        app.router.add_route("*", path, _dispatch)
    app.router.add_route("*", "/{tail:.*}", _dispatch)
    return app
