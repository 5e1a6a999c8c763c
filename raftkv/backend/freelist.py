"""Free page tracking: pages free now, and pages freed by a tx that readers may still see.

Rule (bbolt's): a page freed by write tx T goes to ``pending[T]``; it was live in every state
before T, so it becomes allocatable only when no open reader is pinned to a state older than T
(``release(oldest_reader_txid)``). On disk the freelist records free and pending pages alike:
after a restart no reader is open.
"""

from __future__ import annotations

from sortedcontainers import SortedList

__all__ = ["Freelist"]


class Freelist:
    def __init__(self, ids: list[int] | None = None) -> None:
        self.free: SortedList = SortedList(ids or ())
        self.pending: dict[int, list[int]] = {}  # txid -> pages freed by that tx

    def __len__(self) -> int:
        return len(self.free) + sum(map(len, self.pending.values()))

    def allocate(self, n: int) -> int:
        """The first page of ``n`` contiguous free pages, taken out of the list; 0 if none."""
        free = self.free
        if not free:
            return 0
        if n == 1:
            return free.pop(0)
        run_start = 0
        prev = -2
        for i, pgid in enumerate(free):
            if pgid != prev + 1:
                run_start = i
            prev = pgid
            if i - run_start + 1 == n:
                first = free[run_start]
                del free[run_start : i + 1]
                return first
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
