"""Repairing a torn tail of the last WAL segment (etcd's repair.go, done in place).

A torn tail is a record whose write never completed (killed or powered off mid-write before
its fsync, so ``save()`` never returned and nobody was told it was durable). The segment is
copied aside as ``<name>.wal.broken`` for inspection, then cut just past the last good record
and refilled with zeros up to its preallocated size, so the next append starts on a clean
zero frame word.

    before:  | rec | rec | rec | torn rec.....|000000000000000000|
    after:   | rec | rec | rec |0000000000000000000000000000000000|   (+ name.wal.broken)
"""

from __future__ import annotations

import os
import shutil

from raftkv.wal.fileutil import fsync_dir, zero_to_end

__all__ = ["BROKEN_SUFFIX", "keep_broken_copy", "truncate_tail"]

BROKEN_SUFFIX = ".broken"


def keep_broken_copy(path: str) -> str:
    """Copy ``path`` to ``path + '.broken'`` (replacing an older copy), durably."""
    broken = path + BROKEN_SUFFIX
    tmp = broken + ".tmp"
    shutil.copyfile(path, tmp)
    fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, broken)
    fsync_dir(os.path.dirname(path) or ".")
    return broken


def truncate_tail(fd: int, offset: int, size: int) -> None:
    """Drop everything from ``offset`` on and zero-fill to ``size``; fsync."""
    zero_to_end(fd, offset, size)
    os.fsync(fd)
