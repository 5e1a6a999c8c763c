"""Consistency walker (bbolt's tx_check): every problem in the last committed state.

Checks, reading every page from the file (not the node cache): the active meta page decodes
and matches; every reachable page verifies its checksum and has the expected type; every page
in [2, hwm) is reachable exactly once or free, never both; freelist ids are unique and in
range; keys are strictly sorted within a node and lie within the bounds its parent gives;
all leaves of a tree are at one depth; out-of-line values are whole.
"""

from __future__ import annotations

import itertools
import os

from . import page
from .db import DB
from .errors import BackendCorruptError
from .page import BUCKET_VALUE, PAGE_SIZE, ValueRef

__all__ = ["check"]

_MAX_PROBLEMS = 1000


def check(db: DB) -> list[str]:
    st = db.pin()
    try:
        return _Checker(st.pager, st.meta).run()
    finally:
        db.unpin(st)


class _Checker:
    def __init__(self, pager, meta) -> None:
        self.pager = pager
        self.meta = meta
        self.problems: list[str] = []
        self.owner: dict[int, str] = {}

    def problem(self, msg: str) -> None:
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(msg)

    def run(self) -> list[str]:
        meta = self.meta
        slot = meta.txid % 2
        disk = page.decode_meta(os.pread(self.pager.fd, PAGE_SIZE, slot * PAGE_SIZE), slot)
        if not isinstance(disk, page.Meta):
            self.problem(f"meta page {slot}: {disk}")
        elif (disk.root, disk.freelist, disk.hwm, disk.txid) != (
            meta.root,
            meta.freelist,
            meta.hwm,
            meta.txid,
        ):
            self.problem(f"meta page {slot}: {disk!r} differs from the open state {meta!r}")
        size = self.pager.file_size()
        if size < meta.hwm * PAGE_SIZE:
            self.problem(f"file has {size} bytes but high-water mark is page {meta.hwm}")
        self.owner[0] = self.owner[1] = "meta"

        free_ids: list[int] = []
        buf = self.read(meta.freelist, page.FREELIST, "freelist")
        if buf is not None:
            free_ids = page.decode_freelist(buf)
        buckets = self.walk_tree(meta.root, "bucket tree", collect=True)
        for name, v in buckets:
            if len(v) != BUCKET_VALUE.size or type(v) is not bytes:
                self.problem(f"bucket {name!r}: bad bucket header")
                continue
            root = BUCKET_VALUE.unpack(v)[0]
            self.walk_tree(root, f"bucket {name!r}", collect=False)

        seen_free: set[int] = set()
        for pgid in free_ids:
            if pgid in seen_free:
                self.problem(f"page {pgid}: listed twice in the freelist")
            seen_free.add(pgid)
            if pgid < 2 or pgid >= meta.hwm:
                self.problem(f"page {pgid}: freelist id outside [2, {meta.hwm})")
            elif pgid in self.owner:
                self.problem(f"page {pgid}: free but reachable from {self.owner[pgid]}")
        for pgid in range(2, meta.hwm):
            if pgid not in self.owner and pgid not in seen_free:
                self.problem(f"page {pgid}: unreachable and not free")
        return self.problems

    def claim(self, pgid: int, npages: int, what: str) -> bool:
        ok = True
        for p in range(pgid, pgid + npages):
            if p < 2 or p >= self.meta.hwm:
                self.problem(f"page {p}: {what} points outside [2, {self.meta.hwm})")
                return False
            prev = self.owner.get(p)
            if prev is not None:
                self.problem(f"page {p}: reachable twice ({prev} and {what})")
                ok = False
            self.owner[p] = what
        return ok

    def read(self, pgid: int, flags: int, what: str) -> bytes | None:
        if pgid < 2 or pgid >= self.meta.hwm:
            self.problem(f"page {pgid}: {what} points outside [2, {self.meta.hwm})")
            return None
        try:
            buf = self.pager.read_run(pgid)
        except BackendCorruptError as e:
            self.claim(pgid, 1, what)
            self.problem(f"page {pgid}: {e.what} ({what})")
            return None
        got = page.parse_header(buf)[2]
        if not self.claim(pgid, len(buf) // PAGE_SIZE, what):
            return None
        if got != flags:
            self.problem(f"page {pgid}: flags {got:#x}, expected {flags:#x} ({what})")
            return None
        return buf

    def overflow(self, ref: ValueRef, what: str) -> None:
        buf = self.read(ref.pgid, page.OVERFLOW, f"value in {what}")
        if buf is not None and len(buf) - page.HEADER_SIZE < ref.length:
            self.problem(f"page {ref.pgid}: overflow run shorter than its value ({what})")

    def walk_tree(self, root: int, what: str, collect: bool) -> list[tuple[bytes, object]]:
        """Check a tree's pages and out-of-line values; its (key, value) items if ``collect``."""
        items: list[tuple[bytes, object]] = []
        if not root:
            return items
        depths: set[int] = set()
        stack = [(root, None, None, 0)]  # pgid, low bound, high bound, depth
        while stack:
            pgid, lo, hi, depth = stack.pop()
            try:
                head = os.pread(self.pager.fd, page.HEADER_SIZE, pgid * PAGE_SIZE)
                flags = page.parse_header(head)[2] if len(head) == page.HEADER_SIZE else 0
            except OSError:
                flags = 0
            expect = page.BRANCH if flags == page.BRANCH else page.LEAF
            buf = self.read(pgid, expect, what)
            if buf is None:
                continue
            if expect == page.LEAF:
                keys, values = page.decode_leaf(buf)
                depths.add(depth)
            else:
                keys, children = page.decode_branch(buf)
            if not keys:
                self.problem(f"page {pgid}: empty node in {what}")
                continue
            for a, b in itertools.pairwise(keys):
                if not a < b:
                    self.problem(f"page {pgid}: keys out of order in {what}")
                    break
            if lo is not None and keys[0] < lo:
                self.problem(f"page {pgid}: key below its parent's separator in {what}")
            if hi is not None and keys[-1] >= hi:
                self.problem(f"page {pgid}: key at or above the next separator in {what}")
            if expect == page.LEAF:
                if collect:
                    items.extend(zip(keys, values, strict=True))
                for v in values:
                    if type(v) is ValueRef:
                        self.overflow(v, what)
            else:
                bounds = [*keys[1:], hi]
                for i in range(len(children) - 1, -1, -1):
                    stack.append((children[i], keys[i], bounds[i], depth + 1))
        if len(depths) > 1:
            self.problem(f"{what}: leaves at different depths {sorted(depths)}")
        return items
