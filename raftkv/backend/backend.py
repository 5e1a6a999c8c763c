"""The batched backend (etcd's mvcc/backend): a write buffer in front of the page file.

Writes land in a per-bucket dict (``key -> value`` or ``TOMBSTONE``): the put path is one dict
store and one counter. Writer-side reads merge that buffer over the last committed tree, so a
write is visible at once. ``commit()`` hands each bucket's buffer, sorted, to one write
transaction (one pair of fsyncs per batch); it runs when asked, when ``batch_limit`` writes are
pending (checked on every put), or from ``commit_if_due()`` once ``batch_interval`` has passed.

Threads: every method but those of ``ReadSnapshot`` belongs to the one writer thread. A
``ReadSnapshot`` pins the last committed state and may be used from any thread; pages it can
reach are not reused until it is closed.

A commit that fails before its meta write is rolled back: the batch stays buffered and the
next commit retries it (e.g. after ENOSPC). One that fails during or after the meta write
leaves the file's state unknown (fsync errors cannot be retried): the backend refuses further
commits (fail-stop, as etcd panics) and must be reopened.
"""

from __future__ import annotations

import time
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import islice
from typing import BinaryIO

from . import check as _check
from . import defrag as _defrag
from .cursor import Cursor, tree_get, tree_iter
from .db import DB, CommitAbandoned, State
from .errors import BackendError
from .node import TOMBSTONE
from .page import PAGE_SIZE
from .pager import DEFAULT_CACHE_NODES

__all__ = ["Backend", "ReadSnapshot"]


