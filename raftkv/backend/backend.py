"""The batched backend (etcd's mvcc/backend): a write buffer in front of the page file.

Writes land in a per-bucket dict (``key -> value`` or ``TOMBSTONE``): the put path is one dict
store and one counter. Writer-side reads merge that buffer over the last committed tree, so a
write is visible at once. A commit hands each bucket's buffer, sorted, to one write
transaction (one pair of fsyncs per batch); it runs when asked, when ``batch_limit`` writes are
pending (checked on every put), or from ``commit_if_due()`` once ``batch_interval`` has passed.

Pipelined commit (etcd commits from its own goroutine; an event loop must not wait on fsync)::

    writer thread (the event loop)                commit thread
    ------------------------------                -------------
    commit_async(): wait for the commit in flight
      (if any) and reap it; freeze the buffer:
      frozen <- buffer, buffer <- {}  (O(buckets))  sort frozen keys, build the new pages,
    put/delete -> the new buffer                    write, fdatasync, meta, fdatasync,
    get/range  -> committed + frozen + buffer       swap in the new committed state
    reap (next commit_async/commit): drop the frozen layer, report the duration or the error

- Reads merge three layers, newest wins: buffer, frozen, committed. The frozen layer is also
  correct over the state its own commit produced (overlaying a batch on a state that already
  holds it changes nothing), so a read never has to know whether the commit has landed.
- At most one commit is in flight, and only the writer thread starts one (the next waits for
  it): the commit thread owns the freelist while it runs, so two commits never allocate the
  same page. It allocates only pages released before it started, which no state a reader can
  still see reaches (the writer's own reads see the state it started from, or its result;
  snapshots pin theirs), and it frees pages into ``pending`` as before. Crash safety is the
  one commit protocol of ``tx`` (a crash leaves the previous or the new commit).
- The frozen batch is the buffer exactly as it was at the freeze: a caller that freezes
  between its units of work (the server: between applied entries) commits whole units only,
  with the consistent index those units wrote.
- ``commit()`` is the same freeze, run on the calling thread (after the commit in flight).

Threads: every method but those of ``ReadSnapshot`` belongs to the one writer thread. A
``ReadSnapshot`` pins the last committed state and may be used from any thread; pages it can
reach are not reused until it is closed.

A commit that fails before its meta write is rolled back: its batch is folded back under the
buffer and the next commit retries it (e.g. after ENOSPC). One that fails during or after the
meta write leaves the file's state unknown (fsync errors cannot be retried): the backend
refuses further commits (fail-stop, as etcd panics) and must be reopened. Either error is
raised to the writer thread by the call that reaps the commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator
from itertools import islice
from typing import BinaryIO, TypeVar

from crc32c import crc32c

from . import check as _check
from . import defrag as _defrag
from .breathe import Breather
from .cursor import Cursor, tree_get, tree_iter, tree_records
from .db import DB, CommitAbandoned, State
from .errors import BackendError
from .node import TOMBSTONE
from .page import PAGE_SIZE, LeafRecords, pack_records
from .pager import DEFAULT_CACHE_NODES

__all__ = ["HELD_PENDING_LIMIT", "Backend", "ReadSnapshot"]

T = TypeVar("T")

_SCAN_CHUNK = 1000
# writes a batch may grow to while ``hold_commits`` (an online defragment copying) keeps
# commit_soon from committing: under a flood of puts a commit at the usual limit would make
# every copy stale, and the defragment would fall back to blocking the writer
HELD_PENDING_LIMIT = 200_000
# how often a forced commit on the event loop looks whether the hold is over (a defragment's
# copy takes seconds: a poll costs nothing next to it and keeps the backend free of a loop)
_HOLD_POLL = 0.01


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
        self._frozen: _Frozen | None = None  # the batch of the last commit started, until reaped
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._last_commit = self.clock()
        self._failed: BaseException | None = None
        self._closed = False
        # commit_if_due waits, commit_soon up to HELD_PENDING_LIMIT (an online defragment copies)
        self.hold_commits = False
        self.generation = 0  # files swapped in whole (replace_file)
        self._size_of: tuple[object, int] = (None, 0)  # (committed state, its file size)
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
        """Commit the batch now, on this thread: new pages, fsync, meta, fsync.

        A commit in flight (``commit_async``) is waited for first; its error is raised here.
        """
        self._check_usable()
        self._reap()
        if not self._pending:
            self._last_commit = self.clock()
            return
        self._run(self._freeze())
        self._reap()

    def commit_async(self) -> concurrent.futures.Future[None] | None:
        """Freeze the batch and commit it in the commit thread; its future (None: no writes).

        The commit in flight, if any, is waited for and reaped first (its error is raised
        here): at most one is in flight. The future's outcome is also reported to the writer
        thread (``commit_observer``, the error raised) by the next call that reaps it:
        ``commit_async``, ``commit``, ``wait_commit`` or the async forms.
        """
        self._check_usable()
        self._reap()
        if not self._pending:
            self._last_commit = self.clock()
            return None
        fz = self._freeze()
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="backend-commit"
            )
        try:
            self._executor.submit(self._run, fz, True)
        except RuntimeError:  # the interpreter is shutting down: no new threads
            self._run(fz)
        return fz.future

    def wait_commit(self) -> None:
        """Wait for the commit in flight, if any, and reap it (its error is raised here)."""
        self._reap()

    async def commit_in_thread(self) -> None:
        """``commit()`` for an event loop: waits for the commit thread without blocking, and
        for ``hold_commits`` to end (the callers, a snapshot taken or sent, can wait for an
        online defragment's copy; a commit now would make it stale)."""
        await self._unheld()
        await self._settled()
        fut = self.commit_async()  # nothing in flight now: this freezes and returns at once
        if fut is not None:
            await _wait_future(fut)
            self._reap(wait=False)

    def commit_soon(self) -> bool:
        """``commit_async()`` that never waits, for the event loop's batch-limit commit: hand
        the batch to the commit thread unless a commit is still in flight (then the batch
        keeps growing and False is returned; the next call, or the periodic commit, takes it),
        or ``hold_commits`` holds a batch under ``HELD_PENDING_LIMIT``. A finished commit is
        reaped first (its error is raised here)."""
        self._check_usable()
        self._reap(wait=False)
        if self._frozen is not None or not self._pending:
            return False
        if self.hold_commits and self._pending < HELD_PENDING_LIMIT:
            return False
        return self.commit_async() is not None

    async def commit_marked(self, mark: Callable[[], T]) -> T:
        """Commit everything written so far (in the commit thread) and return ``mark()``,
        called at the moment the batch is frozen: what it reads of the writer's state is
        exactly what this commit holds, as nothing is written between the two. Waits for
        ``hold_commits`` to end first, as ``commit_in_thread`` does."""
        await self._unheld()
        await self._settled()
        marked = mark()
        fut = self.commit_async()  # nothing in flight now: this freezes and returns at once
        if fut is not None:
            await _wait_future(fut)
            self._reap(wait=False)
        return marked

    async def commit_if_due_in_thread(self) -> bool:
        """``commit_if_due()`` for an event loop (see ``commit_in_thread``)."""
        await self._settled()
        if not self._due():
            return False
        await self.commit_in_thread()
        return True

    def replace_file(self, install: Callable[[], None]) -> None:
        """Replace the whole file with another db image, keeping this object (every holder of
        it sees the new state): the batch is committed first, ``install()`` moves the image
        over ``path``, and the file is opened again. Readers of the old state keep it until
        they close. ``generation`` counts the replacements."""
        self.commit()
        install()
        db = self._db
        old = db.state
        with db.lock:
            db._load()
        old.pager.decref()
        self._buf = {name: {} for name in db.state.roots}
        self._sorted = {name: [] for name in db.state.roots}
        self._new_buckets = set()
        self.generation += 1

    def commit_if_due(self) -> bool:
        if not self._due():
            return False
        self.commit()
        return True

    def _due(self) -> bool:
        if not self._pending or self.hold_commits:
            return False
        return (
            self._pending >= self._batch_limit
            or self.clock() - self._last_commit >= self._batch_interval
        )

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise BackendError(f"{self.path}: a commit failed earlier ({self._failed!r}); reopen")

    def _freeze(self) -> _Frozen:
        """Hand the buffer to a commit and start a fresh one (O(buckets), on the writer)."""
        fz = _Frozen(self._buf, self._sorted, self._new_buckets, self._pending)
        self._buf = {name: {} for name in fz.buf}
        self._sorted = {name: [] for name in fz.buf}
        self._new_buckets = set()
        self._pending = 0
        self._frozen = fz
        self._last_commit = self.clock()
        return fz

    def _run(self, fz: _Frozen, in_thread: bool = False) -> None:
        """Commit a frozen batch (in the commit thread, letting the event loop's thread in
        while it builds pages: see ``breathe``; or on the writer for ``commit()``)."""
        t0 = time.perf_counter()
        breather = Breather() if in_thread else None
        try:
            changes = {}
            for name, d in fz.buf.items():
                if d:
                    keys = fz.keys(name)
                    changes[name] = (keys, [d[k] for k in keys])
            self._db.commit(changes, fz.new_buckets, breather)
        except BaseException as e:
            fz.future.set_exception(e)
            return
        fz.seconds = time.perf_counter() - t0
        fz.future.set_result(None)

    def _reap(self, wait: bool = True) -> None:
        """Writer thread: finish the last commit started (waiting for it unless ``wait`` is
        false): drop its frozen layer and report its duration, or raise its error."""
        fz = self._frozen
        if fz is None:
            return
        if not fz.future.done():
            if not wait:
                return
            concurrent.futures.wait((fz.future,))
        self._frozen = None
        e = fz.future.exception()
        if e is None:
            if self.commit_observer is not None:
                self.commit_observer(fz.seconds)
            return
        if isinstance(e, CommitAbandoned):
            self._failed = e.cause
            self._commit_failed(e.cause)
            raise BackendError(f"{self.path}: {e}; reopen the backend") from e.cause
        self._unfreeze(fz)  # rolled back: the batch goes back under the buffer, retried later
        self._commit_failed(e)
        raise e

    def _unfreeze(self, fz: _Frozen) -> None:
        for name, fd in fz.buf.items():
            if fd:
                merged = dict(fd)
                merged.update(self._buf[name])  # the newer writes win
                self._buf[name] = merged
                self._sorted[name] = []
        self._new_buckets |= fz.new_buckets
        self._pending += fz.pending

    async def _unheld(self) -> None:
        while self.hold_commits:
            await asyncio.sleep(_HOLD_POLL)

    async def _settled(self) -> None:
        """Wait, without blocking the event loop, until no commit is in flight."""
        while (fz := self._frozen) is not None and not fz.future.done():
            await _wait_future(fz.future)

    def _commit_failed(self, e: BaseException) -> None:
        if self.commit_error_observer is not None:
            self.commit_error_observer(e)

    def _sorted_keys(self, bucket: bytes) -> list[bytes]:
        """The buffer's keys in order (new keys are the tail of the dict's insertion order)."""
        d = self._buf[bucket]
        s = self._sorted[bucket]
        if len(s) != len(d):
            new = sorted(islice(reversed(d), len(d) - len(s)))  # (the tail, not a walk to it)
            if not s or new[0] > s[-1]:
                s.extend(new)
            else:
                s = self._sorted[bucket] = _merged(s, new)
        return s

    # --- reads (the writer's view: committed tree + buffer) -----------------------------------

    def _bucket(self, bucket: bytes) -> dict:
        d = self._buf.get(bucket)
        if d is None:
            raise BackendError(f"bucket {bucket!r} does not exist")
        return d

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        v = self._bucket(bucket).get(key)
        if v is None:
            fz = self._frozen
            if fz is not None:
                fd = fz.buf.get(bucket)
                if fd:
                    v = fd.get(key)
        if v is not None:
            return None if v is TOMBSTONE else v
        return _committed_get(self._db.state, bucket, key)

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
        items = tree_iter(st.pager, st.roots.get(bucket, 0), start, end, reverse)
        fz = self._frozen
        if fz is not None:
            fd = fz.buf.get(bucket)
            if fd:
                fkeys = _key_slice(fz.keys(bucket), start, end, reverse)
                if fkeys:
                    items = _overlay(items, fkeys, fd, reverse)
        if d:
            bkeys = _key_slice(self._sorted_keys(bucket), start, end, reverse)
            if bkeys:
                items = _overlay(items, bkeys, d, reverse)
        return _collect(st.pager, items, limit)

    def scan(self, bucket: bytes, start: bytes = b"") -> Iterator[LeafRecords]:
        """Every item of ``bucket`` from ``start`` on, in key order, as records of a few
        hundred items each (``page.LeafRecords``: sizes and the bytes as stored): the bulk
        read that rebuilds an index at start. Writer thread; no write or commit may come
        between the first and the last chunk."""
        self._bucket(bucket)
        fz = self._frozen
        if self._buf[bucket] or (fz is not None and fz.buf.get(bucket)):
            # buffered writes to merge in: the general path
            while True:
                items = self.range(bucket, start, limit=_SCAN_CHUNK)
                if items:
                    keys, values = zip(*items, strict=True)
                    yield pack_records(list(keys), list(values))
                if len(items) < _SCAN_CHUNK:
                    return
                start = items[-1][0] + b"\x00"
        with self.read_snapshot() as snap:
            yield from snap.records(bucket, start)

    # --- snapshots, copies, maintenance -------------------------------------------------------

    def read_snapshot(self) -> ReadSnapshot:
        return ReadSnapshot(self._db)

    def write_to(self, f: BinaryIO) -> int:
        return self._db.write_to(f)

    def hash(self) -> int:
        """CRC-32C over every bucket's name, keys and values in order (commits pending first):
        the hash etcdctl's ``snapshot status`` reports."""
        self.commit()
        with self.read_snapshot() as snap:
            return snap.hash()

    @property
    def size(self) -> int:
        """The file's size as of the last commit (asked on every put by the quota check: one
        fstat per committed state, not per call, as etcd's backend keeps its size)."""
        st = self._db.state
        if st is not self._size_of[0]:
            self._size_of = (st, st.pager.file_size())
        return self._size_of[1]

    @property
    def size_in_use(self) -> int:
        return self._db.pages_in_use * PAGE_SIZE

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
            fz = self._frozen
            if fz is not None:  # (commit() raised before reaping it) never close under a writer
                concurrent.futures.wait((fz.future,))
            if self._executor is not None:
                self._executor.shutdown()
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
        return _committed_get(self._state(), bucket, key)

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

    def records(self, bucket: bytes, start: bytes = b"") -> Iterator[LeafRecords]:
        """The records (``page.LeafRecords``) of each leaf of ``bucket`` from the first key >=
        ``start``, in key order (out-of-line values read in)."""
        st = self._state()
        return tree_records(st.pager, st.roots.get(bucket, 0), start)

    def cursor(self, bucket: bytes) -> Cursor:
        """A cursor over ``bucket`` (first/last/seek/next/prev), valid while this is open."""
        st = self._state()
        return Cursor(st.pager, st.roots.get(bucket, 0))

    def buckets(self) -> list[bytes]:
        return sorted(self._state().roots)

    def hash(self) -> int:
        """CRC-32C (Castagnoli, as etcd's snapshot status) of every bucket name, key and value."""
        crc = 0
        for name in self.buckets():
            crc = crc32c(name, crc)
            for k, v in self.items(name):
                crc = crc32c(v, crc32c(k, crc))
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


def _committed_get(st: State, bucket: bytes, key: bytes) -> bytes | None:
    """``key``'s value in the committed tree ``st`` (an out-of-line value read in full)."""
    v = tree_get(st.pager, st.roots.get(bucket, 0), key)
    return None if v is None else st.pager.value(v)


def _collect(pager, it, limit: int) -> list[tuple[bytes, bytes]]:
    if limit > 0:
        it = islice(it, limit)
    value = pager.value
    return [(k, v if type(v) is bytes else value(v)) for k, v in it]


def _key_slice(keys: list[bytes], start: bytes, end: bytes | None, reverse: bool) -> list:
    """The sorted ``keys`` in [start, end), in iteration order."""
    lo = bisect_left(keys, start)
    hi = len(keys) if end is None else bisect_left(keys, end, lo)
    if lo >= hi:
        return []
    out = keys[lo:hi]
    if reverse:
        out.reverse()
    return out


def _overlay(under: Iterator, bkeys: list[bytes], d: dict, reverse: bool) -> Iterator[tuple]:
    """``under``'s items with the buffered ``bkeys`` (in iteration order, values in ``d``)
    merged in: a buffered key shadows the same key below, a tombstone hides it."""
    t = next(under, None)
    for bk in bkeys:
        while t is not None:
            tk = t[0]
            if tk == bk:
                t = next(under, None)  # shadowed
                break
            if (tk < bk) is reverse:
                break
            yield t
            t = next(under, None)
        v = d[bk]
        if v is not TOMBSTONE:
            yield bk, v
    if t is not None:
        yield t
        yield from under


class _Frozen:
    """A batch handed to a commit; never written to after the freeze."""

    __slots__ = ("buf", "future", "new_buckets", "pending", "seconds", "sorted")

    def __init__(
        self,
        buf: dict[bytes, dict],
        sorted_keys: dict[bytes, list[bytes]],
        new_buckets: set[bytes],
        pending: int,
    ) -> None:
        self.buf = buf
        self.sorted = sorted_keys
        self.new_buckets = new_buckets
        self.pending = pending
        self.future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.future.set_running_or_notify_cancel()  # it always runs: it cannot be cancelled
        self.seconds = 0.0  # how long the commit took, once done

    def keys(self, bucket: bytes) -> list[bytes]:
        """The bucket's keys in order. Both threads may call this: a stale sorted list is
        replaced, never changed in place."""
        s = self.sorted[bucket]
        d = self.buf[bucket]
        if len(s) != len(d):
            new = sorted(islice(reversed(d), len(d) - len(s)))
            s = self.sorted[bucket] = _merged(s, new)
        return s


def _merged(s: list[bytes], new: list[bytes]) -> list[bytes]:
    """The sorted keys ``s`` and ``new`` (none of them in ``s``) in one new sorted list. New
    keys usually fall in one gap of ``s`` (appends, or a compaction deleting old revisions in
    order): only the stretch of ``s`` they span is sorted again, not all of it."""
    if not s or new[0] > s[-1]:
        return s + new
    lo = bisect_left(s, new[0])
    hi = bisect_left(s, new[-1], lo)
    return s[:lo] + (new if lo == hi else sorted(s[lo:hi] + new)) + s[hi:]


async def _wait_future(fut: concurrent.futures.Future) -> None:
    """Until ``fut`` is done; its outcome is left to ``Backend._reap``."""
    w = asyncio.wrap_future(fut)
    w.add_done_callback(_consume)
    await asyncio.wait((w,))


def _consume(f: asyncio.Future) -> None:
    if not f.cancelled():
        f.exception()  # retrieved: the writer thread raises it when it reaps the commit
