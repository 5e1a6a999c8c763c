"""One member: its parts (the Ready loop, proposals and waiters, the applier, linearizable
reads, membership, snapshots, background jobs), joined by the composition root
(``wiring.build_member``), the client facade (``EtcdServer``), and the member process
(``member.run_member``). See docs/ARCHITECTURE.md."""

from raftkv.server.etcdserver import EtcdServer
from raftkv.server.wiring import Member, build_member

__all__ = ["EtcdServer", "Member", "build_member"]
