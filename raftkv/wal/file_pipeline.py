"""Preallocates the next WAL segment in a background thread, so a cut never waits for it.

Like etcd's filePipeline: the thread creates ``<n>.tmp`` (n counting up) in the WAL directory,
preallocates it to the segment size, and hands it over through a one-file slot; it then
prepares the following one and waits until that is taken. ``take()`` returns a ready
(path, fd); the WAL writes the segment's opening records into it and renames it into place.
Names are never reused within a pipeline (a file being taken may still be under its temp name
while the next is created); stale ``<n>.tmp`` files left by a crash are removed at start (the
WAL's lock on its tail makes this process the only writer of the directory).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading

from raftkv.wal.fileutil import preallocate

__all__ = ["FilePipeline"]

_TMP = re.compile(r"^[0-9]+\.tmp$")


class FilePipeline:
    def __init__(self, dirpath: str, size: int) -> None:
        self._dir = dirpath
        self._size = size
        self._count = 0
        for name in os.listdir(dirpath):
            if _TMP.match(name):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(os.path.join(dirpath, name))
        self._cv = threading.Condition()
        self._slot: tuple[str, int] | None = None  # the ready file
        self._error: OSError | None = None  # why the thread stopped preparing files
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="wal-file-pipeline", daemon=True)
        self._thread.start()

    def take(self) -> tuple[str, int]:
        """A preallocated temp file (path, fd open read-write); blocks only if none is ready."""
        with self._cv:
            while self._slot is None:
                if self._error is not None:
                    raise self._error
                self._cv.wait()
            item, self._slot = self._slot, None
            self._cv.notify_all()
            return item

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join()
        if self._slot is not None:
            _discard(*self._slot)
            self._slot = None

    def _alloc(self) -> tuple[str, int]:
        path = os.path.join(self._dir, f"{self._count}.tmp")
        self._count += 1
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            preallocate(fd, self._size)
        except BaseException:
            _discard(path, fd)
            raise
        return path, fd

    def _run(self) -> None:
        while True:
            try:
                item = self._alloc()
            except OSError as exc:
                with self._cv:
                    self._error = exc
                    self._cv.notify_all()
                return
            with self._cv:
                while self._slot is not None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    _discard(*item)
                    return
                self._slot = item
                self._cv.notify_all()


def _discard(path: str, fd: int) -> None:
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
