"""One member: the Ready loop, proposals and waiters, the applier, linearizable reads,
membership, snapshots, and the member process (``member.run_member``)."""

from raftkv.server.etcdserver import EtcdServer

__all__ = ["EtcdServer"]
