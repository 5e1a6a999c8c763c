"""One write transaction: apply sorted changes to the trees copy-on-write, then commit.

Commit order (the only commit point is the meta page)::

    1. rebuild every touched path bottom-up on pages that were free in the last commit
    2. update the tree of buckets with the new bucket roots
    3. free the old freelist run, write the freelist (free + pending ids) to a new run
    4. write all new runs                         failpoint backend.after_page_write
    5. fdatasync                                  failpoint backend.before_meta_write
    6. write meta page (txid % 2)                 failpoint backend.after_meta_write
    7. fdatasync                                  failpoint backend.after_meta_sync

A crash before 6 completes leaves the previous meta (and every page it reaches) untouched.
An error before 6 starts is rolled back (the freelist forgets this tx); an error from 6 on
is not recoverable in process (did the meta reach the disk?): the caller must stop.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left

from ..failpoint import failpoint, register
from . import page
from .breathe import Breather
from .freelist import Freelist
from .node import MIN_FILL, TOMBSTONE, Branch, Leaf, child_index, merge_leaf, split_points
from .page import BUCKET_VALUE, HEADER_SIZE, INLINE_MAX, PAGE_SIZE, Meta, ValueRef
from .pager import Pager

__all__ = ["FAILPOINTS", "WriteTx"]

FAILPOINTS = (
    "backend.after_page_write",
    "backend.before_meta_write",
    "backend.after_meta_write",
    "backend.after_meta_sync",
)
register(*FAILPOINTS)

_ELEM = 12
_APPEND_SLICE = 512  # changes merged into a leaf between two breaths of a commit thread


class WriteTx:
    def __init__(
        self,
        pager: Pager,
        freelist: Freelist,
        meta: Meta,
        freelist_npages: int,
        breather: Breather | None = None,
    ) -> None:
        self.pager = pager
        self.breather = breather  # set when run by a worker thread beside an event loop
        self.freelist = freelist
        self.meta = meta.copy()
        self.meta.txid += 1
        self.txid = self.meta.txid
        self.old_freelist_npages = freelist_npages
        self.freelist_npages = freelist_npages
        self.pages: dict[int, bytes] = {}
        self.from_free: list[tuple[int, int]] = []  # runs allocated out of the freelist
        self.meta_started = False  # past this point a failure cannot be rolled back
        self.nodes: dict[int, Leaf | Branch] = {}  # nodes written by this tx, by page id

    # --- page allocation ----------------------------------------------------------------------

    def allocate(self, npages: int) -> int:
        pgid = self.freelist.allocate(npages)
        if pgid:
            self.from_free.append((pgid, npages))
        else:
            pgid = self.meta.hwm
            self.meta.hwm += npages
        return pgid

    def free(self, pgid: int, npages: int) -> None:
        self.freelist.free_pages(self.txid, pgid, npages)

    def write_node(self, n: Leaf | Branch) -> int:
        if self.breather is not None:
            self.breather.tick()
        npages = (n.size() + PAGE_SIZE - 1) // PAGE_SIZE
        pgid = self.allocate(npages)
        if n.is_leaf:
            buf = page.encode_leaf(pgid, self.txid, n.keys, n.values)
        else:
            buf = page.encode_branch(pgid, self.txid, n.keys, n.children)
        assert len(buf) == npages * PAGE_SIZE
        self.pages[pgid] = buf
        self.nodes[pgid] = n
        return pgid

    def write_value(self, value: bytes) -> ValueRef:
        if self.breather is not None:
            self.breather.tick()
        ref = ValueRef(0, len(value))
        ref.pgid = pgid = self.allocate(ref.npages)
        self.pages[pgid] = page.encode_overflow(pgid, self.txid, value)
        return ref

    def node(self, pgid: int) -> Leaf | Branch:
        n = self.nodes.get(pgid)
        return n if n is not None else self.pager.node(pgid)

    def _load_and_free(self, pgid: int) -> Leaf | Branch:
        n = self.node(pgid)
        self.free(pgid, (n.size() + PAGE_SIZE - 1) // PAGE_SIZE)
        return n

    # --- applying changes ---------------------------------------------------------------------

    def apply(self, root: int, ch_keys: list[bytes], ch_values: list) -> int:
        """Apply sorted changes (bytes or TOMBSTONE) to the tree at ``root``; the new root."""
        if not ch_keys:
            return root
        cv = [
            v if v is TOMBSTONE or len(v) <= INLINE_MAX else self.write_value(v) for v in ch_values
        ]
        node = self._load_and_free(root) if root else Leaf([], [])
        nodes = self._apply_node(node, ch_keys, cv, True)
        while len(nodes) > 1:
            keys = [n.keys[0] for n in nodes]
            children = [self.write_node(n) for n in nodes]
            nodes = _split_branch(Branch(keys, children), True)
        if not nodes:
            return 0
        top = nodes[0]
        if top.is_leaf or len(top.children) > 1:
            return self.write_node(top)
        # collapse a chain of single-child branches
        pgid = top.children[0]
        while True:
            n = self.node(pgid)
            if n.is_leaf or len(n.children) > 1:
                return pgid
            self.free(pgid, (n.size() + PAGE_SIZE - 1) // PAGE_SIZE)
            pgid = n.children[0]

    def _apply_node(self, n: Leaf | Branch, ck: list[bytes], cv: list, rightmost: bool) -> list:
        if n.is_leaf:
            if len(ck) > _APPEND_SLICE and rightmost and (not n.keys or ck[0] > n.keys[-1]):
                return self._append_in_slices(n, ck, cv)
            return self._apply_leaf(n, ck, cv, rightmost)
        return self._apply_branch(n, ck, cv, rightmost)

    def _append_in_slices(self, n: Leaf, ck: list[bytes], cv: list) -> list[Leaf]:
        """``_apply_leaf`` of a big append at the right edge (a batch of new revisions), a
        slice of changes at a time, so that a commit thread lets the loop in between slices.
        Leaves are packed full from the left, so carrying the last, partial leaf into the next
        slice cuts them exactly where one pass over all the changes would."""
        out: list[Leaf] = []
        last = n
        step = _APPEND_SLICE
        for i in range(0, len(ck), step):
            leaves = self._apply_leaf(last, ck[i : i + step], cv[i : i + step], True)
            if self.breather is not None:
                self.breather.tick()
            if not leaves:
                last = Leaf([], [])
                continue
            out.extend(leaves[:-1])
            last = leaves[-1]
        if last.keys:
            out.append(last)
        return out

    def _apply_leaf(self, n: Leaf, ck: list[bytes], cv: list, rightmost: bool) -> list[Leaf]:
        appending = not n.keys or ck[0] > n.keys[-1]
        keys, values, dropped = merge_leaf(n.keys, n.values, ck, cv)
        for ref in dropped:
            self.free(ref.pgid, ref.npages)
        if not keys:
            return []
        sizes = [_ELEM + len(k) + len(v) for k, v in zip(keys, values, strict=True)]
        cuts = split_points(sizes, rightmost and appending)
        if not cuts:
            return [Leaf(keys, values)]
        bounds = [0, *cuts, len(keys)]
        return [Leaf(keys[a:b], values[a:b]) for a, b in itertools.pairwise(bounds)]

    def _apply_branch(self, n: Branch, ck: list[bytes], cv: list, rightmost: bool) -> list:
        keys = n.keys
        children = n.children
        nkeys = len(keys)
        out_keys: list[bytes] = []
        out_children: list = []
        prev = 0
        lo = 0
        nch = len(ck)
        while lo < nch:
            i = child_index(keys, ck[lo])
            hi = nch if i + 1 >= nkeys else bisect_left(ck, keys[i + 1], lo)
            out_keys.extend(keys[prev:i])
            out_children.extend(children[prev:i])
            child = self._load_and_free(children[i])
            for c in self._apply_node(child, ck[lo:hi], cv[lo:hi], rightmost and i == nkeys - 1):
                out_keys.append(c.keys[0])
                out_children.append(c)
            prev = i + 1
            lo = hi
        out_keys.extend(keys[prev:])
        out_children.extend(children[prev:])
        self._rebalance(out_keys, out_children)
        for j, c in enumerate(out_children):
            if type(c) is not int:
                out_children[j] = self.write_node(c)
        if not out_children:
            return []
        return _split_branch(Branch(out_keys, out_children), rightmost)

    def _rebalance(self, keys: list[bytes], children: list) -> None:
        """Join new underfull children with a neighbour (in place)."""
        j = 0
        while j < len(children):
            c = children[j]
            if type(c) is int or len(children) < 2 or c.size() >= MIN_FILL:
                j += 1
                continue
            a = j if j + 1 < len(children) else j - 1
            left = children[a] if type(children[a]) is not int else self._load_and_free(children[a])
            right = (
                children[a + 1]
                if type(children[a + 1]) is not int
                else self._load_and_free(children[a + 1])
            )
            if left.is_leaf:
                parts = _split_leaf(Leaf(left.keys + right.keys, left.values + right.values))
            else:
                parts = _split_branch(
                    Branch(left.keys + right.keys, left.children + right.children), False
                )
            children[a : a + 2] = parts
            keys[a : a + 2] = [p.keys[0] for p in parts]
            j = a if len(parts) == 1 else a + len(parts)

    # --- commit -------------------------------------------------------------------------------

    def commit(self, bucket_updates: dict[bytes, int]) -> Meta:
        """Write the bucket tree, freelist, pages and meta; return the new meta."""
        if bucket_updates:
            names = sorted(bucket_updates)
            vals = [BUCKET_VALUE.pack(bucket_updates[n], 0) for n in names]
            self.meta.root = self.apply(self.meta.root, names, vals)
        fl = self.freelist
        if self.meta.freelist:
            self.free(self.meta.freelist, self.old_freelist_npages)
        npages = page.freelist_pages(len(fl))
        pgid = self.allocate(npages)
        ids = fl.ids()
        assert page.freelist_pages(len(ids)) <= npages
        buf = page.encode_freelist(pgid, self.txid, ids, npages)
        self.pages[pgid] = buf
        self.meta.freelist = pgid
        self.freelist_npages = len(buf) // PAGE_SIZE

        pager = self.pager
        pager.write(self.pages)
        failpoint("backend.after_page_write")
        pager.sync()
        failpoint("backend.before_meta_write")
        self.meta_started = True
        pager.write_at(self.txid % 2, page.encode_meta(self.txid % 2, self.meta))
        failpoint("backend.after_meta_write")
        pager.sync()
        failpoint("backend.after_meta_sync")
        return self.meta

    def rollback(self) -> None:
        """Undo this tx's freelist changes (valid until the meta write starts)."""
        assert not self.meta_started
        self.freelist.pending.pop(self.txid, None)
        for pgid, n in self.from_free:
            self.freelist.give_back(pgid, n)


def _split_leaf(n: Leaf) -> list[Leaf]:
    sizes = [_ELEM + len(k) + len(v) for k, v in zip(n.keys, n.values, strict=True)]
    cuts = split_points(sizes, False)
    if not cuts:
        return [n]
    bounds = [0, *cuts, len(n.keys)]
    return [Leaf(n.keys[a:b], n.values[a:b]) for a, b in itertools.pairwise(bounds)]


def _split_branch(n: Branch, pack_full: bool) -> list[Branch]:
    if n.size() <= PAGE_SIZE:
        return [n]
    sizes = [_ELEM + len(k) for k in n.keys]
    cuts = split_points(sizes, pack_full, 2)
    if not cuts:
        return [n]
    bounds = [0, *cuts, len(n.keys)]
    return [Branch(n.keys[a:b], n.children[a:b]) for a, b in itertools.pairwise(bounds)]


assert HEADER_SIZE < MIN_FILL
