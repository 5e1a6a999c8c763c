"""The MVCC key-value store: index + backend + lessor + watchers (etcd's kvstore.go,
kvstore_compaction.go, watchable_store.go joined behind one object).

Backend layout (buckets):
- ``key``:  revision key (see ``revision``) -> KeyValue as ``raftkv.pb.encode`` writes it; a
  tombstone's value is ``KeyValue(key=...)`` only.
- ``meta``: ``scheduledCompactRev`` and ``finishedCompactRev`` (17-byte revision keys, as etcd
  writes them); the server keeps its ``consistent_index`` there too (``raftkv.server.cindex``),
  which ``hash`` leaves out.

Revisions: a fresh store is at revision 1 (etcd's first write is revision 2); the compacted
revision is -1 until the first compaction.

Compaction (etcd's two steps): ``compact(rev)`` checks and records the scheduled revision (in
the write batch, committed with the rest of it); ``compact_step()`` compacts the in-memory
index, then deletes the compacted revisions from the backend, in batches (the server drives it
off the hot path), and records the finished revision when done. A restart with scheduled >
finished resumes the compaction.

Not thread-safe: the server drives it from its event loop (apply, reads, watch sync).
Responses and the KeyValues in them are shared with watchers and must not be mutated.
"""

from __future__ import annotations

import contextlib
import gc
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import msgpack
import structlog

from raftkv import errors
from raftkv.backend import Backend
from raftkv.backend.breathe import Breather
from raftkv.backend.errors import BackendError
from raftkv.backend.page import LeafRecords
from raftkv.mvcc import index_image, requests
from raftkv.mvcc.index import Entry, KeyMap, TreeIndex
from raftkv.mvcc.key_index import KeyIndex, RevisionNotFoundError
from raftkv.mvcc.kvstore_txn import KEY_BUCKET, ReadTxn, WriteTxn, decode_kv
from raftkv.mvcc.revision import (
    REV_BYTES_LEN,
    REV_STRUCT,
    SUB_BITS,
    bytes_to_rev,
    main_of,
    pack,
    rev_to_bytes,
    sub_of,
)
from raftkv.mvcc.validate import check_delete_request, check_put_request, check_range_request
from raftkv.mvcc.watchable_store import WatchHub, WatchStream
from raftkv.pb.kv import KeyValue
from raftkv.pb.rpc import (
    CompactionResponse,
    DeleteRangeRequest,
    DeleteRangeResponse,
    LeaseRevokeResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    ResponseHeader,
    TxnRequest,
    TxnResponse,
)

if TYPE_CHECKING:
    from raftkv.lease.lessor import Lessor

__all__ = ["KVStore", "PreparedIndex", "prepare_index"]

_unpackb = msgpack.unpackb
log = structlog.get_logger("raftkv.mvcc")

META_BUCKET = b"meta"
CONSISTENT_INDEX_KEY = b"consistent_index"
SCHEDULED_COMPACT_KEY = b"scheduledCompactRev"
FINISHED_COMPACT_KEY = b"finishedCompactRev"
_SCAN_CHUNK = 1000
STEP_BUDGET = 0.001  # seconds of work per compact_step (on the event loop)
_INDEX_SLICE = 64  # index keys compacted between two looks at the clock
_KEY_SLICE = 32  # backend records looked at between two looks at the clock


