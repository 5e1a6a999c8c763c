"""The page file: create, open (choose a meta), pin read states, commit write transactions.

The file is locked (``flock``, as bbolt does) while open: a second opener would reuse pages
the first one's readers still see.

State that a reader may pin (``State``: pager, meta, bucket roots) is replaced as a whole under
``lock`` at the end of each commit; the freelist is touched by the thread running the commit
only (the backend's commit thread or its writer, one commit at a time). A pinned state's txid
keeps every page it reaches from being reused (see ``freelist``).
"""

from __future__ import annotations

import fcntl
import os
import threading
from typing import BinaryIO

from . import page
from .breathe import Breather
from .cursor import tree_iter
from .errors import BackendCorruptError, BackendError
from .freelist import Freelist
from .page import BUCKET_VALUE, PAGE_SIZE, Meta
from .pager import DEFAULT_CACHE_NODES, Pager
from .tx import WriteTx

__all__ = ["DB", "CommitAbandoned", "State", "create_file", "fsync_dir"]


class CommitAbandoned(Exception):
    """A commit failed during or after its meta write: the file's state is unknown."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"commit failed at or after the meta write: {cause!r}")
        self.cause = cause


class State:
    """One committed state: what a reader pins."""

    __slots__ = ("meta", "pager", "roots")

    def __init__(self, pager: Pager, meta: Meta, roots: dict[bytes, int]) -> None:
        self.pager = pager
        self.meta = meta
        self.roots = roots


def fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def create_file(path: str) -> None:
    """An empty page file, created by temp + rename + fsync of the directory."""
    tmp = path + ".tmp"
    meta = Meta(root=0, freelist=2, hwm=3, txid=0)
    bufs = [page.encode_meta(0, meta)]
    meta.txid = 1
    bufs.append(page.encode_meta(1, meta))
    bufs.append(page.encode_freelist(2, 1, []))
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.pwritev(fd, bufs, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path)


class DB:
    def __init__(self, path: str, cache_nodes: int = DEFAULT_CACHE_NODES) -> None:
        self.path = path
        self.cache_nodes = cache_nodes
        self.lock = threading.Lock()
        self.readers: dict[int, int] = {}  # pinned txid -> count
        self._late: list[State] = []  # states of snapshots dropped without close()
        self._load()

    def _load(self) -> None:
        path = self.path
        if os.path.exists(path + ".defrag"):  # a defragment that crashed before its rename
            os.unlink(path + ".defrag")
        if not os.path.exists(path):
            create_file(path)
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError as e:
            raise BackendError(f"{path}: cannot open: {e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise BackendError(
                f"{path}: already open (another Backend, or a read snapshot of a closed one, "
                f"holds it): {e}"
            ) from e
        pager = Pager(path, fd, self.cache_nodes)
        try:
            meta = self._choose_meta(pager)
            size = pager.file_size()
            if size < meta.hwm * PAGE_SIZE:
                raise BackendCorruptError(
                    path,
                    None,
                    f"file has {size} bytes, meta txid {meta.txid} needs {meta.hwm} pages",
                )
            buf = pager.read_run(meta.freelist)
            if page.parse_header(buf)[2] != page.FREELIST:
                raise BackendCorruptError(path, meta.freelist, "expected the freelist page")
            self.freelist = Freelist(page.decode_freelist(buf))
            self.freelist_npages = len(buf) // PAGE_SIZE
            roots = {
                k: BUCKET_VALUE.unpack(v)[0] for k, v in tree_iter(pager, meta.root, b"", None)
            }
        except BaseException:
            pager.decref()
            raise
        self.state = State(pager, meta, roots)
        self.pages_in_use = meta.hwm - len(self.freelist)  # as of the last commit

    @staticmethod
    def _choose_meta(pager: Pager) -> Meta:
        found: list[Meta] = []
        problems: list[str] = []
        for slot in (0, 1):
            buf = os.pread(pager.fd, PAGE_SIZE, slot * PAGE_SIZE)
            m = page.decode_meta(buf, slot)
            if isinstance(m, Meta):
                found.append(m)
            else:
                problems.append(f"meta page {slot}: {m}")
        if not found:
            raise BackendCorruptError(
                pager.path, None, "both meta pages are invalid (" + "; ".join(problems) + ")"
            )
        return max(found, key=lambda m: m.txid)

    # --- readers ------------------------------------------------------------------------------

    def pin(self) -> State:
        with self.lock:
            st = self.state
            txid = st.meta.txid
            self.readers[txid] = self.readers.get(txid, 0) + 1
            st.pager.incref()
            return st

    def unpin_later(self, st: State) -> None:
        """Unpin from a finalizer: no lock may be taken there; the writer unpins it later."""
        self._late.append(st)

    def unpin(self, st: State) -> None:
        with self.lock:
            txid = st.meta.txid
            n = self.readers[txid] - 1
            if n:
                self.readers[txid] = n
            else:
                del self.readers[txid]
        st.pager.decref()

    # --- writing ------------------------------------------------------------------------------

    def commit(
        self,
        changes: dict[bytes, tuple[list[bytes], list]],
        new_buckets: set[bytes],
        breather: Breather | None = None,
    ) -> None:
        """Apply sorted per-bucket changes (value or TOMBSTONE) and create buckets; durable.
        ``breather``: run in a worker thread, let the event loop's thread in (see breathe)."""
        st = self.state
        self._release()  # readers that closed since the last commit no longer hold pages
        tx = WriteTx(st.pager, self.freelist, st.meta, self.freelist_npages, breather)
        roots = st.roots
        updates: dict[bytes, int] = {}
        for name in new_buckets:
            if name not in roots:
                updates[name] = 0
        try:
            for name, (ck, cv) in changes.items():
                old = updates.get(name, roots.get(name))
                if old is None:
                    raise BackendError(f"bucket {name!r} does not exist")
                new = tx.apply(old, ck, cv)
                if new != old or name in updates:
                    updates[name] = new
            meta = tx.commit(updates)
        except BaseException as e:
            if tx.meta_started:
                raise CommitAbandoned(e) from e
            tx.rollback()
            raise
        for pgid, n in tx.nodes.items():  # recent data is the hot data: keep it decoded
            st.pager.cache_put(pgid, n)
        new_roots = dict(roots)
        new_roots.update(updates)
        in_use = meta.hwm - len(self.freelist)
        with self.lock:
            self.state = State(st.pager, meta, new_roots)
            self.freelist_npages = tx.freelist_npages
            self.pages_in_use = in_use
        self._release()

    def _release(self) -> None:
        """Make allocatable the pages no pinned state can reach (writer thread only)."""
        while self._late:
            self.unpin(self._late.pop())
        with self.lock:
            oldest = min(self.readers) if self.readers else self.state.meta.txid
        self.freelist.release(oldest)

    # --- copies -------------------------------------------------------------------------------

    def write_to(self, f: BinaryIO) -> int:
        """Write a consistent copy of the committed state as a page file; bytes written."""
        st = self.pin()
        try:
            meta = st.meta
            f.write(page.encode_meta(0, meta))
            f.write(page.encode_meta(1, meta))
            written = 2 * PAGE_SIZE
            chunk = 256
            pgid = 2
            while pgid < meta.hwm:
                n = min(chunk, meta.hwm - pgid)
                buf = os.pread(st.pager.fd, n * PAGE_SIZE, pgid * PAGE_SIZE)
                if len(buf) != n * PAGE_SIZE:
                    raise BackendCorruptError(self.path, pgid, "file shorter than its meta says")
                f.write(buf)
                written += len(buf)
                pgid += n
            return written
        finally:
            self.unpin(st)

    def close(self) -> None:
        self.state.pager.decref()
