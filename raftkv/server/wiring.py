"""The composition root of a member: builds every part with the narrow dependencies it uses,
and starts and stops them in order.

Nothing else in ``raftkv.server`` constructs a collaborator or reaches a sibling: each part
gets, in its constructor, exactly the objects or callables it calls (see each module's
``__init__``), so each can be built and tested alone. The Raft driver and the transport are
the two that need to call back into the member; they get their handler at ``start``
(``RaftNode.start(ReadyHooks)``, ``Transport.start(PeerHooks)``), never by mutation.

Build order (each line uses only what is above it)::

    storage (opened by storage.py) -> lessor, kv, cindex, alarms, cluster
    transport -> RaftNode(RawNode, wal, send=transport.send)
    wait, idgen, applied waiters -> auth store (tokens wait for applied indexes)
    -> loop-lag probe -> metrics
    -> proposer -> forwarder, read index
    watch streams, housekeeping -> physical compaction, member ops -> applier -> snapshots
    -> maintenance -> EtcdServer (the client facade) -> auto-compactor

Start: loop-lag probe, transport, Raft loop, read index, housekeeping, compaction, compactor
(then the caller serves the peer and client listeners). Stop: the reverse, then every waiter
fails with "server stopped", the backend commits its batch, and the files are closed.
"""

from __future__ import annotations

import asyncio
import math
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import structlog
from aiohttp import web

from raftkv import errors
from raftkv.auth import AuthStore, new_token_provider
from raftkv.auth.tokens import wait_index
from raftkv.config import Settings
from raftkv.lease import Lessor
from raftkv.lease.lessor import DEFAULT_CHECKPOINT_INTERVAL
from raftkv.mvcc import KVStore
from raftkv.mvcc.kvstore import PreparedIndex
from raftkv.pb import rpc
from raftkv.raft import Config, Entry, Message, RawNode, ReadState, Snapshot, SoftState, StateType
from raftkv.server import gcpause
from raftkv.server.alarms import Alarms
from raftkv.server.applier import Applier
from raftkv.server.cindex import ConsistentIndex
from raftkv.server.compaction import PhysicalCompaction
from raftkv.server.compactor import Compactor
from raftkv.server.diskfull import is_disk_full
from raftkv.server.etcdserver import ClientLimits, EtcdServer, WatchStreams
from raftkv.server.forward import LeaderForwarder
from raftkv.server.housekeeping import Housekeeping
from raftkv.server.looplag import LoopLagProbe
from raftkv.server.maintenance import Maintenance
from raftkv.server.member_ops import MemberOps
from raftkv.server.membership import RaftCluster
from raftkv.server.metrics import ServerMetrics
from raftkv.server.propose import Proposer
from raftkv.server.raft_node import RaftNode
from raftkv.server.read_index import AppliedWaiters, ReadIndexer
from raftkv.server.snapshot import Snapshots
from raftkv.server.storage import MemberStorage
from raftkv.server.wait import DROPPED, IdGenerator, Wait
from raftkv.transport import Transport

__all__ = ["Member", "PeerHooks", "ReadyHooks", "build_member", "min_lease_ttl"]

log = structlog.get_logger("raftkv.server")


# RAFTKV_LEASE_CHECKPOINT_INTERVAL (seconds) shortens etcd's 5 minutes between lease
# checkpoints, for tests (etcd 3.4 has no flag for it).


def min_lease_ttl(cfg: Settings) -> int:
    """etcd's minTTL: (3 * electionTicks / 2) heartbeats, rounded up to whole seconds."""
    ticks = (3 * cfg.election_ticks) // 2
    return max(math.ceil(ticks * cfg.heartbeat_interval / 1000.0), 1)


