"""Preallocates the next WAL segment in a background thread, so a cut never waits for it.

Like etcd's filePipeline: the thread creates ``<n>.tmp`` (n counting up) in the WAL directory,
preallocates it to the segment size, and hands it over through a one-slot queue; it then
prepares the following one and waits until that is taken. ``take()`` returns a ready
(path, fd); the WAL writes the segment's opening records into it and renames it into place.
Names are never reused within a pipeline (a file being taken may still be under its temp name
while the next is created); stale ``<n>.tmp`` files left by a crash are removed at start (the
WAL's lock on its tail makes this process the only writer of the directory).
"""

from __future__ import annotations

import contextlib
import os
import queue
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
        self._ready: queue.Queue[tuple[str, int] | BaseException] = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-file-pipeline", daemon=True)
        self._thread.start()

    def take(self) -> tuple[str, int]:
        """A preallocated temp file (path, fd open read-write); blocks only if none is ready."""
        item = self._ready.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        while True:  # unblock a pending put, then drain
            try:
                item = self._ready.get_nowait()
            except queue.Empty:
                if not self._thread.is_alive():
                    break
                self._thread.join(0.05)
                continue
            if not isinstance(item, BaseException):
                _discard(*item)

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
        while not self._stop.is_set():
            try:
                item: tuple[str, int] | BaseException = self._alloc()
            except OSError as exc:
                item = exc
            while True:
                try:
                    self._ready.put(item, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        if not isinstance(item, BaseException):
                            _discard(*item)
                        return
            if isinstance(item, BaseException):
                return


def _discard(path: str, fd: int) -> None:
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