class KVStore:
    def __init__(self, backend: Backend, lessor: Lessor) -> None:
        self._b = backend
        self._lessor = lessor
        lessor.bind(self)
        self._index = TreeIndex()
        self.current_revision = 1
        self.compact_revision = -1
        # the pending physical compaction: [revision, next backend key to look at]
        self._compaction: list | None = None
        self._hub = WatchHub(self)
        self._writing: WriteTxn | None = None
        self.restored_from = "backend"  # where the last restore found the index: or "image"
        self._restore()

    # --- requests ----------------------------------------------------------------------------

    def range(self, req: RangeRequest) -> RangeResponse:
        check_range_request(req)
        return requests.apply_range(ReadTxn(self), req)

    def put(self, req: PutRequest) -> PutResponse:
        check_put_request(req)
        if req.lease and not self._lessor.lookup(req.lease):
            raise errors.ErrLeaseNotFound
        txn = self._begin_write()
        try:
            return requests.apply_put(txn, req)
        finally:
            txn.end()

    def delete_range(self, req: DeleteRangeRequest) -> DeleteRangeResponse:
        check_delete_request(req)
        txn = self._begin_write()
        try:
            return requests.apply_delete_range(txn, req)
        finally:
            txn.end()

    def txn(self, req: TxnRequest) -> TxnResponse:
        return requests.apply_txn(ReadTxn(self), self._begin_write, self._lessor, req)

    def lease_revoke(self, lease_id: int) -> LeaseRevokeResponse:
        """Delete every key attached to the lease in one revision, then forget the lease."""
        keys = self._lessor.keys_of(lease_id)  # ErrLeaseNotFound
        txn = self._begin_write()
        try:
            for k in keys:
                txn.delete_range(k, None)
            self._lessor.remove(lease_id)
        finally:
            txn.end()
        return LeaseRevokeResponse(header=ResponseHeader(revision=self.current_revision))

    # --- txn plumbing ------------------------------------------------------------------------

    def _begin_write(self) -> WriteTxn:
        if self._writing is not None:
            raise RuntimeError("a write txn is already open")
        self._writing = WriteTxn(self)
        return self._writing

    def _end_write(self, txn: WriteTxn) -> None:
        self._writing = None
        changes = txn.changes
        if changes:
            self.current_revision += 1
            self._hub.notify(self.current_revision, changes)

    def _range_keys(
        self,
        key: bytes,
        end: bytes | None,
        cur_rev: int,
        limit: int = 0,
        at_rev: int = 0,
        count_only: bool = False,
    ) -> tuple[list[KeyValue], int, int]:
        """(kvs, count, revision to report) of [key, end) as of at_rev (0: cur_rev)."""
        rev = at_rev
        if rev > cur_rev:
            raise errors.ErrFutureRev
        if rev <= 0:
            rev = cur_rev
        if rev < self.compact_revision:
            raise errors.ErrCompacted
        if count_only:
            return [], self._index.count(key, end, rev), cur_rev
        pairs = self._index.revisions(key, end, rev)
        if not pairs:
            return [], 0, cur_rev
        sel = pairs[:limit] if 0 < limit < len(pairs) else pairs
        get = self._b.get
        kvs = [decode_kv(get(KEY_BUCKET, rev_to_bytes(r >> 32, r & 0xFFFFFFFF))) for _, r in sel]
        return kvs, len(pairs), cur_rev

    def _kv_at(self, key: bytes, rev: int) -> KeyValue | None:
        """The key's KeyValue as of main revision rev (None if absent or compacted)."""
        if rev < self.compact_revision or rev <= 0:
            return None
        got = self._index.get(key, rev)
        if got is None:
            return None
        r = got[0]
        return decode_kv(self._b.get(KEY_BUCKET, rev_to_bytes(main_of(r), sub_of(r))))

    # --- compaction --------------------------------------------------------------------------

    def compact(self, revision: int) -> CompactionResponse:
        """Compact at revision: checked and recorded now (no commit of its own: nothing here
        waits on the disk); the index and backend work follows in ``compact_step()`` calls
        (ranges at revisions >= the compacted one read the same either way, and older ones are
        refused from now on)."""
        if revision <= self.compact_revision:
            raise errors.ErrCompacted
        if revision > self.current_revision:
            raise errors.ErrFutureRev
        self.compact_revision = revision
        # etcd forces a commit here, on the caller's thread. Not needed: the scheduled
        # revision is in the batch of the consistent index of the entry that asked (a crash
        # before that batch commits replays the entry), and every backend delete of the
        # compaction goes in that batch or a later one, so none is ever durable before it.
        self._b.put(META_BUCKET, SCHEDULED_COMPACT_KEY, rev_to_bytes(revision))
        self._schedule_compaction(revision)
        return CompactionResponse(header=ResponseHeader(revision=self.current_revision))

    def _schedule_compaction(self, revision: int) -> None:
        # [revision, phase, cursor]: phase "index" walks the keys (cursor: the last key done),
        # then phase "key" deletes from the backend (cursor: the next revision key to look at)
        self._compaction = [revision, "index", None]

    @property
    def compaction_pending(self) -> bool:
        """A compaction's index or backend work is not finished yet (see compact_step)."""
        return self._compaction is not None

    def compact_step(self, batch: int = 1000, budget: float = STEP_BUDGET) -> bool:
        """Do the next piece of compaction work: compact up to ``10 * batch`` keys of the
        index, or else delete the compacted revisions of up to ``batch`` backend records, or
        else record the finished revision. Stops early once ``budget`` seconds of work are
        done (it runs on the event loop: a step must not stall it). True while more remain."""
        job = self._compaction
        if job is None:
            return False
        deadline = time.perf_counter() + budget
        revision, phase, cursor = job
        if phase == "index":
            # a key of the index costs ~0.5 us, a backend record several: 10x the keys
            todo = batch * 10
            while True:
                n = min(todo, _INDEX_SLICE)
                last = self._index.compact_some(revision, cursor, n)
                if last is None:
                    job[1], job[2] = "key", rev_to_bytes(0)
                    return True
                job[2] = cursor = last
                todo -= n
                if todo <= 0 or time.perf_counter() >= deadline:
                    return True
        end = rev_to_bytes(revision + 1)
        index = self._index
        todo = batch
        while True:
            n = min(todo, _KEY_SLICE)
            items = self._b.range(KEY_BUCKET, cursor, end, limit=n)
            for k, v in items:
                main, _, sub = _unpack_rev(k)
                if not index.has_revision(_unpackb(v)[0], (main << SUB_BITS) | sub):
                    self._b.delete(KEY_BUCKET, k)
            if len(items) < n:
                self._b.put(META_BUCKET, FINISHED_COMPACT_KEY, rev_to_bytes(revision))
                self._compaction = None
                return False
            job[2] = cursor = items[-1][0] + b"\x00"
            todo -= n
            if todo <= 0 or time.perf_counter() >= deadline:
                return True

    # --- hashes ------------------------------------------------------------------------------

    def _scan(self, bucket: bytes, start: bytes, end: bytes | None) -> Iterator[tuple]:
        while True:
            items = self._b.range(bucket, start, end, limit=_SCAN_CHUNK)
            yield from items
            if len(items) < _SCAN_CHUNK:
                return
            start = items[-1][0] + b"\x00"

    def hash(self) -> int:
        """CRC-32 of the key, meta (but the consistent index) and lease buckets."""
        h = 0
        for bucket in (KEY_BUCKET, META_BUCKET, b"lease"):
            h = zlib.crc32(bucket, h)
            for k, v in self._scan(bucket, b"", None):
                if bucket == META_BUCKET and k == CONSISTENT_INDEX_KEY:
                    continue
                h = zlib.crc32(v, zlib.crc32(k, h))
        return h

    def hash_kv(self, revision: int) -> tuple[int, int, int]:
        """(hash, compact_revision, current_revision) of the key space up to revision
        (etcd's HashByRev: compacted-away revisions are skipped, whether deleted yet or not)."""
        compact, cur = self.compact_revision, self.current_revision
        if revision > 0 and revision <= compact:
            raise errors.ErrCompacted
        if revision > 0 and revision > cur:
            raise errors.ErrFutureRev
        if revision == 0:
            revision = cur
        keep = self._index.keep(revision)
        lower = pack(compact + 1)
        h = zlib.crc32(KEY_BUCKET)
        for k, v in self._scan(KEY_BUCKET, rev_to_bytes(0), rev_to_bytes(revision + 1)):
            r = pack(*bytes_to_rev(k))
            if r < lower and keep and r not in keep:
                continue
            h = zlib.crc32(v, zlib.crc32(k, h))
        return h, compact, cur

    # --- watch -------------------------------------------------------------------------------

    def new_watch_stream(self, on_ready: Callable[[], None]) -> WatchStream:
        return WatchStream(self._hub, on_ready)

    @property
    def key_count(self) -> int:
        """Keys in the index (live and deleted ones not compacted away yet)."""
        return len(self._index)

    @property
    def watcher_count(self) -> int:
        hub = self._hub
        return len(hub.synced) + len(hub.unsynced) + sum(len(v) for v in hub.victims)

    def sync_watchers(self) -> bool:
        """Move unsynced watchers forward (bounded work, a few ms). True if more can be done
        right away; False when done or waiting for slow clients to drain (call it again on
        the next tick, etcd's 100 ms)."""
        return self._hub.sync()

    # --- restore -----------------------------------------------------------------------------

    def restore(
        self,
        backend: Backend | None = None,
        now: float | None = None,
        prepared: PreparedIndex | None = None,
    ) -> None:
        """Rebuild everything from the backend (after a snapshot's db file was swapped in).
        ``prepared``: the index already read from that file (``prepare_index``), so that only
        the lease table and the meta bucket are read here."""
        if backend is not None:
            self._b = backend
        if prepared is not None:
            with self._b.read_snapshot() as snap:
                if snap.txid != prepared.txid:
                    raise ValueError(
                        f"index prepared at txid {prepared.txid}, backend at txid {snap.txid}"
                    )
        self._lessor.recover(backend, now)
        seen_rev = self.current_revision
        self._index = TreeIndex()
        self.current_revision = 1
        self.compact_revision = -1
        self._compaction = None
        self._restore(prepared)
        self._hub.restore(seen_rev)

    def save_image(self) -> None:
        """Write the index for the next start to take instead of rebuilding it
        (``index_image``): at a clean stop, once the backend's last commit is done. Not while
        a compaction is unfinished (the next start resumes it from the backend's marks)."""
        if self._compaction is not None:
            log.info("index_image_skipped", reason="a compaction is unfinished")
            return
        keys, entries = self._index.sorted_items()
        index_image.write(
            self._b.path,
            self._image_stamp(),
            self.current_revision,
            keys,
            entries,
            self._lessor.attachments(),
        )

    def _image_stamp(self) -> index_image.Stamp:
        with self._b.read_snapshot() as snap:
            txid = snap.txid
        return txid, self._b.get(META_BUCKET, CONSISTENT_INDEX_KEY) or b""

    def _restore(self, prepared: PreparedIndex | None = None) -> None:
        b = self._b
        b.create_bucket(KEY_BUCKET)
        b.create_bucket(META_BUCKET)
        finished = b.get(META_BUCKET, FINISHED_COMPACT_KEY)
        if finished:
            self.compact_revision = bytes_to_rev(finished)[0]
        scheduled_b = b.get(META_BUCKET, SCHEDULED_COMPACT_KEY)
        scheduled = bytes_to_rev(scheduled_b)[0] if scheduled_b else 0

        if prepared is None:
            with _collector_paused():
                image = index_image.take(b.path, self._image_stamp())
                self.restored_from = "image" if image is not None else "backend"
                if image is None:
                    image = _rebuild(b.scan(KEY_BUCKET, rev_to_bytes(1)))
            keys, key_to_lease, current = image
            self._index = TreeIndex.restored(keys)
        else:
            key_to_lease, current = prepared.key_to_lease, prepared.current
            self._index = prepared.index
        self.current_revision = max(current, self.compact_revision)
        for key, lid in key_to_lease.items():
            if self._lessor.lookup(lid):
                self._lessor.attach(lid, key)
        if scheduled and scheduled > self.compact_revision:
            # a compaction was scheduled but not finished: resume it
            self.compact_revision = scheduled
            self._schedule_compaction(scheduled)


