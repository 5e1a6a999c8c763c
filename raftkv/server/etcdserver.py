"""EtcdServer: one member's client operations (``raftkv.api.ops.ClientOps``), over its parts.

The client API layers call the coroutines below with decoded requests and get responses whose
header is complete (cluster_id, member_id, revision, raft_term), or an ``EtcdError``. Writes go
through Raft (``Proposer``), linearizable reads through ReadIndex (``ReadIndexer``),
serializable reads straight to MVCC; lease keep-alive and time-to-live run on the leader
(``LeaderForwarder``). This object holds no state of its own beyond the watch streams'
registry: every part it calls is built by the composition root (``wiring.py``) and handed in.
See docs/ARCHITECTURE.md for the paths hop by hop.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from raftkv import errors
from raftkv.auth import AuthInfo, AuthStore, hash_password, password_matches
from raftkv.auth.caller import CALLER
from raftkv.backend import Backend
from raftkv.lease import ErrNotPrimary, Lessor
from raftkv.mvcc import KVStore, WatchStream, is_txn_readonly
from raftkv.pb import rpc
from raftkv.raft import NONE
from raftkv.server import quota
from raftkv.server.alarms import Alarms
from raftkv.server.applier import Applier
from raftkv.server.compaction import PhysicalCompaction
from raftkv.server.forward import LeaderForwarder, LeaderOnly
from raftkv.server.housekeeping import Housekeeping
from raftkv.server.maintenance import Maintenance
from raftkv.server.member_ops import MemberOps
from raftkv.server.membership import RaftCluster
from raftkv.server.metrics import ServerMetrics
from raftkv.server.propose import Proposer
from raftkv.server.raft_node import RaftNode
from raftkv.server.read_index import AppliedWaiters, ReadIndexer
from raftkv.server.wait import IdGenerator
from raftkv.version import ETCD_VERSION

__all__ = ["ClientLimits", "EtcdServer", "ServerWatchStream", "WatchStreams"]

log = structlog.get_logger("raftkv.server")

LEASE_PATH = "/leases"
LEASE_TTL_PATH = "/leases/internal"


@dataclass(frozen=True, slots=True)
class ClientLimits:
    """The settings client operations are checked against."""

    max_request_bytes: int
    max_txn_ops: int
    quota_bytes: int
    request_timeout: float
    election_timeout: float


class WatchStreams:
    """The member's open client watch streams, and the headers their responses carry."""

    def __init__(self, cluster_id: int, member_id: int, term: Callable[[], int]) -> None:
        self.cluster_id = cluster_id
        self.member_id = member_id
        self.term = term
        self.open: weakref.WeakSet[ServerWatchStream] = weakref.WeakSet()

    def wrap(self, inner: WatchStream) -> ServerWatchStream:
        ws = ServerWatchStream(self, inner)
        self.open.add(ws)
        return ws


