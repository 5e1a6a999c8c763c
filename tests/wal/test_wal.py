"""The WAL's files: create/open/read_all/save round trips, cuts, release, snapshots, misuse."""

from __future__ import annotations

import os

import pytest
import structlog

from raftkv.raft.messages import Entry, HardState
from raftkv.wal import WAL, WalCorruptError, WalError, WalSnapshot
from raftkv.wal import wal as wal_mod
from raftkv.wal.wal import parse_segment_name

SEG = 8192


def ents(first: int, last: int, term: int = 1, size: int = 40) -> list[Entry]:
    return [
        Entry(term, i, data=f"{term}:{i}:".encode().ljust(size, b"."))
        for i in range(first, last + 1)
    ]


ZERO = WalSnapshot(0, 0)


def reopen(path: str, snap: WalSnapshot = ZERO, **kw) -> tuple[WAL, tuple]:
    w = WAL.open(path, snap, segment_size=kw.pop("segment_size", SEG), **kw)
    return w, w.read_all()


def load(path: str, snap: WalSnapshot = ZERO, **kw) -> tuple:
    """read_all of a WAL opened just for that, then closed."""
    w, result = reopen(path, snap, **kw)
    w.close()
    return result


@pytest.fixture
def waldir(tmp_path) -> str:
    return str(tmp_path / "member" / "wal")


def test_create_then_read_back_metadata_state_and_entries(waldir):
    assert not WAL.exists(waldir)
    w = WAL.create(waldir, b"cluster-1/member-2", segment_size=SEG)
    assert WAL.exists(waldir)
    assert not os.path.exists(waldir + ".tmp")
    w.save(HardState(1, 2, 0), ents(1, 3), must_sync=True)
    w.save(HardState(1, 2, 3), [], must_sync=True)
    w.close()
    w, (meta, hs, got) = reopen(waldir)
    assert meta == b"cluster-1/member-2"
    assert hs == HardState(1, 2, 3)
    assert got == ents(1, 3)
    assert w.last_index == 3
    w.close()


