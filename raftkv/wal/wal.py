"""The segmented write-ahead log: a member's Raft log and hard state on disk (etcd's wal.go).

Directory ``member/wal/``::

    0000000000000000-0000000000000000.wal   seq 0, created empty: crc(0) metadata snap(0,0)
    0000000000000001-00000000000004d3.wal   seq 1, cut when the next entry to write was 0x4d3
    0000000000000002-0000000000000a11.wal   seq 2 (the tail: appended to, preallocated)
    0.tmp                                   the next segment, preallocated in the background
    0000000000000002-0000000000000a11.wal.broken   a copy kept by a torn-tail repair

Each segment (``%016x-%016x.wal`` = sequence, index of the next entry when it was cut) is
preallocated to ``segment_size`` bytes of zeros and holds framed records (``record.py``)::

    | crc | metadata | state | entry | entry | ... | state | snapshot | entry | 000000....|
      '- opens every segment: the running crc, the metadata, the last hard state -'

Writing: ``save`` encodes one Ready (entries, then the hard state) into one buffer, writes it
with one ``pwrite`` and, when asked, makes it durable with one ``fdatasync``. When the tail has
reached ``segment_size`` it is cut: truncated to its end, synced, and the preallocated temp
file becomes the next segment (opening records, fsync, rename, fsync of the directory).

Reading: ``open(dir, snap)`` picks the segment holding ``snap.index`` and everything after it
(sequence numbers must be consecutive); ``read_all`` verifies the whole CRC chain and returns
the metadata, the last hard state and the entries after ``snap.index`` (a later entry at an
index replaces the earlier one and everything after it). A torn tail of the LAST segment is
cut off (the file is kept as ``.broken``); any other damage raises ``WalCorruptError``.

Not thread-safe by contract, but every public mutator holds one lock, so a caller that runs
``save`` in ``asyncio.to_thread`` cannot interleave two writes by accident.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from raftkv.failpoint import failpoint, register
from raftkv.raft.messages import (
    Entry,
    HardState,
    decode_entry,
    decode_hard_state,
    encode_hard_state,
)
from raftkv.wal.encoder import Encoder
from raftkv.wal.file_pipeline import FilePipeline
from raftkv.wal.fileutil import fsync_dir, preallocate, write_all
from raftkv.wal.record import (
    RecordType,
    WalSnapshot,
    decode_snapshot_marker,
    encode_snapshot_marker,
)
from raftkv.wal.repair import keep_broken_copy, truncate_tail
from raftkv.wal.segments import Scan, list_segments, parse_segment_name, segment_name

__all__ = [
    "DEFAULT_SEGMENT_SIZE",
    "WAL",
    "WalCorruptError",
    "WalError",
    "parse_segment_name",
    "segment_name",
]

ZERO_SNAPSHOT = WalSnapshot(0, 0)
DEFAULT_SEGMENT_SIZE = 64 << 20
DEFAULT_MAX_WALS = 5
SLOW_FSYNC_SECONDS = 1.0

FAILPOINTS = (
    "wal.before_write",
    "wal.after_write",
    "wal.before_sync",
    "wal.after_sync",
    "wal.before_cut",
    "wal.before_rename",
    "wal.after_rename",
    "wal.before_release",
)
register(*FAILPOINTS)

_log = structlog.get_logger("raftkv.wal")
_META = int(RecordType.METADATA)
_ENTRY = int(RecordType.ENTRY)
_STATE = int(RecordType.STATE)
_CRC = int(RecordType.CRC)
_SNAP = int(RecordType.SNAPSHOT)


class WalError(Exception):
    """The WAL cannot be used as asked (missing, already exists, locked, misuse, I/O error)."""


class WalCorruptError(WalError):
    """Damage the WAL must not guess around: the member has to stop before serving."""

    def __init__(self, path: str, offset: int, reason: str) -> None:
        super().__init__(path, offset, reason)
        self.path = path
        self.offset = offset
        self.reason = reason

    def __str__(self) -> str:
        return (
            f"WAL corrupt: {self.path} at offset {self.offset}: {self.reason}. "
            "Refusing to start from this log: restore this member's data directory from a "
            "backup, or remove the member from the cluster and add it back with an empty "
            "data directory (the leader re-seeds it by snapshot)."
        )


class WAL:
    """One member's write-ahead log. Build with ``create`` or ``open`` (+ ``read_all``)."""

    def __init__(
        self, dirpath: str, *, snap: WalSnapshot, segment_size: int, max_wals: int
    ) -> None:
        if segment_size < 4096:
            raise ValueError("segment_size must be at least 4096 bytes")
        self._dir = dirpath
        self._snap = snap
        self._segment_size = segment_size
        self._max_wals = max_wals
        self._lock = threading.Lock()
        self._encoder = Encoder()
        self._metadata = b""
        self._state = HardState()
        self._last_index = snap.index  # index of the last entry written (etcd's enti)
        self._to_read: list[tuple[int, int, str]] = []  # segments read_all decodes
        self._fd = -1  # the tail segment, open read-write, flock'ed
        self._tail_seq = 0
        self._tail_path = ""
        self._offset = 0  # end of the last record in the tail
        self._pipeline: FilePipeline | None = None
        self._appending = False
        self._failed: BaseException | None = None
        self.fsync_count = 0
        self.fsync_seconds = 0.0
        self.fsync_observer: Callable[[float], None] | None = None  # e.g. a metrics histogram

    # --- construction ------------------------------------------------------------------------

    @staticmethod
    def exists(dirpath: str) -> bool:
        """True when the directory holds at least one WAL segment."""
        return bool(list_segments(dirpath))

    @classmethod
    def create(
        cls,
        dirpath: str,
        metadata: bytes,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        max_wals: int = DEFAULT_MAX_WALS,
    ) -> WAL:
        """A new WAL in ``dirpath`` (absent or empty), built in a temp dir and renamed in."""
        dirpath = os.path.normpath(dirpath)
        if os.path.isdir(dirpath) and os.listdir(dirpath):
            raise WalError(f"cannot create a WAL in {dirpath}: the directory is not empty")
        wal = cls(dirpath, snap=WalSnapshot(0, 0), segment_size=segment_size, max_wals=max_wals)
        tmpdir = dirpath + ".tmp"
        shutil.rmtree(tmpdir, ignore_errors=True)
        os.makedirs(tmpdir)
        name = segment_name(0, 0)
        fd = os.open(os.path.join(tmpdir, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            preallocate(fd, segment_size)
            buf = bytearray()
            crc = Encoder.crc_record(buf, 0)
            crc = Encoder.record(buf, _META, metadata, crc)
            crc = Encoder.record(buf, _SNAP, encode_snapshot_marker(WalSnapshot(0, 0)), crc)
            write_all(fd, buf, 0)
            os.fsync(fd)
            fsync_dir(tmpdir)
            failpoint("wal.before_rename")
            os.rename(tmpdir, dirpath)  # replaces an empty directory
            failpoint("wal.after_rename")
            fsync_dir(os.path.dirname(dirpath) or ".")
            _flock(fd, os.path.join(dirpath, name))
        except BaseException:
            os.close(fd)
            raise
        wal._metadata = metadata
        wal._encoder.crc = crc
        wal._set_tail(fd, 0, os.path.join(dirpath, name), len(buf))
        wal._start_appending()
        return wal

    @classmethod
    def open(
        cls,
        dirpath: str,
        snap: WalSnapshot = ZERO_SNAPSHOT,
        *,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        max_wals: int = DEFAULT_MAX_WALS,
    ) -> WAL:
        """Open an existing WAL at ``snap``; call ``read_all`` before appending."""
        dirpath = os.path.normpath(dirpath)
        segments = list_segments(dirpath)
        if not segments:
            raise WalError(f"no WAL segments in {dirpath}")
        start = None
        for i, (_, index, _) in enumerate(segments):
            if index <= snap.index:
                start = i
        if start is None:
            raise WalError(
                f"no WAL segment in {dirpath} holds snapshot index {snap.index} "
                f"(first segment is {os.path.basename(segments[0][2])}); "
                "segments were deleted that are still needed"
            )
        chosen = segments[start:]
        for (seq_a, _, _), (seq_b, _, path_b) in itertools.pairwise(chosen):
            if seq_b != seq_a + 1:
                raise WalCorruptError(
                    path_b, 0, f"segment sequence gap: expected seq {seq_a + 1}, found {seq_b}"
                )
        wal = cls(dirpath, snap=snap, segment_size=segment_size, max_wals=max_wals)
        wal._to_read = chosen
        seq, _, path = chosen[-1]
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        try:
            _flock(fd, path)
        except BaseException:
            os.close(fd)
            raise
        wal._set_tail(fd, seq, path, 0)
        return wal

    # --- reading -----------------------------------------------------------------------------

    def read_all(self) -> tuple[bytes, HardState, list[Entry]]:
        """Verify and replay the log from the snapshot on; afterwards the WAL appends."""
        with self._lock:
            if self._appending or not self._to_read:
                raise WalError("read_all is called once, on a WAL returned by open()")
            snap = self._snap
            metadata: bytes | None = None
            state = HardState()
            ents: list[Entry] = []
            matched = snap.index == 0
            scan = Scan([path for _, _, path in self._to_read])
            for path, rec in scan:
                t = rec.type
                try:
                    if t == _ENTRY:
                        e = decode_entry(rec.data)
                        if e.index > snap.index:
                            at = e.index - snap.index - 1
                            if at > len(ents):
                                raise WalCorruptError(
                                    path,
                                    rec.offset,
                                    f"entry index gap: entry {e.index} follows entry "
                                    f"{snap.index + len(ents)}",
                                )
                            del ents[at:]
                            ents.append(e)
                    elif t == _STATE:
                        state = decode_hard_state(rec.data)
                    elif t == _META:
                        if metadata is not None and metadata != rec.data:
                            raise WalCorruptError(path, rec.offset, "metadata conflict")
                        metadata = rec.data
                    elif t == _SNAP:
                        marker = decode_snapshot_marker(rec.data)
                        if marker.index == snap.index:
                            if marker.term != snap.term:
                                raise WalError(
                                    f"snapshot mismatch: the WAL marks index {snap.index} "
                                    f"with term {marker.term}, asked for term {snap.term}"
                                )
                            matched = True
                except WalError:
                    raise
                except Exception as exc:  # a record that passed its CRC but does not decode
                    raise WalCorruptError(path, rec.offset, f"undecodable record: {exc!r}") from exc
            if scan.error is not None:
                path, err = scan.error
                if not (err.torn and path == self._tail_path and err.end_offset > 0):
                    raise WalCorruptError(path, err.offset, err.reason)
                broken = keep_broken_copy(path)
                _log.warning(
                    "repaired torn WAL tail",
                    path=path,
                    offset=err.end_offset,
                    reason=err.reason,
                    broken_copy=broken,
                )
            if metadata is None:
                raise WalCorruptError(self._tail_path, 0, "no metadata record")
            if not matched:
                raise WalError(f"snapshot marker (index {snap.index}, term {snap.term}) not found")
            truncate_tail(self._fd, scan.tail_end, self._segment_size)
            self._metadata = metadata
            self._state = state
            self._encoder.crc = scan.crc
            self._offset = scan.tail_end
            self._last_index = ents[-1].index if ents else snap.index
            self._to_read = []
            self._start_appending()
            return metadata, state, ents

    @staticmethod
    def valid_snapshots(dirpath: str) -> list[WalSnapshot]:
        """Snapshot markers in the whole WAL whose index is committed by the last hard state
        (etcd's ValidSnapshotEntries); read-only, tolerates a torn tail."""
        segments = list_segments(dirpath)
        scan = Scan([path for _, _, path in segments])
        markers: list[WalSnapshot] = []
        state = HardState()
        for _, rec in scan:
            if rec.type == _SNAP:
                markers.append(decode_snapshot_marker(rec.data))
            elif rec.type == _STATE:
                state = decode_hard_state(rec.data)
        if scan.error is not None:
            path, err = scan.error
            if not (err.torn and path == segments[-1][2]):
                raise WalCorruptError(path, err.offset, err.reason)
        return [m for m in markers if m.index <= state.commit]

    # --- writing -----------------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], must_sync: bool) -> None:
        """Append one Ready: its entries, then its hard state; one fsync if ``must_sync``."""
        empty_state = hard_state is None or hard_state.is_empty()
        if empty_state and not entries:
            return
        with self._lock:
            self._check_appending()
            buf = bytearray()
            crc = Encoder.entries(buf, entries, self._encoder.crc)
            if not empty_state:
                assert hard_state is not None
                crc = Encoder.record(buf, _STATE, encode_hard_state(hard_state), crc)
            self._write(buf, crc)
            if entries:
                self._last_index = entries[-1].index
            if not empty_state:
                assert hard_state is not None
                self._state = hard_state
            if self._offset >= self._segment_size:
                self._cut()
            elif must_sync:
                self._sync()

    def save_snapshot(self, snap: WalSnapshot) -> None:
        """Record that the log is snapshotted at ``snap`` (read_all checks it later); fsync."""
        with self._lock:
            self._check_appending()
            buf = bytearray()
            crc = Encoder.record(buf, _SNAP, encode_snapshot_marker(snap), self._encoder.crc)
            self._write(buf, crc)
            self._last_index = max(self._last_index, snap.index)
            self._sync()

    def sync(self) -> None:
        with self._lock:
            self._check_appending()
            self._sync()

    def release_to(self, index: int) -> None:
        """Delete segments wholly before the one holding ``index``, keeping the newest
        ``max_wals`` segments (0 = keep every segment, as etcd's --max-wals=0).

        Like etcd's ReleaseLockTo it keeps the segment before the first one named at or after
        ``index``, so ``release_to(snap.index)`` never deletes what ``open(dir, snap)`` reads
        (a segment's name is the next index at its cut; a new leader may later write lower
        indexes into it)."""
        with self._lock:
            if self._max_wals <= 0:
                return
            segments = list_segments(self._dir)
            keep_from = len(segments) - 1
            for i, (_, first, _) in enumerate(segments):
                if first >= index:  # segment i starts at/after index: i-1 may hold it
                    keep_from = max(i - 1, 0)
                    break
            keep_from = min(keep_from, len(segments) - self._max_wals)
            if keep_from <= 0:
                return
            failpoint("wal.before_release")
            for _, _, path in segments[:keep_from]:
                if path != self._tail_path:
                    os.remove(path)
            fsync_dir(self._dir)

    def close(self) -> None:
        with self._lock:
            if self._pipeline is not None:
                self._pipeline.close()
                self._pipeline = None
            if self._fd >= 0:
                if self._appending and self._failed is None:
                    with contextlib.suppress(OSError):
                        os.fdatasync(self._fd)
                os.close(self._fd)
                self._fd = -1
            self._appending = False
            self._to_read = []

    def __enter__(self) -> WAL:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- properties for tests and metrics ----------------------------------------------------

    @property
    def dirpath(self) -> str:
        return self._dir

    @property
    def segments(self) -> list[str]:
        """Paths of the segment files in the directory, oldest first."""
        return [path for _, _, path in list_segments(self._dir)]

    @property
    def tail_path(self) -> str:
        return self._tail_path

    @property
    def tail_offset(self) -> int:
        return self._offset

    @property
    def last_index(self) -> int:
        return self._last_index

    @property
    def hard_state(self) -> HardState:
        return self._state

    @property
    def metadata(self) -> bytes:
        return self._metadata

    # --- internals ---------------------------------------------------------------------------

    def _set_tail(self, fd: int, seq: int, path: str, offset: int) -> None:
        self._fd, self._tail_seq, self._tail_path, self._offset = fd, seq, path, offset

    def _start_appending(self) -> None:
        self._pipeline = FilePipeline(self._dir, self._segment_size)
        self._appending = True

    def _check_appending(self) -> None:
        if self._failed is not None:
            raise WalError(f"WAL unusable after an I/O error: {self._failed!r}")
        if not self._appending:
            raise WalError("WAL is not open for appending (call read_all after open)")

    def _write(self, buf: bytearray, crc: int) -> None:
        failpoint("wal.before_write")
        try:
            write_all(self._fd, buf, self._offset)
        except OSError as exc:
            self._failed = exc
            raise WalError(f"write to {self._tail_path} failed: {exc}") from exc
        failpoint("wal.after_write")
        self._offset += len(buf)
        self._encoder.crc = crc

    def _sync(self) -> None:
        failpoint("wal.before_sync")
        self._fdatasync(self._fd, self._tail_path)
        failpoint("wal.after_sync")

    def _fdatasync(self, fd: int, path: str) -> None:
        t0 = time.perf_counter()
        try:
            os.fdatasync(fd)
        except OSError as exc:
            self._failed = exc
            raise WalError(f"fsync of {path} failed: {exc}") from exc
        took = time.perf_counter() - t0
        self.fsync_count += 1
        self.fsync_seconds += took
        if self.fsync_observer is not None:
            self.fsync_observer(took)
        if took > SLOW_FSYNC_SECONDS:
            _log.warning("slow fsync", took_seconds=round(took, 3), path=path)

    def _cut(self) -> None:
        """Close the full tail and continue in a new segment named (seq+1, last_index+1)."""
        assert self._pipeline is not None
        failpoint("wal.before_cut")
        try:
            os.ftruncate(self._fd, self._offset)  # drop the unused preallocated zeros
        except OSError as exc:
            self._failed = exc
            raise WalError(f"truncate of {self._tail_path} failed: {exc}") from exc
        self._sync()
        seq = self._tail_seq + 1
        path = os.path.join(self._dir, segment_name(seq, self._last_index + 1))
        try:
            tmp_path, fd = self._pipeline.take()
        except OSError as exc:
            self._failed = exc
            raise WalError(f"preparing the next segment {path} failed: {exc}") from exc
        try:
            buf = bytearray()
            crc = Encoder.crc_record(buf, self._encoder.crc)
            crc = Encoder.record(buf, _META, self._metadata, crc)
            crc = Encoder.record(buf, _STATE, encode_hard_state(self._state), crc)
            write_all(fd, buf, 0)
            self._fdatasync(fd, tmp_path)
            failpoint("wal.before_rename")
            os.rename(tmp_path, path)
            failpoint("wal.after_rename")
            fsync_dir(self._dir)
            _flock(fd, path)
        except BaseException as exc:
            os.close(fd)
            self._failed = exc
            if isinstance(exc, OSError):
                raise WalError(f"cutting a new segment {path} failed: {exc}") from exc
            raise
        os.close(self._fd)
        self._set_tail(fd, seq, path, len(buf))
        self._encoder.crc = crc


def _flock(fd: int, path: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise WalError(f"{path} is locked by another process using this WAL") from exc
