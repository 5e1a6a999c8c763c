"""Free page tracking: pages free now, and pages freed by a tx that readers may still see.

Rule (bbolt's): a page freed by write tx T goes to ``pending[T]``; it was live in every state
before T, so it becomes allocatable only when no open reader is pinned to a state older than T
(``release(oldest_reader_txid)``). On disk the freelist records free and pending pages alike:
after a restart no reader is open.

Single pages (almost every node) are taken lowest id first. A run of n > 1 pages (a large
value or node) is searched among the first ``SCAN_LIMIT`` free ids; a failed search is
remembered until pages are released, so a commit never rescans in vain: the run then comes
from the end of the file.
"""

from __future__ import annotations

from itertools import islice

from sortedcontainers import SortedList

__all__ = ["SCAN_LIMIT", "Freelist"]

#: Free ids a multi-page allocation looks at before growing the file instead (bounds its cost).
SCAN_LIMIT = 8192


class Freelist:
    def __init__(self, ids: list[int] | None = None) -> None:
        self.free: SortedList = SortedList(ids or ())
        self.pending: dict[int, list[int]] = {}  # txid -> pages freed by that tx
        # smallest run length a scan failed to find since ``free`` last grew (0 = none)
        self._no_run = 0

    def __len__(self) -> int:
        return len(self.free) + sum(map(len, self.pending.values()))

    def allocate(self, n: int) -> int:
        """The first page of ``n`` contiguous free pages, taken out of the list; 0 if none."""
        free = self.free
        if not free:
            return 0
        if n == 1:
            return free.pop(0)
        if self._no_run and n >= self._no_run:
            return 0
        run_start = 0
        prev = -2
        for i, pgid in enumerate(islice(free, SCAN_LIMIT)):
            if pgid != prev + 1:
                run_start = i
            prev = pgid
            if i - run_start + 1 == n:
                first = free[run_start]
                del free[run_start : i + 1]
                return first
        self._no_run = n  # until pages are released, do not scan again for n or more
        return 0

    def free_pages(self, txid: int, pgid: int, npages: int = 1) -> None:
        """Pages [pgid, pgid + npages) were freed by write tx ``txid``."""
        lst = self.pending.get(txid)
        if lst is None:
            lst = self.pending[txid] = []
        lst.extend(range(pgid, pgid + npages))

    def release(self, upto_txid: int) -> None:
        """Make pages freed by txs <= ``upto_txid`` allocatable (no reader can see them)."""
        for txid in [t for t in self.pending if t <= upto_txid]:
            self.free.update(self.pending.pop(txid))
            self._no_run = 0

    def give_back(self, pgid: int, npages: int) -> None:
        """Return pages allocated by a tx that was rolled back."""
        self.free.update(range(pgid, pgid + npages))
        self._no_run = 0

    def ids(self) -> list[int]:
        """Every free or pending page id, sorted (what the on-disk freelist records)."""
        out = list(self.free)
        for lst in self.pending.values():
            out.extend(lst)
        out.sort()
        return out

    def pending_ids(self) -> set[int]:
        out: set[int] = set()
        for lst in self.pending.values():
            out.update(lst)
        return out
