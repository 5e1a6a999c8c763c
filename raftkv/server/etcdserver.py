"""EtcdServer: one member's client-facing operations over the Raft node, MVCC and the lessor.

The API layer (``raftkv.api``) calls the coroutine methods below with decoded requests and gets
responses whose header is complete (cluster_id, member_id, revision, raft_term) or an
``EtcdError``. Writes go through Raft (``propose``), linearizable reads through ReadIndex
(``read_index``), serializable reads straight to MVCC. The jobs are split by concern:
``raft_node`` (Ready loop), ``apply`` (applier), ``propose`` (ids, waiters, timeouts),
``read_index``, ``snapshot``, ``housekeeping`` (leases, compaction, watch sync, commits,
publishing this member's attributes), ``membership``, ``lease_http`` (forwarding to the leader).
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

import structlog

from raftkv import errors
from raftkv.config import Settings
from raftkv.errors import EtcdError
from raftkv.lease import ErrNotPrimary, Lessor
from raftkv.mvcc import KVStore, WatchStream, is_txn_readonly
from raftkv.pb import rpc
from raftkv.raft import (
    NONE,
    Config,
    Entry,
    Message,
    RawNode,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)
from raftkv.server import lease_http, quota
from raftkv.server.alarms import alarm_text
from raftkv.server.apply import Applier
from raftkv.server.compactor import Compactor
from raftkv.server.diskfull import is_disk_full
from raftkv.server.housekeeping import Housekeeping
from raftkv.server.maintenance import Maintenance
from raftkv.server.member_ops import MemberOps
from raftkv.server.membership import RaftCluster
from raftkv.server.metrics import ServerMetrics
from raftkv.server.propose import Proposer
from raftkv.server.raft_node import RaftNode
from raftkv.server.read_index import AppliedWaiters, ReadIndexer
from raftkv.server.snapshot import Snapshots
from raftkv.server.storage import MemberStorage
from raftkv.server.tasks import spawn
from raftkv.server.wait import DROPPED, IdGenerator, Wait
from raftkv.transport import Transport

__all__ = ["ETCD_VERSION", "EtcdServer"]

log = structlog.get_logger("raftkv.server")

ETCD_VERSION = "3.4.23"


class EtcdServer:
    def __init__(
        self, cfg: Settings, ms: MemberStorage, fatal: Callable[[BaseException], None]
    ) -> None:
        self.cfg = cfg
        self.member_id = ms.member_id
        self.cluster_id = ms.cluster_id
        self.max_request_bytes = cfg.max_request_bytes
        self.max_txn_ops = cfg.max_txn_ops
        self.request_timeout = cfg.request_timeout
        self.election_timeout = cfg.election_timeout / 1000.0
        self.name = cfg.name
        self.client_urls = list(cfg.advertise_client_urls)
        self._fatal = fatal

        self.backend = ms.backend
        self.snapshotter = ms.snapshotter
        self.cluster: RaftCluster = ms.cluster
        self.lessor = Lessor(self.backend, min_ttl=_min_ttl(cfg))
        self.kv = KVStore(self.backend, self.lessor)

        self.wait = Wait()
        self.idgen = IdGenerator(self.member_id)
        self.applied = AppliedWaiters()
        self.applier = Applier(self)
        self.applier.load_alarms()
        self.proposer = Proposer(self)
        self.snapshots = Snapshots(
            self, cfg.snapshot_count, cfg.experimental_snapshot_catchup_entries
        )
        if ms.snapshot is not None:
            m = ms.snapshot.metadata
            self.applier.applied_index = m.index
            self.applier.applied_term = m.term
            self.applier.conf_state = m.conf_state
            self.snapshots.snap_index = m.index
        self.applied.applied_to(self.applier.applied_index)

        rc = Config(
            id=self.member_id,
            election_tick=cfg.election_ticks,
            heartbeat_tick=1,
            max_size_per_msg=1 << 20,
            max_inflight_msgs=4096 // 8,
            check_quorum=True,
            pre_vote=True,
        )
        rn = RawNode(rc, ms.storage)
        if ms.bootstrap:
            rn.bootstrap(sorted(self.cluster.members))
        self.transport = Transport(
            self.member_id,
            self.cluster_id,
            on_message=self._on_peer_message,
            report_unreachable=self._report_unreachable,
            on_snapshot=self._on_snapshot,
            listen_peer_url=cfg.listen_peer_urls[0],
            request_timeout=self.request_timeout,
        )
        self.transport.is_removed = lambda peer_id: peer_id in self.cluster.removed
        self.transport.on_removed = lambda: self.member_ops.removed_by_peers()
        for m in self.cluster.members.values():
            if m.id != self.member_id and m.peer_urls:
                self.transport.add_peer(m.id, m.peer_urls)
        self.node = RaftNode(
            rn,
            ms.wal,
            ms.snapshotter,
            self.transport.send,
            cfg.heartbeat_interval / 1000.0,
            fatal,
        )
        self.node.handler = self
        self.read_index = ReadIndexer(self.node, self.applied, self.request_timeout)
        self.watch_streams: weakref.WeakSet[ServerWatchStream] = weakref.WeakSet()
        self.housekeeping = Housekeeping(self)
        self.metrics = ServerMetrics(self)
        self.node.wal.fsync_observer = self.metrics.observe_wal_fsync
        self.backend.commit_observer = self.metrics.observe_backend_commit
        self.backend.commit_error_observer = self._on_commit_error
        self.maintenance = Maintenance(self)
        self.member_ops = MemberOps(self)
        self.compactor = Compactor(self, cfg.auto_compaction_mode, cfg.auto_compaction_retention)
        self._stopped = False

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.transport.start()
        self.node.start()
        self.read_index.start()
        self.housekeeping.start()
        self.compactor.start()
        if list(self.cluster.members) == [self.member_id]:
            # a one-member cluster need not wait an election timeout (etcd advances its ticks)
            asyncio.get_running_loop().call_later(0.05, self.node.campaign)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self.compactor.stop()
        await self.housekeeping.stop()
        await self.read_index.stop()
        await self.node.stop()
        await self.transport.stop()
        self.wait.fail_all(errors.ErrStopped)
        try:
            self.backend.commit()
        finally:
            self.backend.close()
            self.node.wal.close()

    # --- helpers --------------------------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.node.rn.term

    @property
    def leader(self) -> int:
        return self.node.lead

    def is_leader(self) -> bool:
        return self.node.rn.is_leader

    def header(self, revision: int | None = None) -> rpc.ResponseHeader:
        return rpc.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self.kv.current_revision if revision is None else revision,
            raft_term=self.term,
        )

    def _complete(self, resp: Any) -> Any:
        h = resp.header
        rev = h.revision if h is not None and h.revision else self.kv.current_revision
        resp.header = rpc.ResponseHeader(self.cluster_id, self.member_id, rev, self.term)
        return resp

    async def _propose(self, **fields: Any) -> Any:
        try:
            return await self.proposer.propose(rpc.InternalRaftRequest(**fields))
        except EtcdError as e:
            self.metrics.on_proposal_error(e)
            raise

    def _check_quota(self, req: Any) -> None:
        if not quota.available(self.backend.size, quota.cost(req), self.cfg.quota_bytes):
            self.housekeeping.raise_nospace()
            raise errors.ErrNoSpace

    # --- KV -------------------------------------------------------------------------------------

    async def range(self, req: rpc.RangeRequest) -> rpc.RangeResponse:
        if not req.serializable:
            await self.read_index.wait_linearizable()
        return self._complete(self.kv.range(req))

    async def put(self, req: rpc.PutRequest) -> rpc.PutResponse:
        self._check_quota(req)
        return self._complete(await self._propose(put=req))

    async def delete_range(self, req: rpc.DeleteRangeRequest) -> rpc.DeleteRangeResponse:
        return self._complete(await self._propose(delete_range=req))

    async def txn(self, req: rpc.TxnRequest) -> rpc.TxnResponse:
        if is_txn_readonly(req):
            await self.read_index.wait_linearizable()
            return self._complete(self.kv.txn(req))
        self._check_quota(req)
        return self._complete(await self._propose(txn=req))

    async def compact(self, req: rpc.CompactionRequest) -> rpc.CompactionResponse:
        resp = await self._propose(compaction=req)
        if req.physical:
            await self.housekeeping.wait_compaction()
        return self._complete(resp)

    # --- leases ---------------------------------------------------------------------------------

    async def lease_grant(self, req: rpc.LeaseGrantRequest) -> rpc.LeaseGrantResponse:
        self._check_quota(req)
        while req.ID == 0:
            req.ID = self.idgen.next() & ((1 << 63) - 1)
        return self._complete(await self._propose(lease_grant=req))

    async def lease_revoke(self, req: rpc.LeaseRevokeRequest) -> rpc.LeaseRevokeResponse:
        return self._complete(await self._propose(lease_revoke=req))

    async def lease_renew(self, req: rpc.LeaseKeepAliveRequest) -> rpc.LeaseKeepAliveResponse:
        # etcd fills the header here, before the renew: this member's revision, not the leader's
        rev = self.kv.current_revision
        resp = await self._to_leader(
            self.lease_renew_local, lease_http.LEASE_PATH, req, rpc.LeaseKeepAliveResponse
        )
        resp.header = rpc.ResponseHeader(revision=rev)
        return self._complete(resp)

    async def lease_time_to_live(
        self, req: rpc.LeaseTimeToLiveRequest
    ) -> rpc.LeaseTimeToLiveResponse:
        resp = await self._to_leader(
            self.lease_time_to_live_local,
            lease_http.LEASE_TTL_PATH,
            req,
            rpc.LeaseTimeToLiveResponse,
        )
        resp.header = None  # etcd's leader leaves it empty: this member's revision fills it
        return self._complete(resp)

    async def lease_leases(self, req: rpc.LeaseLeasesRequest) -> rpc.LeaseLeasesResponse:
        return self._complete(self.lessor.leases())

    async def lease_renew_local(self, req: rpc.LeaseKeepAliveRequest) -> rpc.LeaseKeepAliveResponse:
        if not self.is_leader():
            raise ErrNotPrimary
        await self._wait_applied_committed()
        ttl = self.lessor.renew(req.ID, time.monotonic())
        return rpc.LeaseKeepAliveResponse(header=self.header(), ID=req.ID, TTL=ttl)

    async def lease_time_to_live_local(
        self, req: rpc.LeaseTimeToLiveRequest
    ) -> rpc.LeaseTimeToLiveResponse:
        if not self.is_leader():
            raise ErrNotPrimary
        await self._wait_applied_committed()
        return self.lessor.time_to_live(req.ID, req.keys, time.monotonic())

    async def _wait_applied_committed(self) -> None:
        await asyncio.wait_for(self.applied.wait(self.node.committed), self.request_timeout)

    async def _to_leader(self, local: Any, path: str, req: Any, cls: type) -> Any:
        """Run ``local`` on the leader: here, or forwarded over the peer listener; retried
        across leader changes until the request timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.request_timeout
        while True:
            lead = self.leader
            try:
                if lead == self.member_id:
                    return await local(req)
                if lead != NONE:
                    left = max(deadline - loop.time(), 0.1)
                    return await lease_http.forward(self, lead, path, req, left)
            except EtcdError as e:
                if e is not ErrNotPrimary:
                    raise
            except (OSError, TimeoutError, ConnectionError):
                pass
            if loop.time() >= deadline:
                raise errors.ErrTimeout
            if not await self.proposer.wait_leader(deadline):
                raise errors.ErrNoLeader  # etcd's waitLeader: the deadline came, no leader
            await asyncio.sleep(0.05)

    # --- cluster and maintenance ----------------------------------------------------------------

    async def member_list(self, req: rpc.MemberListRequest) -> rpc.MemberListResponse:
        return rpc.MemberListResponse(header=self.header(), members=self.cluster.to_pb())

    async def member_add(self, req: rpc.MemberAddRequest) -> rpc.MemberAddResponse:
        return await self.member_ops.add(req)

    async def member_remove(self, req: rpc.MemberRemoveRequest) -> rpc.MemberRemoveResponse:
        return await self.member_ops.remove(req)

    async def member_update(self, req: rpc.MemberUpdateRequest) -> rpc.MemberUpdateResponse:
        return await self.member_ops.update(req)

    async def member_promote(self, req: rpc.MemberPromoteRequest) -> rpc.MemberPromoteResponse:
        return await self.member_ops.promote(req)

    async def status(self, req: rpc.StatusRequest) -> rpc.StatusResponse:
        return rpc.StatusResponse(
            header=self.header(),
            version=ETCD_VERSION,
            dbSize=self.backend.size,
            leader=self.leader,
            raftIndex=self.node.committed,
            raftTerm=self.term,
            raftAppliedIndex=self.applier.applied_index,
            dbSizeInUse=self.backend.size_in_use,
            isLearner=self.is_learner(),
            errors=[alarm_text(a) for a in self.applier.alarms.values()],
        )

    def is_learner(self) -> bool:
        m = self.cluster.members.get(self.member_id)
        return m is not None and m.is_learner

    async def hash(self, req: rpc.HashRequest) -> rpc.HashResponse:
        rev = self.kv.current_revision
        return rpc.HashResponse(header=self.header(rev), hash=self.kv.hash())

    async def hash_kv(self, req: rpc.HashKVRequest) -> rpc.HashKVResponse:
        h, compact, cur = self.kv.hash_kv(req.revision)
        return rpc.HashKVResponse(header=self.header(cur), hash=h, compact_revision=compact)

    async def alarm(self, req: rpc.AlarmRequest) -> rpc.AlarmResponse:
        return self._complete(await self._propose(alarm=req))

    async def defragment(self, req: rpc.DefragmentRequest) -> rpc.DefragmentResponse:
        return await self.maintenance.defragment()

    def snapshot(self, req: rpc.SnapshotRequest) -> AsyncIterator[rpc.SnapshotResponse]:
        return self.maintenance.snapshot()

    async def move_leader(self, req: rpc.MoveLeaderRequest) -> rpc.MoveLeaderResponse:
        return await self.maintenance.move_leader(req)

    def new_watch_stream(self, on_ready: Callable[[], None]) -> ServerWatchStream:
        ws = ServerWatchStream(self, self.kv.new_watch_stream(on_ready))
        self.watch_streams.add(ws)
        return ws

    def is_healthy(self) -> bool:
        return self.leader != NONE and not self.applier.alarms

    def metrics_exposition(self) -> bytes:
        return self.metrics.exposition()

    # --- ReadyHandler (called by the Ready loop) ------------------------------------------------

    def on_soft_state(self, ss: SoftState) -> None:
        self.metrics.on_leader(ss.lead)
        self.proposer.on_leader_change(ss.lead)
        self.read_index.on_leader_change()
        if ss.raft_state == StateType.LEADER:
            if not self.lessor.is_primary:
                self.lessor.promote(time.monotonic(), extend=self.election_timeout)
        elif self.lessor.is_primary:
            self.lessor.demote()

    def on_read_states(self, states: list[ReadState]) -> None:
        self.read_index.on_read_states(states)

    def send_snapshot(self, m: Message) -> None:
        self.snapshots.send(m)

    def apply_snapshot(self, snap: Snapshot) -> None:
        self.snapshots.install(snap)

    def apply_entries(self, entries: list[Entry]) -> None:
        self.applier.apply_entries(entries)

    def after_ready(self) -> None:
        self.snapshots.maybe_trigger()

    def on_dropped(self, req_ids: list[int]) -> None:
        for i in req_ids:
            self.wait.trigger(i, DROPPED)

    def on_applied(self, index: int) -> None:
        self.applied.applied_to(index)

    # --- used by the applier and snapshots ------------------------------------------------------

    def swap_backend(self, backend: Any) -> None:
        backend.commit_observer = self.backend.commit_observer
        backend.commit_error_observer = self._on_commit_error
        self.backend = backend
        self.kv.restore(backend, time.monotonic())
        self.applier.load_alarms()
        self.cluster.load(backend)
        for m in self.cluster.members.values():
            if m.id == self.member_id or not m.peer_urls:
                continue
            if m.id in self.transport.peers:
                self.transport.update_peer(m.id, m.peer_urls)
            else:
                self.transport.add_peer(m.id, m.peer_urls)

    def _on_commit_error(self, e: BaseException) -> None:
        """A backend commit failed. A full disk stops the member (diskfull.py); whatever else
        was rolled back is retried by the next commit."""
        if is_disk_full(e) and not self._stopped:
            self._fatal(e)

    def schedule_compaction(self) -> None:
        self.housekeeping.schedule_compaction()

    def remove_peer_later(self, peer_id: int) -> None:
        spawn(self.transport.remove_peer(peer_id))

    # --- from the transport ---------------------------------------------------------------------

    def _on_peer_message(self, m: Message) -> None:
        self.node.step(m)

    def _report_unreachable(self, peer_id: int) -> None:
        if not self._stopped:
            self.node.report_unreachable(peer_id)

    async def _on_snapshot(self, m: Message, body: AsyncIterator[bytes]) -> None:
        await self.snapshots.receive(m, body)


