"""etcd v3.4's native gRPC API over ``ClientOps``: KV, Watch, Lease, Cluster, Maintenance, Health.

The second codec of the same requests as the JSON gateway: every unary RPC goes through
``raftkv.api.unary.call`` (etcd's pre-Raft checks, in etcd's order), the watch and keep-alive
streams through the same ``ClientOps`` stream operations as ``raftkv.api.streams``. Handlers are
served by ``raftkv.api.h2grpc`` under etcd's method paths (``/etcdserverpb.KV/Range``...), with
``raftkv.api.grpc_codec`` as (de)serializers: requests arrive as ``raftkv.pb.rpc`` dataclasses
together with their exact wire size, responses leave from the dataclasses.

Behaviour a client sees, as etcd 3.4's v3rpc shows it:
- errors: ``EtcdError`` -> its gRPC code and exact message (clientv3 matches on the string);
- interceptors: a learner refuses all but status and serializable ranges (and every stream);
  the ``hasleader`` metadata refuses with Unavailable "etcdserver: no leader" while the member
  knows no leader, and a stream opened with it is ended with that error once the member has
  had no leader for three election timeouts (etcd's monitorLeader);
- Watch: a request's answer (``created``, ``canceled``, progress with watch_id -1) is written
  before the next request is read; events are drained from the member's watch stream only
  when the previous write has completed, so a slow reader holds at most the member's bounded
  buffer (the watchable store's victims take the rest); ``fragment`` splits a large response
  as etcd's sendFragments does;
- auth: the ``token`` (or ``authorization``) metadata is the caller's token, for every unary
  call, each watch create of a stream and Snapshot, as in the JSON gateway (``unary.call``);
  without a token, a verified client certificate's common name is the user (etcd's
  AuthInfoFromTLS; the gateway ignores it, as etcd's does);
- LeaseKeepAlive: one answer per request (TTL 0 for an unknown lease); Snapshot: the member's
  chunks then the sha256;
- limits: a request message over etcd's receive limit (max_request_bytes + 512 KiB) is refused
  from its declared size with grpc-go's words (``unary.call`` checks the same for the JSON
  gateway); sends are unlimited.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from raftkv import errors
from raftkv.api.grpc_codec import DecodeError, decoder, encoder
from raftkv.api.grpcpb import health_pb2
from raftkv.api.h2grpc import EOF, Call, Method
from raftkv.api.ops import ClientOps
from raftkv.api.streams import apply_watch_request
from raftkv.api.unary import UNARY, admin_refusal, call, keep_alive_once
from raftkv.api.validate import GRPC_OVERHEAD_BYTES
from raftkv.errors import EtcdError, GrpcCode
from raftkv.pb import rpc

log = structlog.get_logger("raftkv.api")

__all__ = ["GrpcApi"]

_MAX_NO_LEADER = 3  # etcd's maxNoLeaderCnt (election timeouts)
_HASLEADER = ("hasleader", "true")  # rpctypes.MetadataRequireLeaderKey / MetadataHasLeader

# gRPC method -> ClientOps unary method, per etcd service
_UNARY_METHODS: dict[str, dict[str, str]] = {
    "etcdserverpb.KV": {
        "Range": "range",
        "Put": "put",
        "DeleteRange": "delete_range",
        "Txn": "txn",
        "Compact": "compact",
    },
    "etcdserverpb.Lease": {
        "LeaseGrant": "lease_grant",
        "LeaseRevoke": "lease_revoke",
        "LeaseTimeToLive": "lease_time_to_live",
        "LeaseLeases": "lease_leases",
    },
    "etcdserverpb.Cluster": {
        "MemberAdd": "member_add",
        "MemberRemove": "member_remove",
        "MemberUpdate": "member_update",
        "MemberList": "member_list",
        "MemberPromote": "member_promote",
    },
    "etcdserverpb.Maintenance": {
        "Alarm": "alarm",
        "Status": "status",
        "Defragment": "defragment",
        "Hash": "hash",
        "HashKV": "hash_kv",
        "MoveLeader": "move_leader",
    },
    "etcdserverpb.Auth": {
        "AuthEnable": "auth_enable",
        "AuthDisable": "auth_disable",
        "Authenticate": "authenticate",
        "UserAdd": "user_add",
        "UserGet": "user_get",
        "UserList": "user_list",
        "UserDelete": "user_delete",
        "UserChangePassword": "user_change_password",
        "UserGrantRole": "user_grant_role",
        "UserRevokeRole": "user_revoke_role",
        "RoleAdd": "role_add",
        "RoleGet": "role_get",
        "RoleList": "role_list",
        "RoleDelete": "role_delete",
        "RoleGrantPermission": "role_grant_permission",
        "RoleRevokePermission": "role_revoke_permission",
    },
}
_RESPONSES = {
    "range": rpc.RangeResponse,
    "put": rpc.PutResponse,
    "delete_range": rpc.DeleteRangeResponse,
    "txn": rpc.TxnResponse,
    "compact": rpc.CompactionResponse,
    "lease_grant": rpc.LeaseGrantResponse,
    "lease_revoke": rpc.LeaseRevokeResponse,
    "lease_time_to_live": rpc.LeaseTimeToLiveResponse,
    "lease_leases": rpc.LeaseLeasesResponse,
    "member_add": rpc.MemberAddResponse,
    "member_remove": rpc.MemberRemoveResponse,
    "member_update": rpc.MemberUpdateResponse,
    "member_list": rpc.MemberListResponse,
    "member_promote": rpc.MemberPromoteResponse,
    "alarm": rpc.AlarmResponse,
    "status": rpc.StatusResponse,
    "defragment": rpc.DefragmentResponse,
    "hash": rpc.HashResponse,
    "hash_kv": rpc.HashKVResponse,
    "move_leader": rpc.MoveLeaderResponse,
    "auth_enable": rpc.AuthEnableResponse,
    "auth_disable": rpc.AuthDisableResponse,
    "authenticate": rpc.AuthenticateResponse,
    "user_add": rpc.AuthUserAddResponse,
    "user_get": rpc.AuthUserGetResponse,
    "user_list": rpc.AuthUserListResponse,
    "user_delete": rpc.AuthUserDeleteResponse,
    "user_change_password": rpc.AuthUserChangePasswordResponse,
    "user_grant_role": rpc.AuthUserGrantRoleResponse,
    "user_revoke_role": rpc.AuthUserRevokeRoleResponse,
    "role_add": rpc.AuthRoleAddResponse,
    "role_get": rpc.AuthRoleGetResponse,
    "role_list": rpc.AuthRoleListResponse,
    "role_delete": rpc.AuthRoleDeleteResponse,
    "role_grant_permission": rpc.AuthRoleGrantPermissionResponse,
    "role_revoke_permission": rpc.AuthRoleRevokePermissionResponse,
}


def _sized(cls: type) -> Callable[[bytes], tuple[Any, int]]:
    dec = decoder(cls)

    def deserialize(data: bytes) -> tuple[Any, int]:
        return dec(data), len(data)

    return deserialize


def _require_leader(context: Call) -> bool:
    md = context.invocation_metadata()
    return bool(md) and _HASLEADER in md


def _token(context: Call) -> str | None:
    """The caller's auth token: etcd reads the ``token`` metadata, then ``authorization``."""
    md = dict(context.invocation_metadata() or ())
    got = md.get("token")
    return got if got is not None else md.get("authorization")


