"""raftkv: an etcd-v3-compatible, strongly consistent, replicated key-value store on asyncio.

Layering (docs/ARCHITECTURE.md): cli -> api -> server -> {raft, wal, snap, mvcc, lease,
transport}; mvcc/lease -> backend. ``raft`` imports nothing of the project but its own messages.
"""

__version__ = "0.1.0"