class ServerWatchStream:
    """mvcc's WatchStream with complete response headers."""

    def __init__(self, server: EtcdServer, inner: WatchStream) -> None:
        self._s = server
        self._inner = inner

    def create(self, req: rpc.WatchCreateRequest) -> int:
        return self._inner.create(req)

    def cancel(self, watch_id: int) -> bool:
        return self._inner.cancel(watch_id)

    def request_progress(self) -> None:
        self._inner.request_progress()

    def progress_notify(self) -> None:
        self._inner.progress_notify()

    def drain(self) -> list[rpc.WatchResponse]:
        out = self._inner.drain()
        s = self._s
        term = s.term
        for r in out:
            rev = r.header.revision if r.header is not None else 0
            r.header = rpc.ResponseHeader(s.cluster_id, s.member_id, rev, term)
        return out

    def close(self) -> None:
        self._inner.close()
        self._s.watch_streams.discard(self)

    @property
    def watch_ids(self) -> list[int]:
        return self._inner.watch_ids


def _min_ttl(cfg: Settings) -> int:
    # etcd: minTTL = (3 * electionTicks / 2) heartbeats, rounded up to whole seconds
    ticks = (3 * cfg.election_ticks) // 2
    return max(math.ceil(ticks * cfg.heartbeat_interval / 1000.0), 1)
