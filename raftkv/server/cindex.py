"""The consistent index: the index of the last Raft entry whose effects are in the backend.

Kept in the ``meta`` bucket as 8 bytes big-endian, written into the same backend batch as the
entry's own writes (so a commit never persists an entry's writes without its index, nor the
index without the writes). On start, entries at or below it are not applied again: apply is
idempotent across restarts. Owned by the server, not by MVCC (as etcd 3.5 moved it into
``cindex``): MVCC knows nothing of Raft indexes; its hash leaves this key out.
"""

from __future__ import annotations

from raftkv.backend import Backend
from raftkv.mvcc.kvstore import CONSISTENT_INDEX_KEY, META_BUCKET

__all__ = ["ConsistentIndex", "read_consistent_index"]


def read_consistent_index(backend: Backend) -> int:
    """The consistent index stored in ``backend`` (0 for a new or unreadable one)."""
    try:
        v = backend.get(META_BUCKET, CONSISTENT_INDEX_KEY)
    except Exception:
        return 0
    return int.from_bytes(v, "big") if v else 0


class ConsistentIndex:
    """The consistent index of one backend, cached; ``set`` writes it into the open batch."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.value = read_consistent_index(backend)

    def set(self, index: int) -> None:
        self.value = index
        self._backend.put(META_BUCKET, CONSISTENT_INDEX_KEY, index.to_bytes(8, "big"))

    def reload(self) -> None:
        """Read it again (the backend's file was replaced by a snapshot's db)."""
        self.value = read_consistent_index(self._backend)
