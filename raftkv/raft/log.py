"""RaftLog: the whole log as the core sees it — durable ``storage`` + ``unstable`` tail.

    storage:  [first_index ..................... storage.last_index]
    unstable:                          [offset ............... last_index]
    (the unstable tail may overlap and then overrides the storage tail)

Invariants (checked where they are advanced):
- ``applied <= applying <= committed <= last_index()``.
- ``committed`` never decreases; entries at or below it are never truncated.
"""

from __future__ import annotations

from collections.abc import Iterator

from raftkv.raft.errors import CompactedError, UnavailableError
from raftkv.raft.log_unstable import Unstable
from raftkv.raft.messages import Entry, Snapshot
from raftkv.raft.storage import MemoryStorage
from raftkv.raft.util import NO_LIMIT, ents_size, limit_size

__all__ = ["RaftLog"]


class RaftLog:
    def __init__(self, storage: MemoryStorage, max_applying_ents_size: int = NO_LIMIT) -> None:
        self.storage = storage
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        # committed: highest index known to be stored on a quorum.
        self.committed = first - 1
        # applying: highest index handed to the driver for applying (applied <= applying).
        self.applying = first - 1
        # applied: highest index the driver reported applied.
        self.applied = first - 1
        self.max_applying_ents_size = max_applying_ents_size
        self.applying_ents_size = 0
        self.applying_ents_paused = False

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"applying={self.applying}, unstable.offset={self.unstable.offset}, "
            f"len(unstable)={len(self.unstable.entries)})"
        )

    # --- appending -------------------------------------------------------------------------

    def maybe_append(
        self, prev_index: int, prev_term: int, committed: int, ents: tuple[Entry, ...] | list[Entry]
    ) -> int | None:
        """AppendEntries receiver (§5.3): if our log has (prev_index, prev_term), append ``ents``
        (truncating a conflicting suffix) and advance commit; return the last new index, or
        ``None`` when the consistency check fails."""
        if not self.match_term(prev_index, prev_term):
            return None
        last_new = prev_index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            assert ci > self.committed, (
                f"entry {ci} conflicts with committed entry [committed({self.committed})]"
            )
            self.append(list(ents[ci - prev_index - 1 :]))
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        after = ents[0].index - 1
        assert after >= self.committed, (
            f"after({after}) is out of range [committed({self.committed})]"
        )
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def find_conflict(self, ents: tuple[Entry, ...] | list[Entry]) -> int:
        """Index of the first entry whose term differs from ours (or that we lack); 0 if none."""
        for e in ents:
            if not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest (i, t) with i <= index whose term t <= ``term`` (etcd's fast backtracking):
        no entry in (i, index] can match a log whose entry at index has term ``term``."""
        while index > 0:
            try:
                our = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if our <= term:
                return index, our
            index -= 1
        return 0, 0

    # --- Ready plumbing ----------------------------------------------------------------------

    def next_unstable_ents(self) -> list[Entry]:
        return self.unstable.next_entries()

    def has_next_unstable_ents(self) -> bool:
        return bool(self.unstable.next_entries())

    def has_next_or_in_progress_unstable_ents(self) -> bool:
        return bool(self.unstable.entries)

    def _max_appliable_index(self, allow_unstable: bool) -> int:
        hi = self.committed
        if not allow_unstable:
            hi = min(hi, self.unstable.offset - 1)
        return hi

    def next_committed_ents(self, allow_unstable: bool) -> list[Entry]:
        if self.applying_ents_paused or self.has_next_or_in_progress_snapshot():
            return []
        lo, hi = self.applying + 1, self._max_appliable_index(allow_unstable) + 1
        if lo >= hi:
            return []
        max_size = self.max_applying_ents_size - self.applying_ents_size
        assert max_size > 0, f"applying entry size budget exhausted ({max_size})"
        return self.slice(lo, hi, max_size)

    def has_next_committed_ents(self, allow_unstable: bool) -> bool:
        if self.applying_ents_paused or self.has_next_or_in_progress_snapshot():
            return False
        return self.applying + 1 < self._max_appliable_index(allow_unstable) + 1

    def next_unstable_snapshot(self) -> Snapshot | None:
        return self.unstable.next_snapshot()

    def has_next_or_in_progress_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def accept_unstable(self) -> None:
        self.unstable.accept_in_progress()

    def accept_applying(self, index: int, size: int) -> None:
        assert index <= self.committed, f"applying({index}) > committed({self.committed})"
        self.applying = index
        self.applying_ents_size += size
        self.applying_ents_paused = self.applying_ents_size >= self.max_applying_ents_size

    def applied_to(self, index: int, size: int) -> None:
        if index == 0:
            return
        assert self.applied <= index <= self.committed, (
            f"applied({index}) is out of range [prevApplied({self.applied}), "
            f"committed({self.committed})]"
        )
        self.applied = index
        self.applying = max(self.applying, index)
        self.applying_ents_size = max(0, self.applying_ents_size - size)
        self.applying_ents_paused = self.applying_ents_size >= self.max_applying_ents_size

    def stable_to(self, index: int, term: int) -> None:
        u = self.unstable
        if u.offset <= index and u.maybe_term(index) == term:
            # the unstable copy is about to be dropped: the storage must hold it by now
            st = self.storage
            assert st.last_index() >= index and st.term(index) == term, (
                f"entry {index}/{term} reported durable but MemoryStorage ends at "
                f"{st.last_index()}: append Ready.entries to the storage before advance()"
            )
        u.stable_to(index, term)

    def stable_snap_to(self, index: int) -> None:
        self.unstable.stable_snap_to(index)

    # --- reading -----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def first_index(self) -> int:
        i = self.unstable.maybe_first_index()
        return i if i is not None else self.storage.first_index()

    def last_index(self) -> int:
        i = self.unstable.maybe_last_index()
        return i if i is not None else self.storage.last_index()

    def term(self, i: int) -> int:
        """Term of entry ``i``; raises CompactedError / UnavailableError outside
        [first_index - 1, last_index]."""
        t = self.unstable.maybe_term(i)
        if t is not None:
            return t
        if i + 1 < self.first_index():
            raise CompactedError
        if i > self.last_index():
            raise UnavailableError
        return self.storage.term(i)

    def term_or_zero(self, i: int) -> int:
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, term: int) -> bool:
        try:
            return self.term(i) == term
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """§5.4.1: a candidate's log (last_index, term) is at least as up-to-date as ours."""
        our_term = self.last_term()
        return term > our_term or (term == our_term and last_index >= self.last_index())

    def entries(self, i: int, max_size: int = NO_LIMIT) -> list[Entry]:
        if i > self.last_index():
            return []
        return self.slice(i, self.last_index() + 1, max_size)

    def all_entries(self) -> list[Entry]:
        try:
            return self.entries(self.first_index())
        except CompactedError:  # racing compaction; retry once
            return self.all_entries()

    def slice(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries in [lo, hi) limited to ``max_size`` encoded bytes (at least one entry)."""
        self._check_out_of_bounds(lo, hi)
        if lo == hi:
            return []
        off = self.unstable.offset
        if lo >= off:
            return limit_size(self.unstable.slice(lo, hi), max_size)
        cut = min(hi, off)
        ents = self.storage.entries(lo, cut, max_size)
        if hi <= off or len(ents) < cut - lo:
            return ents
        if ents_size(ents) >= max_size:
            return ents
        return limit_size(ents + self.unstable.slice(off, hi), max_size)

    def _check_out_of_bounds(self, lo: int, hi: int) -> None:
        assert lo <= hi, f"invalid slice {lo} > {hi}"
        fi = self.first_index()
        if lo < fi:
            raise CompactedError
        length = self.last_index() + 1 - fi
        assert hi <= fi + length, f"slice[{lo},{hi}) out of bound [{fi},{self.last_index()}]"

    def scan(self, lo: int, hi: int, page_size: int) -> Iterator[list[Entry]]:
        while lo < hi:
            ents = self.slice(lo, hi, page_size)
            assert ents, f"got 0 entries in [{lo}, {hi})"
            yield ents
            lo += len(ents)

    # --- commit / restore --------------------------------------------------------------------

    def commit_to(self, to_commit: int) -> None:
        if self.committed < to_commit:
            assert self.last_index() >= to_commit, (
                f"tocommit({to_commit}) is out of range [lastIndex({self.last_index()})]. "
                "Was the raft log corrupted, truncated, or lost?"
            )
            self.committed = to_commit

    def maybe_commit(self, index: int, term: int) -> bool:
        """§5.4.2: commit ``index`` only if its entry is from ``term`` (the leader's term)."""
        if index > self.committed and self.term_or_zero(index) == term:
            self.commit_to(index)
            return True
        return False

    def restore(self, snap: Snapshot) -> None:
        self.committed = snap.metadata.index
        self.unstable.restore(snap)
