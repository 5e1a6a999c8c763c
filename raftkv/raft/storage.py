"""MemoryStorage: the durable part of the log as Raft reads it (etcd's Storage contract).

The driver appends entries here *after* persisting them (WAL) and installs snapshots here after
saving them; Raft only reads. Layout::

    ents[0]      dummy entry: (index, term) of the last compacted entry / snapshot
    ents[1:]     stored entries, contiguous, ents[k].index == ents[0].index + k

Invariants:
- ``first_index() == ents[0].index + 1`` and ``last_index() == ents[-1].index``.
- ``snapshot.metadata.index == ents[0].index`` after ``apply_snapshot``; ``compact`` may move
  ``ents[0]`` past the snapshot (the snapshot then still describes an older state).
- ``entries``/``term`` raise ``CompactedError`` below the first index (term: below the dummy)
  and ``UnavailableError`` past the last index.
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.raft.errors import CompactedError, SnapshotOutOfDateError, UnavailableError
from raftkv.raft.messages import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from raftkv.raft.util import limit_size

__all__ = ["MemoryStorage"]


class MemoryStorage:
    def __init__(self) -> None:
        self.hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Entry] = [Entry(0, 0)]

    # --- read side (used by Raft) ------------------------------------------------------------

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self.hard_state, self._snapshot.metadata.conf_state

    def entries(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries in [lo, hi), at most ``max_size`` encoded bytes but at least one entry."""
        offset = self._ents[0].index
        if lo <= offset:
            raise CompactedError
        assert hi <= self.last_index() + 1, (
            f"entries' hi({hi}) is out of bound lastindex({self.last_index()})"
        )
        if len(self._ents) == 1:
            raise UnavailableError
        return limit_size(self._ents[lo - offset : hi - offset], max_size)

    def term(self, i: int) -> int:
        offset = self._ents[0].index
        if i < offset:
            raise CompactedError
        if i - offset >= len(self._ents):
            raise UnavailableError
        return self._ents[i - offset].term

    def first_index(self) -> int:
        return self._ents[0].index + 1

    def last_index(self) -> int:
        return self._ents[0].index + len(self._ents) - 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    # --- write side (used by the driver) -----------------------------------------------------

    def set_hard_state(self, hs: HardState) -> None:
        self.hard_state = hs

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the storage's contents with ``snap`` (the log restarts after it)."""
        if self._snapshot.metadata.index >= snap.metadata.index:
            raise SnapshotOutOfDateError
        self._snapshot = snap
        self._ents = [Entry(snap.metadata.term, snap.metadata.index)]

    def create_snapshot(self, index: int, conf_state: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the state machine as of ``index`` (which must be applied)."""
        if index <= self._snapshot.metadata.index:
            raise SnapshotOutOfDateError
        offset = self._ents[0].index
        assert index <= self.last_index(), (
            f"snapshot {index} is out of bound lastindex({self.last_index()})"
        )
        cs = conf_state if conf_state is not None else self._snapshot.metadata.conf_state
        meta = SnapshotMetadata(cs, index, self._ents[index - offset].term)
        self._snapshot = Snapshot(meta, data)
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Discard entries up to and including ``compact_index`` (it becomes the dummy)."""
        offset = self._ents[0].index
        if compact_index <= offset:
            raise CompactedError
        assert compact_index <= self.last_index(), (
            f"compact {compact_index} is out of bound lastindex({self.last_index()})"
        )
        i = compact_index - offset
        self._ents = [Entry(self._ents[i].term, self._ents[i].index), *self._ents[i + 1 :]]

    def append(self, entries: Sequence[Entry]) -> None:
        """Append persisted entries; entries that conflict with the stored tail replace it."""
        if not entries:
            return
        first = self.first_index()
        last = entries[-1].index
        if last < first:
            return  # all already compacted
        ents = list(entries)
        if first > ents[0].index:
            ents = ents[first - ents[0].index :]
        offset = ents[0].index - self._ents[0].index
        if len(self._ents) > offset:
            self._ents = self._ents[:offset] + ents
        elif len(self._ents) == offset:
            self._ents.extend(ents)
        else:
            raise AssertionError(
                f"missing log entry [last: {self.last_index()}, append at: {ents[0].index}]"
            )