@dataclass(frozen=True, slots=True, kw_only=True)
class ReadyHooks:
    """What the Ready loop hands to the rest of the member (``raft_node.ReadyHandler``)."""

    metrics: ServerMetrics
    proposer: Proposer
    read_index: ReadIndexer
    lessor: Lessor
    snapshots: Snapshots
    applier: Applier
    wait: Wait
    election_timeout: float

    def on_soft_state(self, ss: SoftState) -> None:
        self.metrics.on_leader(ss.lead)
        self.proposer.on_leader_change(ss.lead)
        self.read_index.on_leader_change()
        lessor = self.lessor
        if ss.raft_state == StateType.LEADER:
            if not lessor.is_primary:
                lessor.promote(time.monotonic(), extend=self.election_timeout)
        elif lessor.is_primary:
            lessor.demote()

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


@dataclass(slots=True, kw_only=True)
class PeerHooks:
    """What the transport delivers to the member (``transport.PeerInbox``)."""

    node: RaftNode
    snapshots: Snapshots
    cluster: RaftCluster
    removed: Callable[[], None]
    stopped: bool = False

    def on_message(self, m: Message) -> None:
        self.node.step(m)

    def report_unreachable(self, peer_id: int) -> None:
        if not self.stopped:
            self.node.report_unreachable(peer_id)

    async def on_snapshot(self, m: Message, body: AsyncIterator[bytes]) -> None:
        await self.snapshots.receive(m, body)

    def is_removed(self, peer_id: int) -> bool:
        return peer_id in self.cluster.removed

    def on_removed(self) -> None:
        self.removed()


