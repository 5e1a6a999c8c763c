"""Small durable-file helpers shared by the WAL and the snapshotter."""

from __future__ import annotations

import errno
import os

__all__ = ["fsync_dir", "preallocate", "write_all", "zero_to_end"]

_ZERO_CHUNK = bytes(1 << 20)


def fsync_dir(path: str) -> None:
    """fsync a directory so the names created, renamed or removed in it are durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(fd: int, size: int) -> None:
    """Make the file at least ``size`` bytes of zeros (fallocate, else writing zeros)."""
    current = os.fstat(fd).st_size
    if current >= size:
        return
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    off = current
    while off < size:
        off += os.pwrite(fd, _ZERO_CHUNK[: min(len(_ZERO_CHUNK), size - off)], off)


def zero_to_end(fd: int, offset: int, size: int) -> None:
    """Cut the file at ``offset`` and extend it with zeros to ``size`` (etcd's ZeroToEnd)."""
    os.ftruncate(fd, offset)
    preallocate(fd, size)


def write_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """pwrite all of ``data`` at ``offset`` (one system call unless the kernel writes short)."""
    n = os.pwrite(fd, data, offset)
    if n == len(data):
        return
    view = memoryview(data)[n:]
    offset += n
    while view:
        n = os.pwrite(fd, view, offset)
        view = view[n:]
        offset += n