class PreparedIndex:
    """The key bucket of a page file read into an index ahead of its install (see
    ``prepare_index``); taken over by the ``KVStore.restore`` it is handed to."""

    __slots__ = ("current", "index", "key_to_lease", "txid")

    def __init__(
        self, txid: int, index: TreeIndex, key_to_lease: dict[bytes, int], current: int
    ) -> None:
        self.txid = txid  # the file's committed txid: restore() checks it is the same state
        self.index = index
        self.key_to_lease = key_to_lease
        self.current = current


def prepare_index(path: str) -> PreparedIndex:
    """Read the index entries of the page file at ``path`` (a snapshot's db image received
    from the leader), in a worker thread while the store goes on serving its own file: the
    rebuild, seconds for millions of keys, then stays off the event loop, which this thread
    lets in as it goes (``backend.breathe``). Nothing may write to the file meanwhile."""
    b = Backend.open(path)
    try:
        with b.read_snapshot() as snap:
            breather = Breather()
            chunks = snap.records(KEY_BUCKET, rev_to_bytes(1))
            keys, key_to_lease, current = _rebuild(_breathing(chunks, breather))
            # (its keys sorted here too: left to the install, that held the loop ~150 ms)
            index = TreeIndex.restored(keys, in_thread=True)
            return PreparedIndex(snap.txid, index, key_to_lease, current)
    finally:
        b.close()


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off during a rebuild on the thread that owns the store
    (nothing else runs meanwhile: a start, or a restore that holds the loop). A rebuild makes
    millions of objects and no cycle, and the collections their allocations set off would
    walk them again and again (0.1-0.5 s of a 1M-key start); the next collection looks at
    them once (the member's, right after start: see ``member._tune_gc``)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _breathing(chunks: Iterator[LeafRecords], breather: Breather) -> Iterator[LeafRecords]:
    for chunk in chunks:
        yield chunk
        breather.tick()


def _rebuild(
    chunks: Iterator[LeafRecords],
) -> tuple[dict[bytes, Entry], dict[bytes, int], int]:
    """The index entries, the key -> lease map and the last main revision of the key bucket
    read in revision order (etcd's restore).

    The hot loop of a start with millions of keys, so a chunk (a backend leaf's records, as
    stored: revision key, KeyValue, revision key, ...) is fed whole to one streaming msgpack
    unpacker, which hands out the revision keys as raw bytes and decodes the KeyValues in
    between; when none is a tombstone, the revision keys are decoded by one struct iterator.
    A key seen once costs one tuple (see ``index``), and only keys with history get a
    KeyIndex (``_restore_record``, which also takes every tombstone)."""
    keys: dict[bytes, Entry] = KeyMap()
    key_to_lease: dict[bytes, int] = {}
    current = 1
    unpacker = msgpack.Unpacker(use_list=False, max_buffer_size=0)
    read, unpack = unpacker.read_bytes, unpacker.unpack
    setdefault = keys.setdefault
    fed = 0
    for ksizes, _, data in chunks:
        unpacker.feed(data)
        fed += len(data)
        n = len(ksizes)
        try:
            if ksizes.count(REV_BYTES_LEN) != n:  # tombstones among them: record by record
                for size in ksizes:
                    k = read(size)
                    main, _, sub = _unpack_rev(k)
                    _restore_record(keys, key_to_lease, unpack(), main, sub, size != REV_BYTES_LEN)
                current = main
            else:
                revs: list[bytes] = []
                # the stored KeyValues: (key, create_revision, mod_revision, version, value, lease)
                kvs: list[tuple] = []
                rev_append, kv_append = revs.append, kvs.append
                for _ in range(n):
                    rev_append(read(REV_BYTES_LEN))
                    kv_append(unpack())
                for f, (main, sub) in zip(kvs, _iter_revs(b"".join(revs)), strict=True):
                    # the common case of _restore_record, inline: a key's first revision
                    r = (main << 32) | sub
                    entry = (r, r if f[1] == main and not sub else f[1] << 32, f[3])
                    if setdefault(f[0], entry) is not entry:
                        _restore_record(keys, key_to_lease, f, main, sub, False)
                    elif f[5]:
                        key_to_lease[f[0]] = f[5]
                current = main
        except (msgpack.OutOfData, struct.error) as e:
            raise BackendError(f"key bucket: {n} records do not decode: {e!r}") from None
        if unpacker.tell() != fed:
            raise BackendError(f"key bucket: {n} records decoded, bytes left over")
    return keys, key_to_lease, current


def _restore_record(
    keys: dict[bytes, Entry],
    key_to_lease: dict[bytes, int],
    f: tuple,
    main: int,
    sub: int,
    tomb: bool,
) -> None:
    """Add one record of the key bucket (read in revision order) to ``keys``."""
    key, created, _, ver, _, lease = f
    r = pack(main, sub)
    e = keys.get(key)
    if e is None:
        if not tomb:  # (else a tombstone of a key whose revisions were compacted away)
            # the created revision shares r's int when it is r
            keys[key] = (r, r if created == main and not sub else pack(created), ver)
            if lease:
                key_to_lease[key] = lease
        return
    if type(e) is tuple:
        e = keys[key] = KeyIndex.restored(key, e[1], e[0], e[2])
    if tomb:
        with contextlib.suppress(RevisionNotFoundError):
            e.tombstone(r)
    else:
        e.put(r)
    if tomb or not lease:
        key_to_lease.pop(key, None)
    else:
        key_to_lease[key] = lease


_unpack_rev = REV_STRUCT.unpack_from
_iter_revs = struct.Struct(">QxQ").iter_unpack  # revision keys without a tombstone mark
assert SUB_BITS == 32  # (inlined in _rebuild)
