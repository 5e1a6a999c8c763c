"""A member's durable state at start: a new data dir, or recovery of an existing one.

Recovery (docs/ARCHITECTURE.md §4): open the backend (its meta bucket holds the consistent index) ->
load the newest snapshot file the WAL also marks -> if the backend is older than that snapshot
and the snapshot's received db image is there, install it (a crash between receiving a snapshot
and swapping it in) -> open the WAL at the snapshot, verify it, replay it into MemoryStorage ->
the Raft core starts from there and the applier skips entries <= the consistent index.

WAL metadata (written once, at create) = msgpack ``[member_id, cluster_id]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import msgpack
import structlog

from raftkv.backend import Backend
from raftkv.config import Settings
from raftkv.raft import MemoryStorage, Snapshot
from raftkv.server.cindex import read_consistent_index
from raftkv.server.membership import RaftCluster
from raftkv.snap import Snapshotter
from raftkv.wal import WAL, WalSnapshot

__all__ = ["MemberStorage", "StartupError", "open_member_storage"]

log = structlog.get_logger("raftkv.server")

# The backend commits on entry boundaries, driven by the applier (see applier.py), never inside
# a write: so a commit never persists half an entry together with that entry's index.
BACKEND_BATCH_LIMIT = 1 << 62


class StartupError(Exception):
    """The member cannot start from this data dir; the message says why and what to do."""


@dataclass(slots=True)
class MemberStorage:
    backend: Backend
    snapshotter: Snapshotter
    wal: WAL
    storage: MemoryStorage
    snapshot: Snapshot | None
    member_id: int
    cluster_id: int
    cluster: RaftCluster
    bootstrap: bool  # a new member of a new cluster: bootstrap Raft with the initial peers


def open_backend(path: str) -> Backend:
    return Backend.open(path, batch_interval=0.1, batch_limit=BACKEND_BATCH_LIMIT)


def encode_metadata(member_id: int, cluster_id: int) -> bytes:
    return msgpack.packb([member_id, cluster_id])


def decode_metadata(data: bytes) -> tuple[int, int]:
    member_id, cluster_id = msgpack.unpackb(data)
    return member_id, cluster_id


def open_member_storage(cfg: Settings, remote: RaftCluster | None = None) -> MemberStorage:
    """Open (or create) the data dir. ``remote``: for ``--initial-cluster-state existing``,
    the cluster id and member table the running members reported."""
    try:
        os.makedirs(cfg.snap_path, exist_ok=True)
        os.makedirs(os.path.dirname(os.path.abspath(cfg.wal_path)), exist_ok=True)
    except OSError as e:
        raise StartupError(f"cannot create data dir {cfg.data_dir}: {e.strerror}") from None
    snapshotter = Snapshotter(cfg.snap_path, max_snapshots=cfg.max_snapshots)
    initial = RaftCluster.from_initial_cluster(cfg.initial_cluster_map(), cfg.initial_cluster_token)
    if WAL.exists(cfg.wal_path):
        return _restart(cfg, snapshotter, initial)
    return _fresh(cfg, snapshotter, initial, remote)


def _fresh(
    cfg: Settings, snapshotter: Snapshotter, initial: RaftCluster, remote: RaftCluster | None
) -> MemberStorage:
    member_id = initial.id_of(cfg.name)
    cluster_id = initial.cluster_id
    if cfg.initial_cluster_state == "existing" and remote is not None:
        # etcd's ValidateClusterAndAssignIDs: this member is the one with its peer URLs
        cluster_id = remote.cluster_id
        mine = sorted(cfg.initial_advertise_peer_urls)
        found = [m.id for m in remote.members.values() if sorted(m.peer_urls) == mine]
        if not found:
            raise StartupError(
                f"no member of cluster {cluster_id:x} has the peer URLs {','.join(mine)}: "
                "add this member first (member add), with exactly these URLs"
            )
        member_id = found[0]
        initial = RaftCluster(cluster_id, remote.members)
    db = snapshotter.db_file()
    if os.path.exists(db):
        os.remove(db)  # a db without a WAL is a leftover of an interrupted first start
    wal = WAL.create(cfg.wal_path, encode_metadata(member_id, cluster_id), max_wals=cfg.max_wals)
    backend = open_backend(db)
    cluster = RaftCluster(cluster_id, initial.members)
    cluster.attach(backend)
    cluster.save_all()
    backend.commit()
    log.info(
        "starting_new_member",
        member=f"{member_id:x}",
        cluster=f"{cluster_id:x}",
        state=cfg.initial_cluster_state,
        peers=[f"{i:x}" for i in sorted(cluster.members)],
    )
    return MemberStorage(
        backend,
        snapshotter,
        wal,
        MemoryStorage(),
        None,
        member_id,
        cluster_id,
        cluster,
        bootstrap=cfg.initial_cluster_state == "new",
    )


def _restart(cfg: Settings, snapshotter: Snapshotter, initial: RaftCluster) -> MemberStorage:
    wal_snaps = WAL.valid_snapshots(cfg.wal_path)
    snap = snapshotter.load_newest_available(wal_snaps)
    db = snapshotter.db_file()
    backend = open_backend(db)
    if snap is not None and read_consistent_index(backend) < snap.metadata.index:
        image = snapshotter.db_path(snap.metadata.index)
        if os.path.exists(image):
            backend.close()
            snapshotter.install_db(snap.metadata.index)
            backend = open_backend(db)
            log.info("installed_snapshot_db_at_restart", index=snap.metadata.index)
    ws = WalSnapshot(snap.metadata.index, snap.metadata.term) if snap else WalSnapshot(0, 0)
    wal = WAL.open(cfg.wal_path, ws, max_wals=cfg.max_wals)
    metadata, hs, ents = wal.read_all()
    member_id, cluster_id = decode_metadata(metadata)
    storage = MemoryStorage()
    if snap is not None:
        storage.apply_snapshot(snap)
    storage.set_hard_state(hs)
    storage.append(ents)
    cluster = RaftCluster(cluster_id)
    if not cluster.load(backend):
        # The backend never committed the table (crash right after the first start): the
        # initial cluster gives the same ids, and replaying the log re-adds them.
        cluster = RaftCluster(cluster_id, initial.members)
        cluster.attach(backend)
        cluster.save_all()
    log.info(
        "restarting_member",
        member=f"{member_id:x}",
        cluster=f"{cluster_id:x}",
        snapshot_index=snap.metadata.index if snap else 0,
        consistent_index=read_consistent_index(backend),
        term=hs.term,
        commit=hs.commit,
        entries=len(ents),
    )
    return MemberStorage(
        backend, snapshotter, wal, storage, snap, member_id, cluster_id, cluster, False
    )