class EtcdServer:
    def __init__(
        self,
        *,
        member_id: int,
        cluster_id: int,
        limits: ClientLimits,
        cluster: RaftCluster,
        node: RaftNode,
        kv: KVStore,
        lessor: Lessor,
        backend: Backend,
        alarms: Alarms,
        auth: AuthStore,
        applier: Applier,
        applied: AppliedWaiters,
        idgen: IdGenerator,
        proposer: Proposer,
        read_index: ReadIndexer,
        forwarder: LeaderForwarder,
        member_ops: MemberOps,
        maintenance: Maintenance,
        housekeeping: Housekeeping,
        compaction: PhysicalCompaction,
        metrics: ServerMetrics,
        watch_streams: WatchStreams,
        is_learner: Callable[[], bool],
    ) -> None:
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.max_request_bytes = limits.max_request_bytes
        self.max_txn_ops = limits.max_txn_ops
        self.election_timeout = limits.election_timeout
        self._limits = limits
        self._cluster = cluster
        self._node = node
        self._kv = kv
        self._lessor = lessor
        self._backend = backend
        self._alarms = alarms
        self.auth = auth
        self._applier = applier
        self._applied = applied
        self._idgen = idgen
        self._proposer = proposer
        self._read_index = read_index
        self._forwarder = forwarder
        self._member_ops = member_ops
        self._maintenance = maintenance
        self._housekeeping = housekeeping
        self._compaction = compaction
        self._metrics = metrics
        self._watch_streams = watch_streams
        self.is_learner = is_learner
        self.leader_ops = (
            LeaderOnly(
                LEASE_PATH,
                rpc.LeaseKeepAliveRequest,
                rpc.LeaseKeepAliveResponse,
                self._lease_renew_on_leader,
            ),
            LeaderOnly(
                LEASE_TTL_PATH,
                rpc.LeaseTimeToLiveRequest,
                rpc.LeaseTimeToLiveResponse,
                self._lease_time_to_live_on_leader,
            ),
        )

    # --- helpers --------------------------------------------------------------------------------

    def header(self, revision: int | None = None) -> rpc.ResponseHeader:
        return rpc.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self._kv.current_revision if revision is None else revision,
            raft_term=self._node.term,
        )

    def _complete(self, resp: Any) -> Any:
        h = resp.header
        rev = h.revision if h is not None and h.revision else self._kv.current_revision
        resp.header = rpc.ResponseHeader(self.cluster_id, self.member_id, rev, self._node.term)
        return resp

    def _check_quota(self, req: Any) -> None:
        size = self._backend.size
        if not quota.available(size, quota.cost(req), self._limits.quota_bytes):
            self._housekeeping.raise_nospace()
            raise errors.ErrNoSpace

    # --- KV -------------------------------------------------------------------------------------

    async def range(self, req: rpc.RangeRequest) -> rpc.RangeResponse:
        if not req.serializable:
            await self._read_index.wait_linearizable()
        return self._complete(self._kv.range(req))

    async def put(self, req: rpc.PutRequest) -> rpc.PutResponse:
        self._check_quota(req)
        return self._complete(await self._proposer.propose(put=req))

    async def delete_range(self, req: rpc.DeleteRangeRequest) -> rpc.DeleteRangeResponse:
        return self._complete(await self._proposer.propose(delete_range=req))

    async def txn(self, req: rpc.TxnRequest) -> rpc.TxnResponse:
        if is_txn_readonly(req):
            await self._read_index.wait_linearizable()
            return self._complete(self._kv.txn(req))
        self._check_quota(req)
        return self._complete(await self._proposer.propose(txn=req))

    async def compact(self, req: rpc.CompactionRequest) -> rpc.CompactionResponse:
        resp = await self._proposer.propose(compaction=req)
        if req.physical:
            await self._compaction.wait()
        return self._complete(resp)

    # --- leases ---------------------------------------------------------------------------------

    async def lease_grant(self, req: rpc.LeaseGrantRequest) -> rpc.LeaseGrantResponse:
        self._check_quota(req)
        while req.ID == 0:
            req.ID = self._idgen.next() & ((1 << 63) - 1)
        return self._complete(await self._proposer.propose(lease_grant=req))

    async def lease_revoke(self, req: rpc.LeaseRevokeRequest) -> rpc.LeaseRevokeResponse:
        return self._complete(await self._proposer.propose(lease_revoke=req))

    async def lease_renew(self, req: rpc.LeaseKeepAliveRequest) -> rpc.LeaseKeepAliveResponse:
        # etcd fills the header here, before the renew: this member's revision, not the leader's
        rev = self._kv.current_revision
        resp = await self._forwarder.call(self.leader_ops[0], req)
        resp.header = rpc.ResponseHeader(revision=rev)
        return self._complete(resp)

    async def lease_time_to_live(
        self, req: rpc.LeaseTimeToLiveRequest
    ) -> rpc.LeaseTimeToLiveResponse:
        resp = await self._forwarder.call(self.leader_ops[1], req)
        resp.header = None  # etcd's leader leaves it empty: this member's revision fills it
        return self._complete(resp)

    async def lease_leases(self, req: rpc.LeaseLeasesRequest) -> rpc.LeaseLeasesResponse:
        return self._complete(self._lessor.leases())

    async def _lease_renew_on_leader(
        self, req: rpc.LeaseKeepAliveRequest
    ) -> rpc.LeaseKeepAliveResponse:
        if not self._node.is_leader:
            raise ErrNotPrimary
        await self._wait_applied_committed()
        ttl = self._lessor.renew(req.ID, time.monotonic())
        return rpc.LeaseKeepAliveResponse(header=self.header(), ID=req.ID, TTL=ttl)

    async def _lease_time_to_live_on_leader(
        self, req: rpc.LeaseTimeToLiveRequest
    ) -> rpc.LeaseTimeToLiveResponse:
        if not self._node.is_leader:
            raise ErrNotPrimary
        await self._wait_applied_committed()
        return self._lessor.time_to_live(req.ID, req.keys, time.monotonic())

    async def _wait_applied_committed(self) -> None:
        timeout = self._limits.request_timeout
        await asyncio.wait_for(self._applied.wait(self._node.committed), timeout)

    # --- cluster and maintenance ----------------------------------------------------------------

    async def member_list(self, req: rpc.MemberListRequest) -> rpc.MemberListResponse:
        return rpc.MemberListResponse(header=self.header(), members=self._cluster.to_pb())

    async def member_add(self, req: rpc.MemberAddRequest) -> rpc.MemberAddResponse:
        return await self._member_ops.add(req)

    async def member_remove(self, req: rpc.MemberRemoveRequest) -> rpc.MemberRemoveResponse:
        return await self._member_ops.remove(req)

    async def member_update(self, req: rpc.MemberUpdateRequest) -> rpc.MemberUpdateResponse:
        return await self._member_ops.update(req)

    async def member_promote(self, req: rpc.MemberPromoteRequest) -> rpc.MemberPromoteResponse:
        return await self._member_ops.promote(req)

    async def status(self, req: rpc.StatusRequest) -> rpc.StatusResponse:
        node = self._node
        return rpc.StatusResponse(
            header=self.header(),
            version=ETCD_VERSION,
            dbSize=self._backend.size,
            leader=node.lead,
            raftIndex=node.committed,
            raftTerm=node.term,
            raftAppliedIndex=self._applier.applied_index,
            dbSizeInUse=self._backend.size_in_use,
            isLearner=self.is_learner(),
            errors=self._alarms.texts(),
        )

    async def hash(self, req: rpc.HashRequest) -> rpc.HashResponse:
        rev = self._kv.current_revision
        return rpc.HashResponse(header=self.header(rev), hash=self._kv.hash())

    async def hash_kv(self, req: rpc.HashKVRequest) -> rpc.HashKVResponse:
        h, compact, cur = self._kv.hash_kv(req.revision)
        return rpc.HashKVResponse(header=self.header(cur), hash=h, compact_revision=compact)

    async def alarm(self, req: rpc.AlarmRequest) -> rpc.AlarmResponse:
        return self._complete(await self._proposer.propose(alarm=req))

    async def defragment(self, req: rpc.DefragmentRequest) -> rpc.DefragmentResponse:
        return await self._maintenance.defragment()

    def snapshot(self, req: rpc.SnapshotRequest) -> AsyncIterator[rpc.SnapshotResponse]:
        return self._maintenance.snapshot()

    async def move_leader(self, req: rpc.MoveLeaderRequest) -> rpc.MoveLeaderResponse:
        return await self._maintenance.move_leader(req)

    # --- auth -----------------------------------------------------------------------------------

    async def auth_info(self, token: str | None) -> AuthInfo | None:
        return await self.auth.auth_info(token)

    async def authenticate(self, req: rpc.AuthenticateRequest) -> rpc.AuthenticateResponse:
        """etcd's Authenticate: check the password on this member, then propose the token
        (never the password); again if the auth store changed meanwhile."""
        await self._read_index.wait_linearizable()
        while True:
            try:
                hashed, checked_at = self.auth.password_hash(req.name)
            except errors.EtcdError as e:
                if e is not errors.ErrAuthNotEnabled:
                    log.warning("authentication_refused", user=req.name, error=e.message)
                raise
            if not await asyncio.to_thread(password_matches, req.password, hashed):
                log.warning("authentication_refused", user=req.name, error="wrong password")
                raise errors.ErrAuthFailed
            internal = rpc.InternalAuthenticateRequest(
                name=req.name, simple_token=self.auth.tokens.gen_prefix()
            )
            resp = await self._proposer.propose(authenticate=internal)
            if checked_at == self.auth.revision:
                return self._complete(resp)
            log.info("authentication_retried", reason="auth revision moved on")

    async def auth_enable(self, req: rpc.AuthEnableRequest) -> rpc.AuthEnableResponse:
        return self._complete(await self._proposer.propose(auth_enable=req))

    async def auth_disable(self, req: rpc.AuthDisableRequest) -> rpc.AuthDisableResponse:
        return self._complete(await self._proposer.propose(auth_disable=req))

    async def _hashed(self, password: str) -> str:
        # the caller may not add users at all: refuse before spending a bcrypt on it (the
        # applier would refuse the same way)
        caller = CALLER.get()
        if caller is not None:
            self.auth.is_admin_permitted(caller)
        return await asyncio.to_thread(hash_password, password, self.auth.bcrypt_cost)

    async def user_add(self, req: rpc.AuthUserAddRequest) -> rpc.AuthUserAddResponse:
        no_password = req.options is not None and req.options.no_password
        hashed = "" if no_password else await self._hashed(req.password)
        internal = rpc.AuthUserAddRequest(name=req.name, options=req.options, hashedPassword=hashed)
        return self._complete(await self._proposer.propose(auth_user_add=internal))

    async def user_change_password(
        self, req: rpc.AuthUserChangePasswordRequest
    ) -> rpc.AuthUserChangePasswordResponse:
        hashed = await self._hashed(req.password)
        internal = rpc.AuthUserChangePasswordRequest(name=req.name, hashedPassword=hashed)
        return self._complete(await self._proposer.propose(auth_user_change_password=internal))

    async def user_get(self, req: rpc.AuthUserGetRequest) -> rpc.AuthUserGetResponse:
        return self._complete(await self._proposer.propose(auth_user_get=req))

    async def user_list(self, req: rpc.AuthUserListRequest) -> rpc.AuthUserListResponse:
        return self._complete(await self._proposer.propose(auth_user_list=req))

    async def user_delete(self, req: rpc.AuthUserDeleteRequest) -> rpc.AuthUserDeleteResponse:
        return self._complete(await self._proposer.propose(auth_user_delete=req))

    async def user_grant_role(
        self, req: rpc.AuthUserGrantRoleRequest
    ) -> rpc.AuthUserGrantRoleResponse:
        return self._complete(await self._proposer.propose(auth_user_grant_role=req))

    async def user_revoke_role(
        self, req: rpc.AuthUserRevokeRoleRequest
    ) -> rpc.AuthUserRevokeRoleResponse:
        return self._complete(await self._proposer.propose(auth_user_revoke_role=req))

    async def role_add(self, req: rpc.AuthRoleAddRequest) -> rpc.AuthRoleAddResponse:
        return self._complete(await self._proposer.propose(auth_role_add=req))

    async def role_get(self, req: rpc.AuthRoleGetRequest) -> rpc.AuthRoleGetResponse:
        return self._complete(await self._proposer.propose(auth_role_get=req))

    async def role_list(self, req: rpc.AuthRoleListRequest) -> rpc.AuthRoleListResponse:
        return self._complete(await self._proposer.propose(auth_role_list=req))

    async def role_delete(self, req: rpc.AuthRoleDeleteRequest) -> rpc.AuthRoleDeleteResponse:
        return self._complete(await self._proposer.propose(auth_role_delete=req))

    async def role_grant_permission(
        self, req: rpc.AuthRoleGrantPermissionRequest
    ) -> rpc.AuthRoleGrantPermissionResponse:
        return self._complete(await self._proposer.propose(auth_role_grant_permission=req))

    async def role_revoke_permission(
        self, req: rpc.AuthRoleRevokePermissionRequest
    ) -> rpc.AuthRoleRevokePermissionResponse:
        return self._complete(await self._proposer.propose(auth_role_revoke_permission=req))

    def new_watch_stream(self, on_ready: Callable[[], None]) -> ServerWatchStream:
        return self._watch_streams.wrap(self._kv.new_watch_stream(on_ready))

    def has_leader(self) -> bool:
        return self._node.lead != NONE

    def is_healthy(self) -> bool:
        return self.has_leader() and not self._alarms.active

    def metrics_exposition(self) -> bytes:
        return self._metrics.exposition()


class ServerWatchStream:
    """mvcc's WatchStream with complete response headers."""

    def __init__(self, streams: WatchStreams, inner: WatchStream) -> None:
        self._streams = streams
        self._inner = inner

    def create(self, req: rpc.WatchCreateRequest) -> int:
        return self._inner.create(req)

    def refuse(self, reason: str) -> None:
        self._inner.refuse(reason)

    def cancel(self, watch_id: int) -> bool:
        return self._inner.cancel(watch_id)

    def request_progress(self) -> None:
        self._inner.request_progress()

    def progress_notify(self) -> None:
        self._inner.progress_notify()

    def drain(self) -> list[rpc.WatchResponse]:
        out = self._inner.drain()
        st = self._streams
        term = st.term()
        for r in out:
            rev = r.header.revision if r.header is not None else 0
            r.header = rpc.ResponseHeader(st.cluster_id, st.member_id, rev, term)
        return out

    def close(self) -> None:
        self._inner.close()
        self._streams.open.discard(self)

    @property
    def watch_ids(self) -> list[int]:
        return self._inner.watch_ids
