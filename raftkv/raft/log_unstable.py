"""Unstable: the tail of the log (and a pending snapshot) not yet known to be persisted.

``entries[i]`` has index ``offset + i``. Entries in ``[offset, offset_in_progress)`` have been
handed to the driver in a Ready (being persisted); the rest are new. The same split holds for the
snapshot (``snapshot_in_progress``).

Invariants:
- ``offset <= offset_in_progress <= offset + len(entries)``.
- if ``snapshot`` is set, ``offset == snapshot.metadata.index + 1`` at the time it was restored
  (entries appended after it follow it contiguously).
- ``snapshot_in_progress`` implies ``snapshot is not None``.
"""

from __future__ import annotations

from raftkv.raft.messages import Entry, Snapshot

__all__ = ["Unstable"]


class Unstable:
    __slots__ = ("entries", "offset", "offset_in_progress", "snapshot", "snapshot_in_progress")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset
        self.snapshot_in_progress = False
        self.offset_in_progress = offset

    def maybe_first_index(self) -> int | None:
        if self.snapshot is not None:
            return self.snapshot.metadata.index + 1
        return None

    def maybe_last_index(self) -> int | None:
        if self.entries:
            return self.offset + len(self.entries) - 1
        if self.snapshot is not None:
            return self.snapshot.metadata.index
        return None

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        last = self.maybe_last_index()
        if last is None or i > last:
            return None
        return self.entries[i - self.offset].term

    def next_entries(self) -> list[Entry]:
        """Entries not yet handed to the driver."""
        start = self.offset_in_progress - self.offset
        if start >= len(self.entries):
            return []
        return self.entries[start:]

    def next_snapshot(self) -> Snapshot | None:
        if self.snapshot is None or self.snapshot_in_progress:
            return None
        return self.snapshot

    def accept_in_progress(self) -> None:
        """Everything returned by next_entries/next_snapshot is now being persisted."""
        if self.entries:
            self.offset_in_progress = self.entries[-1].index + 1
        if self.snapshot is not None:
            self.snapshot_in_progress = True

    def stable_to(self, index: int, term: int) -> None:
        """Entries up to (index, term) are durable: drop them from memory. Ignored when the entry
        at ``index`` has since been replaced (a different term) or is not unstable."""
        gt = self.maybe_term(index)
        if gt is None or index < self.offset or gt != term:
            return
        num = index + 1 - self.offset
        del self.entries[:num]
        self.offset = index + 1
        self.offset_in_progress = max(self.offset_in_progress, self.offset)

    def stable_snap_to(self, index: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == index:
            self.snapshot = None
            self.snapshot_in_progress = False

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.metadata.index + 1
        self.offset_in_progress = self.offset
        self.entries = []
        self.snapshot = snap
        self.snapshot_in_progress = False

    def truncate_and_append(self, ents: list[Entry]) -> None:
        """Append ``ents``; any unstable entries at or after ``ents[0].index`` are replaced."""
        from_index = ents[0].index
        end = self.offset + len(self.entries)
        if from_index == end:
            self.entries.extend(ents)
        elif from_index <= self.offset:
            # Replace everything unstable; the storage tail beyond from_index is overwritten
            # when these entries are persisted.
            self.entries = list(ents)
            self.offset = from_index
            self.offset_in_progress = self.offset
        else:
            assert from_index < end, f"gap in unstable log: append at {from_index}, end {end}"
            self.entries = self.entries[: from_index - self.offset] + list(ents)
            self.offset_in_progress = min(self.offset_in_progress, from_index)

    def slice(self, lo: int, hi: int) -> list[Entry]:
        assert lo <= hi, f"invalid unstable slice {lo} > {hi}"
        upper = self.offset + len(self.entries)
        assert self.offset <= lo and hi <= upper, (
            f"unstable slice[{lo},{hi}) out of bound [{self.offset},{upper}]"
        )
        return self.entries[lo - self.offset : hi - self.offset]