def test_create_refuses_a_non_empty_directory_and_accepts_an_empty_one(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(WalError, match="not empty"):
        WAL.create(str(full), b"m", segment_size=SEG)
    empty = tmp_path / "empty"
    empty.mkdir()
    WAL.create(str(empty), b"m", segment_size=SEG).close()
    assert WAL.exists(str(empty))


def test_create_cleans_a_temp_dir_left_by_a_crash(waldir):
    os.makedirs(waldir + ".tmp")
    with open(os.path.join(waldir + ".tmp", "0000000000000000-0000000000000000.wal"), "wb") as f:
        f.write(b"half")
    WAL.create(waldir, b"m", segment_size=SEG).close()
    meta, _, _ = load(waldir)
    assert meta == b"m"


def test_open_without_segments_fails(tmp_path):
    with pytest.raises(WalError, match="no WAL segments"):
        WAL.open(str(tmp_path))


def test_later_entries_replace_conflicting_ones(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    w.save(HardState(1, 1, 2), ents(1, 5, term=1), True)
    w.save(HardState(2, 1, 2), ents(3, 4, term=2), True)  # a new leader rewrites from 3
    w.close()
    w, (_, hs, got) = reopen(waldir)
    assert got == ents(1, 2, term=1) + ents(3, 4, term=2)
    assert hs == HardState(2, 1, 2)
    assert w.last_index == 4
    w.close()


def test_an_empty_save_writes_nothing(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    before = (w.tail_offset, w.fsync_count)
    w.save(HardState(), [], True)
    w.save(None, [], True)
    assert (w.tail_offset, w.fsync_count) == before
    w.close()


def test_one_fsync_per_save_and_none_without_must_sync(waldir):
    w = WAL.create(waldir, b"m", segment_size=1 << 20)
    n = w.fsync_count
    w.save(HardState(1, 1, 0), ents(1, 100), must_sync=True)
    assert w.fsync_count == n + 1
    w.save(None, ents(101, 200), must_sync=False)
    assert w.fsync_count == n + 1
    w.sync()
    assert w.fsync_count == n + 2
    w.close()


def test_thousands_of_entries_cut_into_segments_and_read_back(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    for first in range(1, 5001, 50):
        w.save(HardState(1, 1, first), ents(first, first + 49), must_sync=first % 500 == 1)
    segs = w.segments
    w.close()
    assert len(segs) > 20
    parsed = [parse_segment_name(os.path.basename(p)) for p in segs]
    assert [seq for seq, _ in parsed] == list(range(len(segs)))
    firsts = [first for _, first in parsed]
    assert firsts == sorted(firsts) and firsts[0] == 0
    for p in segs[:-1]:  # a cut truncates the full segment to its last record
        assert os.path.getsize(p) >= SEG
    assert os.path.getsize(segs[-1]) == SEG  # the tail stays preallocated
    w, (_, hs, got) = reopen(waldir)
    assert got == ents(1, 5000)
    assert hs == HardState(1, 1, 4951)
    w.close()
    assert not [n for n in os.listdir(waldir) if n.endswith(".tmp")]


def test_segment_is_named_after_the_next_entry_and_opens_with_the_hard_state(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    i = 1
    while len(w.segments) < 4:
        w.save(HardState(1, 1, i - 1), ents(i, i + 9), True)
        i += 10
    last_state = w.hard_state
    firsts = [parse_segment_name(os.path.basename(p))[1] for p in w.segments]
    assert firsts[-1] == w.last_index + 1  # the fresh tail is named after the next entry
    for first in firsts[1:-1]:
        w.save_snapshot(WalSnapshot(first, 1))
    w.close()
    for first in firsts[1:-1]:
        # open picks the segment starting at `first`: it must carry metadata and state itself
        w2, (meta, hs, got) = reopen(waldir, WalSnapshot(first, 1))
        assert meta == b"m"
        assert hs == last_state
        assert got == ents(first + 1, i - 1)
        w2.close()


def test_reopen_at_a_snapshot_in_the_middle_of_a_segment(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    for first in range(1, 2001, 20):
        w.save(HardState(1, 1, first + 19), ents(first, first + 19), True)
    w.save_snapshot(WalSnapshot(1234, 1))
    w.save(HardState(1, 1, 2010), ents(2001, 2010), True)
    w.close()
    w, (_, hs, got) = reopen(waldir, WalSnapshot(1234, 1))
    assert [e.index for e in got] == list(range(1235, 2011))
    assert hs == HardState(1, 1, 2010)
    w.save(None, ents(2011, 2011), True)
    w.close()
    _, _, got = load(waldir, WalSnapshot(1234, 1))
    assert got[-1].index == 2011


def test_open_at_a_snapshot_the_wal_never_marked_fails(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    w.save(HardState(1, 1, 10), ents(1, 10), True)
    w.save_snapshot(WalSnapshot(5, 1))
    w.close()
    w = WAL.open(waldir, WalSnapshot(6, 1), segment_size=SEG)
    with pytest.raises(WalError, match="not found"):
        w.read_all()
    w.close()
    w = WAL.open(waldir, WalSnapshot(5, 2), segment_size=SEG)
    with pytest.raises(WalError, match="snapshot mismatch"):
        w.read_all()
    w.close()


def test_valid_snapshots_are_those_committed_by_the_hard_state(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    w.save(HardState(1, 1, 10), ents(1, 20), True)
    w.save_snapshot(WalSnapshot(8, 1))
    w.save_snapshot(WalSnapshot(15, 1))  # beyond commit 10: not valid
    w.close()
    assert WAL.valid_snapshots(waldir) == [WalSnapshot(0, 0), WalSnapshot(8, 1)]


def test_release_to_deletes_segments_before_the_one_holding_the_index(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG, max_wals=2)
    for first in range(1, 3001, 25):
        w.save(HardState(1, 1, first), ents(first, first + 24), True)
    segs = w.segments
    starts = [parse_segment_name(os.path.basename(p))[1] for p in segs]
    k = len(segs) // 2
    index = starts[k] + 3  # inside segment k
    w.save_snapshot(WalSnapshot(index, 1))
    w.release_to(index)
    left = w.segments
    assert left == segs[k:]
    w.close()
    _, _, got = load(waldir, WalSnapshot(index, 1), max_wals=2)
    assert got == ents(index + 1, 3000)


def test_release_keeps_max_wals_segments(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG, max_wals=5)
    for first in range(1, 3001, 25):
        w.save(HardState(1, 1, first), ents(first, first + 24), True)
    segs = w.segments
    w.release_to(10_000)
    assert w.segments == segs[-5:]
    w.close()


def test_release_with_max_wals_zero_keeps_everything(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG, max_wals=0)
    for first in range(1, 1001, 25):
        w.save(HardState(1, 1, first), ents(first, first + 24), True)
    segs = w.segments
    w.release_to(900)
    assert w.segments == segs
    w.close()


def test_open_at_an_index_older_than_every_segment_fails(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG, max_wals=1)
    for first in range(1, 1001, 25):
        w.save(HardState(1, 1, first), ents(first, first + 24), True)
    w.save_snapshot(WalSnapshot(990, 1))
    w.release_to(990)
    w.close()
    with pytest.raises(WalError, match="holds snapshot index 5"):
        WAL.open(waldir, WalSnapshot(5, 1))


def test_a_second_writer_is_refused_while_the_first_holds_the_wal(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    with pytest.raises(WalError, match="locked"):
        WAL.open(waldir)
    w.close()
    WAL.open(waldir).close()


def test_save_before_read_all_and_read_all_twice_are_refused(waldir):
    WAL.create(waldir, b"m", segment_size=SEG).close()
    w = WAL.open(waldir, segment_size=SEG)
    with pytest.raises(WalError, match="read_all"):
        w.save(HardState(1, 1, 0), ents(1, 1), True)
    w.read_all()
    with pytest.raises(WalError, match="once"):
        w.read_all()
    w.close()


def test_entry_gap_is_corruption(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    w.save(HardState(1, 1, 0), ents(1, 3), True)
    w.save(None, ents(5, 6), True)  # a bug upstream: index 4 is missing
    w.close()
    w = WAL.open(waldir, segment_size=SEG)
    with pytest.raises(WalCorruptError, match="entry index gap"):
        w.read_all()
    w.close()


def test_slow_fsync_is_logged_with_its_duration(waldir, monkeypatch):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    clock = iter([100.0, 101.5])
    monkeypatch.setattr(wal_mod.time, "perf_counter", lambda: next(clock))
    with structlog.testing.capture_logs() as logs:
        w.save(HardState(1, 1, 0), ents(1, 1), True)
    monkeypatch.undo()
    assert [e["event"] for e in logs] == ["slow fsync"]
    assert logs[0]["took_seconds"] == 1.5
    assert w.fsync_seconds == pytest.approx(1.5)
    w.close()


def test_write_error_makes_the_wal_refuse_further_writes(waldir, monkeypatch):
    w = WAL.create(waldir, b"m", segment_size=SEG)

    def enospc(*a):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(wal_mod, "write_all", enospc)
    with pytest.raises(WalError, match="No space"):
        w.save(HardState(1, 1, 0), ents(1, 1), True)
    monkeypatch.undo()
    with pytest.raises(WalError, match="unusable"):
        w.save(HardState(1, 1, 0), ents(1, 1), True)
    w.close()
    _, _, got = load(waldir)
    assert got == []


def test_a_batch_larger_than_a_segment_is_written_whole_then_cut(waldir):
    w = WAL.create(waldir, b"m", segment_size=SEG)
    w.save(HardState(1, 1, 0), ents(1, 500, size=100), True)
    assert len(w.segments) == 2
    w.save(HardState(1, 1, 500), ents(501, 510), True)
    w.close()
    _, hs, got = load(waldir)
    assert got == ents(1, 500, size=100) + ents(501, 510)
    assert hs.commit == 500


def test_a_cut_without_a_next_segment_fails_cleanly_and_keeps_what_was_saved(waldir, monkeypatch):
    from raftkv.wal import file_pipeline

    def enospc(fd, size):
        raise OSError(28, "No space left on device")

    w = WAL.create(waldir, b"m", segment_size=SEG)
    w.close()
    monkeypatch.setattr(file_pipeline, "preallocate", enospc)
    w, _ = reopen(waldir)
    with pytest.raises(WalError, match="next segment"):
        w.save(HardState(1, 1, 0), ents(1, 300), True)  # fills the segment: cut
    with pytest.raises(WalError, match="unusable"):
        w.save(None, ents(301, 301), True)
    w.close()
    monkeypatch.undo()
    _, _, got = load(waldir)
    assert got == ents(1, 300)
