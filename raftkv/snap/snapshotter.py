"""Snapshot files (etcd's etcdserver/api/snap): Raft snapshot metadata and the db image beside it.

Directory ``member/snap/``::

    0000000000000002-0000000000030d41.snap     term 2, index 200001 (newest wins)
    0000000000000002-00000000000186a1.snap     an older one (kept up to max_snapshots)
    0000000000000001-0000000000000010.snap.broken   failed its check, moved aside
    0000000000030d41.snap.db                   a db image received from the leader
    db                                         the backend page file

One ``.snap`` file (little-endian, 8-byte aligned)::

    offset  size  field
    0       8     magic  b"RKVSNAP\\x01"
    8       4     crc32 of the payload
    12      4     reserved (zero)
    16      8     payload length P
    24      P     payload: msgpack of the Snapshot (raftkv.raft.messages.encode_snapshot)
    24+P    pad   zeros to a multiple of 8

Writes go to ``<name>.tmp``, are fsynced, renamed into place, and the directory is fsynced,
so a crash leaves either the old set of snapshots or the new one. A file that fails any check
(magic, length, CRC, decoding, or a name that disagrees with its metadata) is renamed
``.broken`` and the next older one is tried.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import zlib
from collections.abc import Iterable, Sequence

import structlog

from raftkv.failpoint import failpoint, register
from raftkv.raft.messages import Snapshot, decode_snapshot, encode_snapshot
from raftkv.wal.fileutil import fsync_dir, write_all
from raftkv.wal.record import WalSnapshot

__all__ = ["NoSnapshotError", "SnapError", "Snapshotter", "snap_name"]

MAGIC = b"RKVSNAP\x01"
HEADER = struct.Struct("<8sI4xQ")
assert HEADER.size == 24
SNAP_SUFFIX = ".snap"
DB_SUFFIX = ".snap.db"
BROKEN_SUFFIX = ".broken"
TMP_SUFFIX = ".tmp"
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")

FAILPOINTS = ("snap.before_rename", "snap.after_rename", "snap.db_before_rename")
register(*FAILPOINTS)

_log = structlog.get_logger("raftkv.snap")


class SnapError(Exception):
    """A snapshot file could not be written or read."""


class NoSnapshotError(SnapError):
    """No usable snapshot exists (``load`` returns None instead; for callers that require one)."""


def snap_name(term: int, index: int) -> str:
    return f"{term:016x}-{index:016x}{SNAP_SUFFIX}"


def encode_snap_file(snapshot: Snapshot) -> bytes:
    payload = encode_snapshot(snapshot)
    pad = -len(payload) & 7
    return HEADER.pack(MAGIC, zlib.crc32(payload), len(payload)) + payload + bytes(pad)


def decode_snap_file(data: bytes) -> Snapshot:
    """Raises SnapError when the bytes are not one intact snapshot file."""
    if len(data) < HEADER.size:
        raise SnapError(f"file too short ({len(data)} bytes)")
    magic, crc, length = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise SnapError(f"bad magic {magic!r}")
    end = HEADER.size + length
    if end > len(data):
        raise SnapError(f"payload of {length} bytes but only {len(data) - HEADER.size} present")
    payload = data[HEADER.size : end]
    if zlib.crc32(payload) != crc:
        raise SnapError("crc mismatch")
    try:
        return decode_snapshot(payload)
    except Exception as exc:
        raise SnapError(f"undecodable payload: {exc!r}") from exc


class Snapshotter:
    """Saves and loads snapshot files in one directory (created if missing)."""

    def __init__(self, dirpath: str, *, max_snapshots: int = 5) -> None:
        self._dir = dirpath
        self._max = max_snapshots
        os.makedirs(dirpath, exist_ok=True)
        for name in os.listdir(dirpath):  # leftovers of writes cut short by a crash
            if name.endswith(TMP_SUFFIX):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(dirpath, name))

    @property
    def dirpath(self) -> str:
        return self._dir

    # --- raft snapshots ----------------------------------------------------------------------

    def save_snap(self, snapshot: Snapshot) -> None:
        """Durably write ``snapshot`` (an empty one is ignored), then purge old files."""
        if snapshot.is_empty():
            return
        m = snapshot.metadata
        path = os.path.join(self._dir, snap_name(m.term, m.index))
        self._write_atomically(path, [encode_snap_file(snapshot)], "snap.before_rename")
        failpoint("snap.after_rename")
        self._purge()

    def snap_names(self) -> list[str]:
        """Names of the ``.snap`` files, newest (highest term, index) first."""
        return sorted((n for n in os.listdir(self._dir) if _NAME.match(n)), reverse=True)

    def load(self) -> Snapshot | None:
        """The newest snapshot that passes its checks, or None if there is none."""
        return self._load_first(self.snap_names())

    def load_newest_available(self, wal_snaps: Sequence[WalSnapshot]) -> Snapshot | None:
        """The newest valid snapshot that the WAL also marks (etcd 3.4's LoadNewestAvailable):
        pass ``WAL.valid_snapshots(waldir)``; a snapshot the WAL never recorded is skipped."""
        marked = {(s.term, s.index) for s in wal_snaps}
        names = [n for n in self.snap_names() if _parse(n) in marked]
        return self._load_first(names)

    # --- db images ---------------------------------------------------------------------------

    def db_path(self, index: int) -> str:
        """Where the db image of the snapshot at ``index`` is received."""
        return os.path.join(self._dir, f"{index:016x}{DB_SUFFIX}")

    def db_file(self) -> str:
        """The backend page file (``member/snap/db``)."""
        return os.path.join(self._dir, "db")

    def save_db(self, index: int, chunks: Iterable[bytes]) -> str:
        """Receive a db image (temp file, fsync, rename, fsync dir); returns its path."""
        path = self.db_path(index)
        self._write_atomically(path, chunks, "snap.db_before_rename")
        return path

    def install_db(self, index: int) -> str:
        """Move the received image of ``index`` over the backend file (the backend must be
        closed); returns the backend file path."""
        src, dst = self.db_path(index), self.db_file()
        if not os.path.exists(src):
            raise SnapError(f"no received db image for index {index} at {src}")
        os.replace(src, dst)
        fsync_dir(self._dir)
        return dst

    # --- internals ---------------------------------------------------------------------------

    def _write_atomically(self, path: str, chunks: Iterable[bytes], fp_name: str) -> None:
        tmp = path + TMP_SUFFIX
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                off = 0
                for chunk in chunks:
                    write_all(fd, chunk, off)
                    off += len(chunk)
                os.fsync(fd)
            finally:
                os.close(fd)
            failpoint(fp_name)
            os.rename(tmp, path)
            fsync_dir(self._dir)
        except BaseException as exc:  # leave no partial temp file, whatever broke
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
            if isinstance(exc, OSError):
                raise SnapError(f"writing {path} failed: {exc}") from exc
            raise

    def _load_first(self, names: Sequence[str]) -> Snapshot | None:
        for name in names:
            path = os.path.join(self._dir, name)
            with open(path, "rb") as f:
                data = f.read()
            try:
                snap = decode_snap_file(data)
                m = snap.metadata
                if (m.term, m.index) != _parse(name):
                    raise SnapError(f"metadata (term {m.term}, index {m.index}) disagrees")
                return snap
            except SnapError as exc:
                _log.warning("broken snapshot file moved aside", path=path, reason=str(exc))
                with contextlib.suppress(OSError):
                    os.rename(path, path + BROKEN_SUFFIX)
                    fsync_dir(self._dir)
        return None

    def _purge(self) -> None:
        if self._max <= 0:
            return
        old = self.snap_names()[self._max :]
        for name in old:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self._dir, name))
        if old:
            fsync_dir(self._dir)


def _parse(name: str) -> tuple[int, int] | None:
    m = _NAME.match(name)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None