class Member:
    """One member's parts, built and joined; ``server`` is the client facade."""

    def __init__(
        self,
        cfg: Settings,
        ms: MemberStorage,
        fatal: Callable[[BaseException], None],
        peer_ssl: ssl.SSLContext | None = None,
    ):
        self.cfg = cfg
        self.member_id = ms.member_id
        self.cluster_id = ms.cluster_id
        self._fatal = fatal
        self._stopped = False
        request_timeout = cfg.request_timeout
        election_timeout = cfg.election_timeout / 1000.0
        heartbeat = cfg.heartbeat_interval / 1000.0

        # --- state beside the log ---
        self.backend = backend = ms.backend
        self.snapshotter = ms.snapshotter
        self.cluster = cluster = ms.cluster
        self.lessor = lessor = Lessor(
            backend,
            min_ttl=min_lease_ttl(cfg),
            checkpointing=cfg.experimental_enable_lease_checkpoint,
            checkpoint_interval=float(
                os.environ.get("RAFTKV_LEASE_CHECKPOINT_INTERVAL", DEFAULT_CHECKPOINT_INTERVAL)
            ),
        )
        t0 = time.monotonic()
        self.kv = kv = KVStore(backend, lessor)  # (its index rebuilt from the backend)
        log.info(
            "mvcc_index_restored",
            source=kv.restored_from,
            keys=kv.key_count,
            revision=kv.current_revision,
            took_ms=round((time.monotonic() - t0) * 1000),
        )
        self.cindex = ConsistentIndex(backend)
        self.alarms = alarms = Alarms(backend)

        # --- Raft and the peers ---
        self.transport = transport = Transport(
            self.member_id,
            self.cluster_id,
            listen_peer_url=cfg.listen_peer_urls[0],
            request_timeout=request_timeout,
            client_ssl=peer_ssl,
        )
        for m in cluster.members.values():
            if m.id != self.member_id and m.peer_urls:
                transport.add_peer(m.id, m.peer_urls)
        rn = RawNode(
            Config(
                id=self.member_id,
                election_tick=cfg.election_ticks,
                heartbeat_tick=1,
                max_size_per_msg=1 << 20,
                max_inflight_msgs=4096 // 8,
                check_quorum=True,
                pre_vote=True,
            ),
            ms.storage,
        )
        if ms.bootstrap:
            rn.bootstrap(sorted(cluster.members))
        self.node = node = RaftNode(rn, ms.wal, ms.snapshotter, transport.send, heartbeat, fatal)

        # --- proposals and reads ---
        self.wait = wait = Wait()
        idgen = IdGenerator(self.member_id)
        applied = AppliedWaiters()
        me = self.member_id
        tokens = new_token_provider(
            cfg.auth_token,
            float(cfg.auth_token_ttl),
            lambda index: wait_index(applied.wait, index, request_timeout),
        )
        self.auth = auth = AuthStore(backend, tokens, cfg.bcrypt_cost)

        def is_learner() -> bool:
            m = cluster.members.get(me)
            return m is not None and m.is_learner

        self.loop_lag = LoopLagProbe()
        self.gc_pauses = gcpause.shared()
        self.metrics = metrics = ServerMetrics(
            member_id=me,
            node=node,
            applied_index=lambda: applied.applied,
            is_learner=is_learner,
            wait=wait,
            backend=backend,
            kv=kv,
            transport=transport,
            quota_bytes=cfg.quota_bytes,
            loop_lag=self.loop_lag,
            gc_pauses=self.gc_pauses,
        )
        ms.wal.fsync_observer = metrics.observe_wal_fsync
        backend.commit_observer = metrics.observe_backend_commit
        backend.commit_error_observer = self._on_commit_error
        self.proposer = proposer = Proposer(
            node=node,
            wait=wait,
            idgen=idgen,
            applied_index=lambda: applied.applied,
            member_id=me,
            members=lambda: cluster.members,
            active_since=transport.active_since,
            request_timeout=request_timeout,
            election_timeout=election_timeout,
            on_error=metrics.on_proposal_error,
        )
        self.forwarder = forwarder = LeaderForwarder(
            member_id=me,
            leader=lambda: node.lead,
            peers=transport,
            wait_leader=proposer.wait_leader,
            request_timeout=request_timeout,
        )
        self.read_index = read_index = ReadIndexer(node, applied, request_timeout)

        # --- background work ---
        self.watch_streams = watch_streams = WatchStreams(self.cluster_id, me, lambda: node.term)
        self.housekeeping = housekeeping = Housekeeping(
            backend=backend,
            kv=kv,
            lessor=lessor,
            alarms=alarms,
            wait=wait,
            propose=proposer.propose,
            is_leader=lambda: node.is_leader,
            watch_streams=lambda: watch_streams.open,
            attributes=rpc.Member(ID=me, name=cfg.name, clientURLs=list(cfg.advertise_client_urls)),
        )

        # --- applying ---
        self.compaction = compaction = PhysicalCompaction(kv)
        self.member_ops = member_ops = MemberOps(
            node=node,
            cluster=cluster,
            peers=transport,
            backend=backend,
            wait=wait,
            idgen=idgen,
            header=lambda: rpc.ResponseHeader(
                cluster_id=self.cluster_id, member_id=me, raft_term=node.term
            ),
            to_leader=forwarder.call,
            request_timeout=request_timeout,
            on_removed=fatal,
            strict_reconfig_check=cfg.strict_reconfig_check,
        )
        self.applier = applier = Applier(
            kv=kv,
            lessor=lessor,
            backend=backend,
            cindex=self.cindex,
            alarms=alarms,
            auth=auth,
            cluster=cluster,
            wait=wait,
            apply_conf_change=member_ops.apply,
            schedule_compaction=compaction.schedule,
            on_applied=applied.applied_to,
            quota_bytes=cfg.quota_bytes,
            raise_nospace=housekeeping.raise_nospace,
        )
        snap_index = 0
        if ms.snapshot is not None:
            meta = ms.snapshot.metadata
            applier.restore(meta.index, meta.term, meta.conf_state)
            snap_index = meta.index
        self.snapshots = snapshots = Snapshots(
            node=node,
            backend=backend,
            snapshotter=ms.snapshotter,
            applier=applier,
            send_snapshot=transport.send_snapshot,
            on_installed=self._reload_beside_backend,
            snapshot_count=cfg.snapshot_count,
            catchup_entries=cfg.experimental_snapshot_catchup_entries,
            snap_index=snap_index,
        )

        # --- maintenance, the client facade ---
        maintenance = Maintenance(
            backend=backend,
            node=node,
            cluster=cluster,
            temp_dir=ms.snapshotter.dirpath,
            request_timeout=request_timeout,
            heartbeat=heartbeat,
        )
        self.server = server = EtcdServer(
            member_id=me,
            cluster_id=self.cluster_id,
            limits=ClientLimits(
                max_request_bytes=cfg.max_request_bytes,
                max_txn_ops=cfg.max_txn_ops,
                quota_bytes=cfg.quota_bytes,
                request_timeout=request_timeout,
                election_timeout=election_timeout,
            ),
            cluster=cluster,
            node=node,
            kv=kv,
            lessor=lessor,
            backend=backend,
            alarms=alarms,
            auth=auth,
            applier=applier,
            applied=applied,
            idgen=idgen,
            proposer=proposer,
            read_index=read_index,
            forwarder=forwarder,
            member_ops=member_ops,
            maintenance=maintenance,
            housekeeping=housekeeping,
            compaction=compaction,
            metrics=metrics,
            watch_streams=watch_streams,
            is_learner=is_learner,
        )
        self.compactor = Compactor(
            compact=server.compact,
            current_revision=lambda: kv.current_revision,
            is_leader=lambda: node.is_leader,
            mode=cfg.auto_compaction_mode,
            retention=cfg.auto_compaction_retention,
        )
        self._ready_hooks = ReadyHooks(
            metrics=metrics,
            proposer=proposer,
            read_index=read_index,
            lessor=lessor,
            snapshots=snapshots,
            applier=applier,
            wait=wait,
            election_timeout=election_timeout,
        )
        self._peer_hooks = PeerHooks(
            node=node, snapshots=snapshots, cluster=cluster, removed=member_ops.removed_by_peers
        )

    # --- what the member's listeners serve ---------------------------------------------------

    def peer_routes(self) -> list[web.RouteDef]:
        """The Raft streams, the snapshot stream, and the leader-only requests forwarded here."""
        ops = (*self.server.leader_ops, self.member_ops.promote_op)
        return [*self.transport.routes(), *self.forwarder.routes(ops)]

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self.loop_lag.start()
        self.gc_pauses.start()
        self.transport.start(self._peer_hooks)
        self.node.start(self._ready_hooks)
        self.read_index.start()
        self.housekeeping.start()
        self.compaction.start()
        self.compactor.start()
        if list(self.cluster.members) == [self.member_id]:
            # a one-member cluster need not wait an election timeout (etcd advances its ticks)
            asyncio.get_running_loop().call_later(0.05, self.node.campaign)

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._peer_hooks.stopped = True
        await self.compactor.stop()
        await self.compaction.stop()
        await self.housekeeping.stop()
        await self.read_index.stop()
        await self.snapshots.stop()
        await self.node.stop()
        await self.transport.stop()
        self.loop_lag.stop()
        self.gc_pauses.stop()
        self.wait.fail_all(errors.ErrStopped)
        try:
            self.backend.commit()
            self.kv.save_image()  # (the next start takes it instead of rebuilding the index)
        finally:
            self.backend.close()
            self.node.wal.close()

    # --- the backend's file was replaced, a commit failed ------------------------------------

    def _reload_beside_backend(self, prepared: PreparedIndex | None) -> None:
        """A snapshot's db replaced the backend's file: rebuild everything read from it
        (``prepared``: its MVCC index, already read)."""
        self.cindex.reload()
        self.kv.restore(None, time.monotonic(), prepared=prepared)
        self.alarms.load()
        self.auth.load()
        self.cluster.load(self.backend)
        transport = self.transport
        for m in self.cluster.members.values():
            if m.id == self.member_id or not m.peer_urls:
                continue
            if m.id in transport.peers:
                transport.update_peer(m.id, m.peer_urls)
            else:
                transport.add_peer(m.id, m.peer_urls)

    def _on_commit_error(self, e: BaseException) -> None:
        """A backend commit failed. A full disk stops the member (diskfull.py); whatever else
        was rolled back is retried by the next commit."""
        if is_disk_full(e) and not self._stopped:
            self._fatal(e)


def build_member(
    cfg: Settings,
    ms: MemberStorage,
    fatal: Callable[[BaseException], None],
    peer_ssl: ssl.SSLContext | None = None,
) -> Member:
    """The member for ``cfg`` over storage opened by ``storage.open_member_storage``;
    ``peer_ssl`` is how it dials https peers."""
    return Member(cfg, ms, fatal, peer_ssl)
