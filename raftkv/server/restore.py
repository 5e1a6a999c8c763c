"""Offline restore of a db snapshot into a new member data dir (etcdctl 3.4's
``snapshot restore``): the seed of a new cluster with the snapshot's keys, revisions and
leases, and a new identity.

    snapshot file = db image (pages) [+ sha256 of the image, as ``snapshot save`` writes it]

1. the trailer is checked (a file whose size is 32 more than a multiple of 512 carries one,
   etcd's rule) unless ``skip_hash_check``; a file without one needs ``skip_hash_check``;
2. the image goes to ``<data-dir>/member/snap/db`` (temp + fsync + rename); the data dir
   must not exist;
3. in the db: the member table is replaced by the ``--initial-cluster`` members (ids from
   peer URLs + token, as for a new cluster), removed members and rejected conf changes are
   forgotten, and the consistent index is set to the number of members;
4. a Raft snapshot at (index = number of members, term 1) whose ConfState has every member
   as a voter is written to ``member/snap`` and marked in a new WAL (metadata: this member's
   id and the new cluster id), with hard state (term 1, commit = index).

Every member of the new cluster is restored from the same file with its own ``--name``; they
then start with ``--initial-cluster-state new`` (ignored: the WAL exists) and elect a leader.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass

from raftkv.backend.db import fsync_dir
from raftkv.raft import ConfState, HardState, Snapshot, SnapshotMetadata
from raftkv.server.cindex import ConsistentIndex
from raftkv.server.membership import MEMBERS_BUCKET, REMOVED_BUCKET, RaftCluster
from raftkv.server.storage import encode_metadata, open_backend
from raftkv.snap import Snapshotter
from raftkv.wal import WAL, WalSnapshot

__all__ = [
    "RestoreError",
    "RestoreResult",
    "SnapshotStatus",
    "restore_snapshot",
    "snapshot_status",
    "verify_snapshot_file",
]

SHA_LEN = hashlib.sha256().digest_size
_CLEARED = (MEMBERS_BUCKET, REMOVED_BUCKET, b"conf_rejected")


class RestoreError(Exception):
    """The restore cannot be done; the message says why (etcdctl prints it as an Error)."""


@dataclass(frozen=True)
class RestoreResult:
    member_id: int
    cluster_id: int
    data_dir: str


def verify_snapshot_file(data: bytes, skip_hash_check: bool) -> bytes:
    """The db image of a snapshot file, its sha256 trailer checked (etcd's rule)."""
    has_hash = len(data) % 512 == SHA_LEN
    if not has_hash and not skip_hash_check:
        raise RestoreError(
            "snapshot missing hash but --skip-hash-check=false",
        )
    if has_hash:
        db, want = data[:-SHA_LEN], data[-SHA_LEN:]
        if not skip_hash_check:
            got = hashlib.sha256(db).digest()
            if got != want:
                raise RestoreError(f"expected sha256 {_go_bytes(want)}, got {_go_bytes(got)}")
        return db
    return data


def _go_bytes(b: bytes) -> str:
    return "[" + " ".join(str(x) for x in b) + "]"  # Go's %v of a []byte


def restore_snapshot(
    path: str,
    data_dir: str,
    name: str,
    initial_cluster: dict[str, list[str]],
    token: str,
    advertise_peer_urls: list[str],
    skip_hash_check: bool = False,
    wal_dir: str = "",
) -> RestoreResult:
    if os.path.exists(data_dir):
        raise RestoreError(f'data-dir "{data_dir}" exists')
    if name not in initial_cluster:
        raise RestoreError(
            f"couldn't find local name {name!r} in the initial cluster configuration"
        )
    if sorted(initial_cluster[name]) != sorted(advertise_peer_urls):
        raise RestoreError(
            f"--initial-cluster has {name}={','.join(initial_cluster[name])} but missing from "
            f"--initial-advertise-peer-urls={','.join(advertise_peer_urls)}"
        )
    with open(path, "rb") as f:
        image = verify_snapshot_file(f.read(), skip_hash_check)

    cluster = RaftCluster.from_initial_cluster(initial_cluster, token)
    member_id = cluster.id_of(name)
    member_dir = os.path.join(data_dir, "member")
    snap_dir = os.path.join(member_dir, "snap")
    wal_path = wal_dir or os.path.join(member_dir, "wal")
    os.makedirs(snap_dir)
    db_path = os.path.join(snap_dir, "db")
    tmp = db_path + ".restore"
    with open(tmp, "wb") as f:
        f.write(image)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, db_path)
    fsync_dir(db_path)

    index = len(cluster.members)
    backend = open_backend(db_path)
    try:
        for bucket in _CLEARED:
            backend.create_bucket(bucket)
            for k, _v in backend.range(bucket, b"\x00", None):
                backend.delete(bucket, k)
        cluster.attach(backend)
        cluster.save_all()
        ConsistentIndex(backend).set(index)
        backend.commit()
    finally:
        backend.close()

    conf = ConfState(voters=tuple(sorted(cluster.members)))
    snap = Snapshot(SnapshotMetadata(conf, index, 1))
    Snapshotter(snap_dir).save_snap(snap)
    wal = WAL.create(wal_path, encode_metadata(member_id, cluster.cluster_id))
    try:
        wal.save_snapshot(WalSnapshot(index, 1))
        wal.save(HardState(term=1, vote=0, commit=index), [], True)
    finally:
        wal.close()
    return RestoreResult(member_id, cluster.cluster_id, data_dir)


@dataclass(frozen=True)
class SnapshotStatus:
    hash: int
    revision: int
    total_key: int
    total_size: int


def snapshot_status(path: str) -> SnapshotStatus:
    """etcdctl's ``snapshot status``: the db image's hash (CRC-32C over every bucket's name,
    keys and values, as etcd computes it), newest revision, number of keys in all buckets, and
    size. The image is checked first."""
    with open(path, "rb") as f:
        data = f.read()
    image = data[:-SHA_LEN] if len(data) % 512 == SHA_LEN else data
    with tempfile.TemporaryDirectory(prefix="raftkv-status-") as d:
        copy = os.path.join(d, "db")
        with open(copy, "wb") as f:
            f.write(image)
        try:
            backend = open_backend(copy)
        except Exception:
            raise RestoreError("invalid database") from None
        try:
            problems = backend.check()
            if problems:
                raise RestoreError(
                    f"snapshot file integrity check failed. {len(problems)} errors found.\n"
                    + "\n".join(problems)
                )
            total, revision = 0, 0
            with backend.read_snapshot() as snap:
                for name in snap.buckets():
                    for k, _v in snap.items(name):
                        total += 1
                        if name == b"key":
                            revision = int.from_bytes(k[:8], "big")
                h = snap.hash()
        finally:
            backend.close()
    return SnapshotStatus(h, revision, total, len(image))
