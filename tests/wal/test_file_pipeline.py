"""The background preallocator: files are ready before they are asked for, and errors surface."""

from __future__ import annotations

import os
import time

import pytest

from raftkv.wal import file_pipeline
from raftkv.wal.file_pipeline import FilePipeline


def wait_for(cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline
        time.sleep(0.005)


def test_a_preallocated_file_is_ready_and_the_next_is_prepared(tmp_path):
    fp = FilePipeline(str(tmp_path), 64 << 10)
    path, fd = fp.take()
    assert os.fstat(fd).st_size == 64 << 10
    os.close(fd)
    os.rename(path, tmp_path / "taken")
    wait_for(lambda: len([n for n in os.listdir(tmp_path) if n.endswith(".tmp")]) == 2)
    fp.close()
    assert os.listdir(tmp_path) == ["taken"]


def test_stale_temp_files_from_a_crash_are_removed(tmp_path):
    (tmp_path / "7.tmp").write_bytes(b"x")
    (tmp_path / "keep.wal.broken.tmp").write_bytes(b"x")
    fp = FilePipeline(str(tmp_path), 4096)
    fp.close()
    assert os.listdir(tmp_path) == ["keep.wal.broken.tmp"]


def test_an_allocation_error_is_raised_by_take(tmp_path, monkeypatch):
    def enospc(fd, size):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_pipeline, "preallocate", enospc)
    fp = FilePipeline(str(tmp_path), 4096)
    with pytest.raises(OSError, match="No space"):
        fp.take()
    fp.close()
    assert os.listdir(tmp_path) == []
