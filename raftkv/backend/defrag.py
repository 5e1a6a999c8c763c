"""Defragment: rewrite the committed state into a fresh, compact file and swap it in.

Every tree is bulk-loaded bottom-up with full pages, in key order, into ``<path>.defrag``
(pages numbered from 2, no free pages), which is fsynced and renamed over the file (then the
directory is fsynced). Runs from a worker thread while no writer is active; read snapshots
opened before keep reading the old file through its still-open descriptor.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from ..failpoint import failpoint, register
from . import page
from .breathe import Breather
from .cursor import tree_leaves
from .db import DB, fsync_dir
from .errors import BackendError
from .page import BUCKET_VALUE, HEADER_SIZE, INLINE_MAX, PAGE_SIZE, Meta, ValueRef

__all__ = ["defragment", "install", "write_compact"]

register("backend.defrag_before_rename")

_FLUSH_BYTES = 4 << 20


class _BulkWriter:
    def __init__(self, fd: int, txid: int, breather: Breather | None) -> None:
        self.fd = fd
        self.txid = txid
        self.breather = breather
        self.next = 2
        self._bufs: list[bytes] = []
        self._buf_start = 2
        self._buf_bytes = 0

    def emit(self, buf: bytes) -> None:
        if self.breather is not None:
            self.breather.tick()
        self._bufs.append(buf)
        self._buf_bytes += len(buf)
        self.next += len(buf) // PAGE_SIZE
        if self._buf_bytes >= _FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if self._bufs:
            data = b"".join(self._bufs)
            os.pwrite(self.fd, data, self._buf_start * PAGE_SIZE)
            self._buf_start += len(data) // PAGE_SIZE
            self._bufs = []
            self._buf_bytes = 0

    def _leaf(self, keys: list[bytes], values: list) -> int:
        pgid = self.next
        self.emit(page.encode_leaf(pgid, self.txid, keys, values))
        return pgid

    def build_tree(self, items: Iterable[tuple[bytes, bytes]]) -> int:
        """Bulk-load sorted items; the root page id (0 when there are none)."""
        level: list[tuple[bytes, int]] = []
        keys: list[bytes] = []
        values: list = []
        size = HEADER_SIZE
        for k, v in items:
            if len(v) > INLINE_MAX:
                pgid = self.next
                self.emit(page.encode_overflow(pgid, self.txid, v))
                v = ValueRef(pgid, len(v))
            es = 12 + len(k) + len(v)
            if keys and size + es > PAGE_SIZE:
                level.append((keys[0], self._leaf(keys, values)))
                keys, values, size = [], [], HEADER_SIZE
            keys.append(k)
            values.append(v)
            size += es
        if keys:
            level.append((keys[0], self._leaf(keys, values)))
        while len(level) > 1:
            upper: list[tuple[bytes, int]] = []
            keys, children, size = [], [], HEADER_SIZE
            for k, child in level:
                es = 12 + len(k)
                if keys and size + es > PAGE_SIZE:
                    upper.append((keys[0], self._branch(keys, children)))
                    keys, children, size = [], [], HEADER_SIZE
                keys.append(k)
                children.append(child)
                size += es
            upper.append((keys[0], self._branch(keys, children)))
            level = upper
        return level[0][1] if level else 0

    def _branch(self, keys: list[bytes], children: list[int]) -> int:
        pgid = self.next
        self.emit(page.encode_branch(pgid, self.txid, keys, children))
        return pgid


def write_compact(db: DB, path: str, breather: Breather | None = None) -> Meta:
    """Write the committed state of ``db`` compactly to a new file at ``path`` (fsynced).
    ``breather``: run in a worker thread, let the event loop's thread in (see breathe)."""
    st = db.pin()
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        txid = st.meta.txid + 1
        w = _BulkWriter(fd, txid, breather)
        value = st.pager.value
        roots = {}
        for name in sorted(st.roots):
            # (a whole-file scan: the nodes read are not cached, see Pager.peek)
            leaves = tree_leaves(st.pager, st.roots[name], b"")
            items = ((k, value(v)) for keys, vs in leaves for k, v in zip(keys, vs, strict=True))
            roots[name] = w.build_tree(items)
        root = w.build_tree((n, BUCKET_VALUE.pack(r, 0)) for n, r in sorted(roots.items()))
        freelist = w.next
        w.emit(page.encode_freelist(freelist, txid, []))
        w.flush()
        meta = Meta(root, freelist, w.next, txid)
        os.pwrite(fd, page.encode_meta(txid % 2, meta), (txid % 2) * PAGE_SIZE)
        older = meta.copy()
        older.txid = txid - 1
        os.pwrite(fd, page.encode_meta(older.txid % 2, older), (older.txid % 2) * PAGE_SIZE)
        os.fsync(fd)
        return meta
    finally:
        os.close(fd)
        db.unpin(st)


def defragment(db: DB) -> None:
    """Rewrite ``db``'s file compactly and reopen it (no writer may be running)."""
    tmp = db.path + ".defrag"
    try:
        write_compact(db, tmp)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise BackendError(f"{db.path}: defragment failed: {e}") from e
    install(db, tmp)


def install(db: DB, tmp: str) -> None:
    """Rename the compact copy ``tmp`` (``write_compact``) over the file and reopen it."""
    try:
        failpoint("backend.defrag_before_rename")
        os.replace(tmp, db.path)
        fsync_dir(db.path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise BackendError(f"{db.path}: defragment failed: {e}") from e
    old = db.state
    with db.lock:
        db._load()
    old.pager.decref()
