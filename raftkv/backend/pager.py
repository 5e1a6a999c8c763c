"""Page I/O: positional reads verified by checksum, a bounded cache of decoded nodes, writes.

Pages are read on demand with ``os.pread`` (no mmap: the file grows and readers on other
threads must never see a remapped buffer). A page reachable from a pinned state is immutable
until it is freed and released, so a cached node stays valid until its page id is written
again; ``write()`` drops those ids from the cache. The cache is shared by the writer and by
reader threads; a lock guards it.
"""

from __future__ import annotations

import os
import struct
import threading
from collections import OrderedDict

from . import page
from .errors import BackendCorruptError, BackendError
from .node import Branch, Leaf
from .page import PAGE_SIZE, LeafRecords, ValueRef

__all__ = ["DEFAULT_CACHE_NODES", "Pager"]

DEFAULT_CACHE_NODES = 8192
# header fields read on every page (see ``page``): flags u16 at 16, overflow u32 at 24
_FLAGS = struct.Struct("<H")
_OVERFLOW = struct.Struct("<I")


class Pager:
    def __init__(self, path: str, fd: int, cache_nodes: int = DEFAULT_CACHE_NODES) -> None:
        self.path = path
        self.fd = fd
        self._cache: OrderedDict[int, Leaf | Branch] = OrderedDict()
        self._cache_cap = cache_nodes
        self._lock = threading.Lock()
        self.refs = 1  # the Backend's own reference; read snapshots add theirs
        self.closed = False

    # --- reading ------------------------------------------------------------------------------

    def read_run(self, pgid: int) -> bytes:
        """The verified bytes of the page run starting at ``pgid``."""
        if self.closed:
            raise BackendError(f"{self.path}: backend is closed")
        try:
            buf = os.pread(self.fd, PAGE_SIZE, pgid * PAGE_SIZE)
            if len(buf) == PAGE_SIZE:
                overflow = _OVERFLOW.unpack_from(buf, 24)[0]
                if overflow:
                    if overflow > 1 << 20:
                        raise BackendCorruptError(self.path, pgid, f"absurd overflow {overflow}")
                    rest = os.pread(self.fd, overflow * PAGE_SIZE, (pgid + 1) * PAGE_SIZE)
                    buf += rest
        except OSError as e:
            raise BackendError(f"{self.path}: page {pgid}: read failed: {e}") from e
        problem = page.verify(buf, pgid)
        if problem:
            raise BackendCorruptError(self.path, pgid, problem)
        return buf

    def node(self, pgid: int) -> Leaf | Branch:
        # Each OrderedDict call is atomic under the GIL; a hit needs no lock (a concurrent
        # eviction between get and move_to_end only costs the LRU bump).
        cache = self._cache
        n = cache.get(pgid)
        if n is not None:
            try:  # noqa: SIM105 (hot path: suppress() costs a context manager)
                cache.move_to_end(pgid)
            except KeyError:
                pass
            return n
        n = self._decode(pgid)
        self.cache_put(pgid, n)
        return n

    def peek(self, pgid: int) -> Leaf | Branch:
        """``node(pgid)`` for a bulk scan: a cached node is used, a missing one is read but
        not cached (a scan of the whole file would only evict the hot nodes)."""
        n = self._cache.get(pgid)
        return n if n is not None else self._decode(pgid)

    def peek_records(self, pgid: int) -> Leaf | Branch | LeafRecords:
        """``peek(pgid)`` for a bulk scan of records: a leaf neither cached nor holding an
        out-of-line value comes as its records (``page.leaf_records``), not decoded."""
        n = self._cache.get(pgid)
        if n is not None:
            return n
        buf = self.read_run(pgid)
        if _FLAGS.unpack_from(buf, 16)[0] == page.LEAF:
            records = page.leaf_records(buf)
            if records is not None:
                return records
        return self._node_of(buf, pgid)

    def _decode(self, pgid: int) -> Leaf | Branch:
        return self._node_of(self.read_run(pgid), pgid)

    def _node_of(self, buf: bytes, pgid: int) -> Leaf | Branch:
        flags = _FLAGS.unpack_from(buf, 16)[0]
        if flags == page.LEAF:
            n = Leaf(*page.decode_leaf(buf))
        elif flags == page.BRANCH:
            n = Branch(*page.decode_branch(buf))
        else:
            raise BackendCorruptError(
                self.path, pgid, f"expected a tree node, found flags {flags:#x}"
            )
        return n

    def cache_put(self, pgid: int, n: Leaf | Branch) -> None:
        cache = self._cache
        with self._lock:
            cache[pgid] = n
            while len(cache) > self._cache_cap:
                cache.popitem(last=False)

    def value(self, v: bytes | ValueRef) -> bytes:
        """A leaf value, fetched from its overflow run when it is out of line."""
        if type(v) is not ValueRef:
            return v
        buf = self.read_run(v.pgid)
        if page.parse_header(buf)[2] != page.OVERFLOW:
            raise BackendCorruptError(self.path, v.pgid, "expected an overflow page")
        if len(buf) - page.HEADER_SIZE < v.length:
            raise BackendCorruptError(self.path, v.pgid, "overflow run shorter than its value")
        return page.decode_overflow(buf, v.length)

    # --- writing ------------------------------------------------------------------------------

    def write(self, pages: dict[int, bytes]) -> None:
        """Write encoded runs at their page ids (contiguous runs in one syscall)."""
        with self._lock:
            for pgid in pages:
                self._cache.pop(pgid, None)
        ids = sorted(pages)
        i = 0
        try:
            while i < len(ids):
                start = ids[i]
                bufs = [pages[start]]
                nxt = start + len(bufs[0]) // PAGE_SIZE
                i += 1
                while i < len(ids) and ids[i] == nxt and len(bufs) < 512:
                    b = pages[nxt]
                    bufs.append(b)
                    nxt += len(b) // PAGE_SIZE
                    i += 1
                os.pwritev(self.fd, bufs, start * PAGE_SIZE)
        except OSError as e:
            raise BackendError(f"{self.path}: write failed: {e}") from e

    def write_at(self, pgid: int, buf: bytes) -> None:
        try:
            os.pwrite(self.fd, buf, pgid * PAGE_SIZE)
        except OSError as e:
            raise BackendError(f"{self.path}: page {pgid}: write failed: {e}") from e

    def sync(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            raise BackendError(f"{self.path}: fdatasync failed: {e}") from e

    def file_size(self) -> int:
        return os.fstat(self.fd).st_size

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    # --- lifetime -----------------------------------------------------------------------------

    def incref(self) -> None:
        with self._lock:
            self.refs += 1

    def decref(self) -> None:
        with self._lock:
            self.refs -= 1
            last = self.refs == 0
        if last and not self.closed:
            self.closed = True
            os.close(self.fd)
