"""Snapshot files (etcd's etcdserver/api/snap): ``member/snap/*.snap`` and db images."""

from raftkv.snap.snapshotter import NoSnapshotError, SnapError, Snapshotter

__all__ = ["NoSnapshotError", "SnapError", "Snapshotter"]
