"""Snapshot files: save/load, a corrupt newest falls back, purge, db images, crash safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from raftkv.raft.messages import ConfState, Snapshot, SnapshotMetadata
from raftkv.snap import NoSnapshotError, SnapError, Snapshotter
from raftkv.snap.snapshotter import HEADER, decode_snap_file, encode_snap_file, snap_name
from raftkv.wal import WalSnapshot

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def snap(index: int, term: int = 1, data: bytes = b"descriptor") -> Snapshot:
    return Snapshot(SnapshotMetadata(ConfState((1, 2, 3), (4,)), index, term), data)


def test_save_then_load_round_trips(tmp_path):
    s = Snapshotter(str(tmp_path))
    assert s.load() is None
    s.save_snap(snap(100, 2))
    assert os.listdir(tmp_path) == [snap_name(2, 100)]
    assert Snapshotter(str(tmp_path)).load() == snap(100, 2)


def test_file_layout_is_header_payload_and_padding_to_eight_bytes():
    raw = encode_snap_file(snap(7, data=b"x"))
    assert raw[:8] == b"RKVSNAP\x01" and len(raw) % 8 == 0
    _, _, length = HEADER.unpack_from(raw)
    assert HEADER.size + length <= len(raw) < HEADER.size + length + 8
    assert decode_snap_file(raw) == snap(7, data=b"x")


def test_an_empty_snapshot_is_not_saved(tmp_path):
    s = Snapshotter(str(tmp_path))
    s.save_snap(Snapshot())
    assert os.listdir(tmp_path) == []


def test_load_picks_the_newest(tmp_path):
    s = Snapshotter(str(tmp_path), max_snapshots=0)
    for index, term in [(10, 1), (30, 2), (20, 2)]:
        s.save_snap(snap(index, term))
    assert s.load() == snap(30, 2)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "wrong_name"])
def test_a_corrupt_newest_is_moved_aside_and_the_previous_used(tmp_path, damage):
    s = Snapshotter(str(tmp_path))
    s.save_snap(snap(10))
    s.save_snap(snap(20))
    newest = os.path.join(tmp_path, snap_name(1, 20))
    if damage == "flip":
        with open(newest, "r+b") as f:
            f.seek(30)
            b = f.read(1)
            f.seek(30)
            f.write(bytes([b[0] ^ 1]))
    elif damage == "truncate":
        os.truncate(newest, 40)
    elif damage == "empty":
        os.truncate(newest, 0)
    else:  # a valid file under another snapshot's name
        with open(os.path.join(tmp_path, snap_name(1, 10)), "rb") as f:
            body = f.read()
        with open(newest, "wb") as f:
            f.write(body)
    assert s.load() == snap(10)
    assert os.path.exists(newest + ".broken")
    assert not os.path.exists(newest)


def test_all_corrupt_gives_none(tmp_path):
    s = Snapshotter(str(tmp_path))
    s.save_snap(snap(10))
    os.truncate(os.path.join(tmp_path, snap_name(1, 10)), 3)
    assert s.load() is None


def test_purge_keeps_max_snapshots_newest(tmp_path):
    s = Snapshotter(str(tmp_path), max_snapshots=3)
    for i in range(1, 8):
        s.save_snap(snap(i * 10))
    assert sorted(os.listdir(tmp_path)) == [snap_name(1, i * 10) for i in (5, 6, 7)]


def test_load_newest_available_skips_snapshots_the_wal_never_marked(tmp_path):
    s = Snapshotter(str(tmp_path))
    for i in (10, 20, 30):
        s.save_snap(snap(i))
    marks = [WalSnapshot(0, 0), WalSnapshot(10, 1), WalSnapshot(20, 1)]
    assert s.load_newest_available(marks) == snap(20)
    assert s.load_newest_available([WalSnapshot(0, 0)]) is None


def test_save_db_receives_an_image_and_install_swaps_it_in(tmp_path):
    s = Snapshotter(str(tmp_path))
    chunks = [b"page" * 1024, b"more" * 7, b""]
    path = s.save_db(42, iter(chunks))
    assert path == s.db_path(42) == os.path.join(tmp_path, "000000000000002a.snap.db")
    with open(path, "rb") as f:
        assert f.read() == b"".join(chunks)
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    with open(s.db_file(), "wb") as f:
        f.write(b"old backend")
    assert s.install_db(42) == os.path.join(tmp_path, "db")
    with open(s.db_file(), "rb") as f:
        assert f.read() == b"".join(chunks)
    assert not os.path.exists(path)
    with pytest.raises(SnapError, match="no received db image"):
        s.install_db(43)


def test_a_failed_db_receive_leaves_nothing_behind(tmp_path):
    s = Snapshotter(str(tmp_path))

    def chunks():
        yield b"partial"
        raise ConnectionError("leader went away")

    with pytest.raises(SnapError, match="leader went away"):
        s.save_db(7, chunks())
    assert os.listdir(tmp_path) == []

    def broken_source():
        yield b"partial"
        raise ValueError("bad chunk")

    with pytest.raises(ValueError):
        s.save_db(8, broken_source())
    assert os.listdir(tmp_path) == []


def test_no_snapshot_error_is_a_snap_error():
    assert issubclass(NoSnapshotError, SnapError)


CHILD = """
import sys
from raftkv.raft.messages import ConfState, Snapshot, SnapshotMetadata
from raftkv.snap import Snapshotter
s = Snapshotter(sys.argv[1])
s.save_snap(Snapshot(SnapshotMetadata(ConfState((1,), ()), int(sys.argv[2]), 1), b"new"))
"""


@pytest.mark.parametrize("point", ["snap.before_rename", "snap.after_rename"])
def test_kill_9_while_saving_leaves_the_old_or_the_new_snapshot(tmp_path, point):
    d = str(tmp_path / "snap")
    Snapshotter(d).save_snap(snap(10))
    env = dict(os.environ, PYTHONPATH=ROOT, RAFTKV_FAILPOINTS=f"{point}=crash")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, d, "20"], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    loaded = Snapshotter(d).load()  # also removes the temp file a crash left
    assert loaded is not None
    assert loaded.metadata.index == (10 if point == "snap.before_rename" else 20)
    assert not [n for n in os.listdir(d) if n.endswith(".tmp")]


DB_CHILD = """
import sys
from raftkv.snap import Snapshotter
Snapshotter(sys.argv[1]).save_db(int(sys.argv[2]), [b"x" * 100_000])
"""


def test_kill_9_while_receiving_a_db_leaves_no_image(tmp_path):
    d = str(tmp_path / "snap")
    env = dict(os.environ, PYTHONPATH=ROOT, RAFTKV_FAILPOINTS="snap.db_before_rename=crash")
    proc = subprocess.run(
        [sys.executable, "-c", DB_CHILD, d, "9"], env=env, capture_output=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    s = Snapshotter(d)
    assert not os.path.exists(s.db_path(9))
    assert os.listdir(d) == []