def _cert_user(context: Call) -> str | None:
    """The common name of the client's verified certificate (etcd's AuthInfoFromTLS)."""
    cert = context.peer_cert()
    if cert is None:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None


async def _abort(context: Call, e: EtcdError) -> None:
    await context.abort(e.code, e.message)


def _internal(e: BaseException) -> EtcdError:
    """An unexpected failure, shown to the client as etcd shows an unmapped error."""
    log.error("grpc_call_failed", exc_info=e)
    return EtcdError(str(e) or type(e).__name__, GrpcCode.UNKNOWN)


class GrpcApi:
    """The gRPC services of one member, and the leader monitor of its hasleader streams."""

    def __init__(self, ops: ClientOps) -> None:
        self.ops = ops
        self._leader_watch: set[asyncio.Event] = set()  # set: the stream must end (no leader)
        self._monitor: asyncio.Task | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    def methods(self) -> dict[str, Method]:
        """Every RPC by its path; starts the leader monitor."""
        out: dict[str, Method] = {}
        for service, table in _UNARY_METHODS.items():
            for name, op in table.items():
                out[f"/{service}/{name}"] = Method(
                    self._unary(op), _sized(UNARY[op].req_cls), encoder(_RESPONSES[op])
                )
        out["/etcdserverpb.Maintenance/Snapshot"] = Method(
            self._snapshot,
            decoder(rpc.SnapshotRequest),
            encoder(rpc.SnapshotResponse),
            server_streaming=True,
        )
        bidi = (
            ("Lease/LeaseKeepAlive", self._keepalive, rpc.LeaseKeepAliveRequest,
             rpc.LeaseKeepAliveResponse),
            ("Watch/Watch", self._watch, rpc.WatchRequest, rpc.WatchResponse),
        )  # fmt: skip
        for path, handler, req_cls, resp_cls in bidi:
            out[f"/etcdserverpb.{path}"] = Method(
                handler,
                decoder(req_cls),
                encoder(resp_cls),
                client_streaming=True,
                server_streaming=True,
            )
        out.update(_HEALTH)
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._monitor_leader())
        return out

    @property
    def max_message(self) -> int:
        """etcd's receive limit for one request message."""
        return self.ops.max_request_bytes + GRPC_OVERHEAD_BYTES

    def close(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()

    async def _monitor_leader(self) -> None:
        """etcd's monitorLeader: end the hasleader streams after three election timeouts
        without a leader (new ones are refused at once)."""
        misses = 0
        while True:
            await asyncio.sleep(self.ops.election_timeout)
            misses = misses + 1 if not self.ops.has_leader() else 0
            if misses >= _MAX_NO_LEADER:
                for ev in self._leader_watch:
                    ev.set()
                self._leader_watch.clear()

    # --- unary ---------------------------------------------------------------------------------

    def _unary(self, op: str) -> Callable[[Any, Call], Awaitable[Any]]:
        spec = UNARY[op]
        ops = self.ops

        async def handle(sized: tuple[Any, int], context: Call) -> Any:
            req, size = sized
            try:
                return await call(
                    ops,
                    spec,
                    req,
                    size,
                    _require_leader(context),
                    token=_token(context),
                    cert_user=_cert_user(context),
                )
            except EtcdError as e:
                err = e
            except Exception as e:
                err = _internal(e)
            await _abort(context, err)

        return handle

    # --- streams -------------------------------------------------------------------------------

    async def _refuse_stream(self, context: Call) -> bool:
        """etcd's stream interceptor: learners serve no stream; hasleader needs a leader.
        True (the call aborted) when refused."""
        if self.ops.is_learner():
            await _abort(context, errors.ErrNotSupportedForLearner)
            return True
        if _require_leader(context) and not self.ops.has_leader():
            await _abort(context, errors.ErrNoLeader)
            return True
        return False

    @contextlib.contextmanager
    def _leader_lost(self, context: Call) -> Any:
        """An event set when a hasleader stream must end with "no leader" (None without
        hasleader)."""
        if not _require_leader(context):
            yield None
            return
        ev = asyncio.Event()
        self._leader_watch.add(ev)
        try:
            yield ev
        finally:
            self._leader_watch.discard(ev)

    async def _snapshot(self, req: rpc.SnapshotRequest, context: Call) -> None:
        if await self._refuse_stream(context):
            return
        try:
            await admin_refusal(self.ops, _token(context), _cert_user(context))
            async for resp in self.ops.snapshot(req):
                await context.write(resp)
            return
        except EtcdError as e:
            err = e
        except OSError as e:
            err = EtcdError(str(e), GrpcCode.UNKNOWN)
        await _abort(context, err)

    async def _keepalive(self, _requests: Any, context: Call) -> None:
        if await self._refuse_stream(context):
            return
        with self._leader_lost(context) as lost:
            work = asyncio.ensure_future(self._keepalive_loop(context))
            waits: set[asyncio.Future] = {work}
            if lost is not None:
                waits.add(asyncio.ensure_future(lost.wait()))
            try:
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in waits:
                    t.cancel()
            if work not in done:
                await _abort(context, errors.ErrNoLeader)
            e = work.exception()
            if e is not None:
                await _abort(context, e if isinstance(e, EtcdError) else _internal(e))

    async def _keepalive_loop(self, context: Call) -> None:
        while True:
            req = await context.read()
            if req is EOF:
                return
            await context.write(await keep_alive_once(self.ops, req))

    async def _watch(self, _requests: Any, context: Call) -> None:
        if await self._refuse_stream(context):
            return
        with self._leader_lost(context) as lost:
            w = _WatchSession(self.ops, context)
            try:
                err = await w.run(lost)
            finally:
                w.close()
            if err is not None:
                await _abort(context, err)


class _WatchSession:
    """One Watch call: a reader applying requests and a writer sending what the member's watch
    stream has ready, one write at a time."""

    def __init__(self, ops: ClientOps, context: Call) -> None:
        self.ops = ops
        self.context = context
        self.ready = asyncio.Event()
        self.stream = ops.new_watch_stream(self.ready.set)
        self.token = _token(context)  # the stream's, for every create on it
        self.cert_user = _cert_user(context)
        self.fragmented: set[int] = set()  # watch ids created with fragment
        self.write_lock = asyncio.Lock()
        # etcd's watch server: maxRequestBytes = --max-request-bytes + grpcOverheadBytes
        self.size_limit = ops.max_request_bytes + GRPC_OVERHEAD_BYTES

    async def run(self, lost: asyncio.Event | None) -> EtcdError | None:
        reader = asyncio.ensure_future(self._read())
        writer = asyncio.ensure_future(self._write_loop())
        waits: set[asyncio.Future] = {reader, writer}
        if lost is not None:
            waits.add(asyncio.ensure_future(lost.wait()))
        try:
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if reader in done and reader.exception() is None:
                # the client closed its sending side: etcd keeps sending until it hangs up
                waits.discard(reader)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waits:
                t.cancel()
        for t in (reader, writer):
            e = t.exception() if t in done else None
            if isinstance(e, EtcdError):
                return e
            if isinstance(e, DecodeError):
                return EtcdError(str(e), GrpcCode.INTERNAL)
            if e is not None:
                return _internal(e)
        return errors.ErrNoLeader  # the leader was lost

    def close(self) -> None:
        self.stream.close()

    async def _read(self) -> None:
        while True:
            req = await self.context.read()
            if req is EOF:
                return
            wid = await apply_watch_request(self.stream, req, self.ops, self.token, self.cert_user)
            if wid is not None and wid >= 0 and req.create_request.fragment:
                self.fragmented.add(wid)
            await self._flush()  # the answer goes out before the next request is read

    async def _write_loop(self) -> None:
        while True:
            await self.ready.wait()
            await self._flush()

    async def _flush(self) -> None:
        async with self.write_lock:
            self.ready.clear()
            for resp in self.stream.drain():
                if resp.watch_id in self.fragmented and len(resp.events) > 1:
                    for part in _fragments(resp, self.size_limit):
                        await self.context.write(part)
                else:
                    await self.context.write(resp)


_encode_watch_response = encoder(rpc.WatchResponse)
_encode_event = encoder(rpc.Event)


def _varint_len(n: int) -> int:
    size = 1
    while n >= 0x80:
        n >>= 7
        size += 1
    return size


def _fragments(wr: rpc.WatchResponse, limit: int) -> list[rpc.WatchResponse]:
    """etcd's sendFragments: below ``limit`` (or with one event) the response as is; else
    responses with ``fragment`` set, each holding events while its size stays under ``limit``
    (at least one), the last one without ``fragment``."""
    sizes = [len(_encode_event(ev)) for ev in wr.events]
    total = len(_encode_watch_response(wr))
    if total < limit:
        return [wr]
    base = len(_encode_watch_response(dataclasses.replace(wr, events=[], fragment=True)))
    out = []
    i = 0
    n = len(wr.events)
    while True:
        cur: list[rpc.Event] = []
        size = base
        while i < n:
            size += 1 + _varint_len(sizes[i]) + sizes[i]
            if cur and size >= limit:
                break
            cur.append(wr.events[i])
            i += 1
        out.append(dataclasses.replace(wr, fragment=i < n, events=cur))
        if i == n:
            return out


# --- grpc.health.v1 ----------------------------------------------------------------------------

_SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)
_UNKNOWN_SERVICE = health_pb2.HealthCheckResponse(
    status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
)


async def _health_check(
    req: health_pb2.HealthCheckRequest, context: Call
) -> health_pb2.HealthCheckResponse:
    # etcd registers grpc-go's health server with "" SERVING
    if req.service:
        await context.abort(GrpcCode.NOT_FOUND, "unknown service")
    return _SERVING


async def _health_watch(req: health_pb2.HealthCheckRequest, context: Call) -> None:
    await context.write(_UNKNOWN_SERVICE if req.service else _SERVING)
    await asyncio.Event().wait()  # the status never changes; the client ends the call


_HEALTH = {
    "/grpc.health.v1.Health/Check": Method(
        _health_check,
        health_pb2.HealthCheckRequest.FromString,
        health_pb2.HealthCheckResponse.SerializeToString,
    ),
    "/grpc.health.v1.Health/Watch": Method(
        _health_watch,
        health_pb2.HealthCheckRequest.FromString,
        health_pb2.HealthCheckResponse.SerializeToString,
        server_streaming=True,
    ),
}