class Backend:
    #: The clock of ``batch_interval`` (tests replace it on an instance).
    clock = staticmethod(time.monotonic)

    def __init__(self, db: DB, batch_interval: float, batch_limit: int) -> None:
        self._db = db
        self.path = db.path
        self._batch_interval = batch_interval
        self._batch_limit = batch_limit
        self._buf: dict[bytes, dict] = {name: {} for name in db.state.roots}
        self._sorted: dict[bytes, list[bytes]] = {name: [] for name in db.state.roots}
        self._new_buckets: set[bytes] = set()
        self._pending = 0
        self._last_commit = self.clock()
        self._failed: BaseException | None = None
        self._closed = False
        self.hold_commits = False  # commit_if_due waits (an online defragment is copying)
        self.commit_observer: Callable[[float], None] | None = None  # seconds per commit
        self.commit_error_observer: Callable[[BaseException], None] | None = None

    @classmethod
    def open(
        cls,
        path: str,
        *,
        batch_interval: float = 0.1,
        batch_limit: int = 10_000,
        cache_nodes: int = DEFAULT_CACHE_NODES,
    ) -> Backend:
        """Open (or create) the page file at ``path``."""
        return cls(DB(path, cache_nodes), batch_interval, batch_limit)

    # --- writes -------------------------------------------------------------------------------

    def create_bucket(self, name: bytes) -> None:
        if name in self._buf:
            return
        self._buf[name] = {}
        self._sorted[name] = []
        self._new_buckets.add(name)
        self._pending += 1

    def put(self, bucket: bytes, key: bytes, value: bytes) -> None:
        try:
            self._buf[bucket][key] = value
        except KeyError:
            raise BackendError(f"bucket {bucket!r} does not exist") from None
        self._pending += 1
        if self._pending >= self._batch_limit:
            self.commit()

    def delete(self, bucket: bytes, key: bytes) -> None:
        try:
            self._buf[bucket][key] = TOMBSTONE
        except KeyError:
            raise BackendError(f"bucket {bucket!r} does not exist") from None
        self._pending += 1
        if self._pending >= self._batch_limit:
            self.commit()

    @property
    def pending(self) -> int:
        return self._pending

    def commit(self) -> None:
        """Commit the batch now: new pages, fsync, meta, fsync."""
        if self._failed is not None:
            raise BackendError(f"{self.path}: a commit failed earlier ({self._failed!r}); reopen")
        if not self._pending:
            self._last_commit = self.clock()
            return
        changes = {}
        for name, d in self._buf.items():
            if d:
                keys = self._sorted_keys(name)
                changes[name] = (keys, [d[k] for k in keys])
        t0 = time.perf_counter()
        try:
            self._db.commit(changes, self._new_buckets)
        except CommitAbandoned as e:
            self._failed = e.cause
            self._commit_failed(e.cause)
            raise BackendError(f"{self.path}: {e}; reopen the backend") from e.cause
        except BaseException as e:
            self._commit_failed(e)
            raise
        # any other error was rolled back: the buffer is kept, a later commit retries it
        for name in changes:
            self._buf[name] = {}
            self._sorted[name] = []
        self._new_buckets = set()
        self._pending = 0
        self._last_commit = self.clock()
        if self.commit_observer is not None:
            self.commit_observer(time.perf_counter() - t0)

    def _commit_failed(self, e: BaseException) -> None:
        if self.commit_error_observer is not None:
            self.commit_error_observer(e)

    def commit_if_due(self) -> bool:
        if not self._pending or self.hold_commits:
            return False
        if (
            self._pending >= self._batch_limit
            or self.clock() - self._last_commit >= self._batch_interval
        ):
            self.commit()
            return True
        return False

    def _sorted_keys(self, bucket: bytes) -> list[bytes]:
        """The buffer's keys in order (new keys are the tail of the dict's insertion order)."""
        d = self._buf[bucket]
        s = self._sorted[bucket]
        if len(s) != len(d):
            new = list(islice(d, len(s), None))
            new.sort()
            if not s or new[0] > s[-1]:
                s.extend(new)
            else:
                s = self._sorted[bucket] = sorted(s + new)
        return s

    # --- reads (the writer's view: committed tree + buffer) -----------------------------------

    def _bucket(self, bucket: bytes) -> dict:
        d = self._buf.get(bucket)
        if d is None:
            raise BackendError(f"bucket {bucket!r} does not exist")
        return d

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        v = self._bucket(bucket).get(key)
        if v is not None:
            return None if v is TOMBSTONE else v
        st = self._db.state
        root = st.roots.get(bucket)
        if not root:
            return None
        v = tree_get(st.pager, root, key)
        return None if v is None else st.pager.value(v)

    def range(
        self,
        bucket: bytes,
        start: bytes,
        end: bytes | None = None,
        *,
        limit: int = 0,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        d = self._bucket(bucket)
        st = self._db.state
        committed = tree_iter(st.pager, st.roots.get(bucket, 0), start, end, reverse)
        if not d:
            return _collect(st.pager, committed, limit)
        keys = self._sorted_keys(bucket)
        lo = bisect_left(keys, start)
        hi = len(keys) if end is None else bisect_left(keys, end, lo)
        if lo >= hi:
            return _collect(st.pager, committed, limit)
        bkeys = keys[lo:hi]
        if reverse:
            bkeys.reverse()
        return _merge(st.pager, committed, bkeys, d, limit, reverse)

    # --- snapshots, copies, maintenance -------------------------------------------------------

    def read_snapshot(self) -> ReadSnapshot:
        return ReadSnapshot(self._db)

    def write_to(self, f: BinaryIO) -> int:
        return self._db.write_to(f)

    def hash(self) -> int:
        """CRC32 over every bucket's name, keys and values in order (commits pending first)."""
        self.commit()
        with self.read_snapshot() as snap:
            return snap.hash()

    @property
    def size(self) -> int:
        return self._db.state.pager.file_size()

    @property
    def size_in_use(self) -> int:
        return (self._db.state.meta.hwm - len(self._db.freelist)) * PAGE_SIZE

    def defragment(self) -> None:
        self.commit()
        _defrag.defragment(self._db)

    def check(self) -> list[str]:
        return _check.check(self._db)

    def close(self) -> None:
        if self._closed:
            return
        try:
            if self._failed is None:
                self.commit()
        finally:
            self._closed = True
            self._db.close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReadSnapshot:
    """A read-only view of the last committed state, usable from any thread until closed."""

    def __init__(self, db: DB) -> None:
        self._db = db
        self._st: State | None = db.pin()

    @property
    def txid(self) -> int:
        return self._state().meta.txid

    def _state(self) -> State:
        st = self._st
        if st is None:
            raise BackendError("read snapshot is closed")
        return st

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        st = self._state()
        root = st.roots.get(bucket)
        if not root:
            return None
        v = tree_get(st.pager, root, key)
        return None if v is None else st.pager.value(v)

    def range(
        self,
        bucket: bytes,
        start: bytes,
        end: bytes | None = None,
        *,
        limit: int = 0,
        reverse: bool = False,
    ) -> list[tuple[bytes, bytes]]:
        st = self._state()
        it = tree_iter(st.pager, st.roots.get(bucket, 0), start, end, reverse)
        return _collect(st.pager, it, limit)

    def items(self, bucket: bytes) -> Iterator[tuple[bytes, bytes]]:
        st = self._state()
        value = st.pager.value
        for k, v in tree_iter(st.pager, st.roots.get(bucket, 0), b"", None):
            yield k, value(v)

    def cursor(self, bucket: bytes) -> Cursor:
        """A cursor over ``bucket`` (first/last/seek/next/prev), valid while this is open."""
        st = self._state()
        return Cursor(st.pager, st.roots.get(bucket, 0))

    def buckets(self) -> list[bytes]:
        return sorted(self._state().roots)

    def hash(self) -> int:
        crc = 0
        for name in self.buckets():
            crc = zlib.crc32(name, crc)
            for k, v in self.items(name):
                crc = zlib.crc32(v, zlib.crc32(k, crc))
        return crc

    def close(self) -> None:
        st, self._st = self._st, None
        if st is not None:
            self._db.unpin(st)

    def __enter__(self) -> ReadSnapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        # a snapshot dropped without close(): never take a lock in a finalizer (it may run
        # inside a section holding that very lock); the writer unpins it at its next commit
        st = getattr(self, "_st", None)
        if st is not None:
            self._st = None
            self._db.unpin_later(st)


def _collect(pager, it, limit: int) -> list[tuple[bytes, bytes]]:
    if limit > 0:
        it = islice(it, limit)
    value = pager.value
    return [(k, v if type(v) is bytes else value(v)) for k, v in it]


def _merge(pager, committed, bkeys: list[bytes], d: dict, limit: int, reverse: bool) -> list:
    """Merge the committed iterator with buffered keys (buffer wins, tombstones hide)."""
    out: list[tuple[bytes, bytes]] = []
    value = pager.value
    nb = len(bkeys)
    bi = 0
    t = next(committed, None)
    while t is not None or bi < nb:
        if bi < nb:
            bk = bkeys[bi]
            if t is None:
                take_buf = True
            else:
                tk = t[0]
                if tk == bk:
                    t = next(committed, None)  # shadowed by the buffer
                    take_buf = True
                else:
                    take_buf = (bk > tk) if reverse else (bk < tk)
        else:
            take_buf = False
        if take_buf:
            bi += 1
            v = d[bk]
            if v is TOMBSTONE:
                continue
            out.append((bk, v))
        else:
            k, v = t
            out.append((k, v if type(v) is bytes else value(v)))
            t = next(committed, None)
        if limit and len(out) >= limit:
            break
    return out
