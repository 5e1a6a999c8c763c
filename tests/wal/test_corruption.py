"""Damaged WALs: a torn tail of the last segment is repaired; everything else is refused."""

from __future__ import annotations

import os
import shutil

import pytest

from raftkv.raft.messages import Entry, HardState
from raftkv.wal import WAL, WalCorruptError
from raftkv.wal.decoder import SECTOR, Decoder
from raftkv.wal.record import Record, RecordType

SEG = 8192


def ents(first: int, last: int, size: int = 60) -> list[Entry]:
    return [Entry(1, i, data=f"e{i}:".encode().ljust(size, b"#")) for i in range(first, last + 1)]


def records_of(path: str) -> list[Record]:
    dec = Decoder()
    with open(path, "rb") as f:
        dec.feed(f.read())
    out = []
    while (rec := dec.next()) is not None:
        out.append(rec)
    return out


def frame_end(rec: Record) -> int:
    return rec.offset + 16 + len(rec.data) + (-len(rec.data) & 7)


def build(path: str, last: str = "entry", last_size: int = 300) -> tuple[list[Entry], HardState]:
    """Three-plus segments of entries, then one final record of the given kind.
    Returns (entries before the final record, hard state before it)."""
    w = WAL.create(path, b"meta", segment_size=SEG)
    i = 1
    while len(w.segments) < 3 or w.tail_offset < 1000:
        w.save(HardState(1, 1, i - 1), ents(i, i + 4), True)
        i += 5
    before, hs = ents(1, i - 1), w.hard_state
    if last == "entry":
        w.save(None, [Entry(1, i, data=b"L" * last_size)], True)
    else:
        w.save(HardState(1, 1, i - 1), [], True)
    w.close()
    return before, hs


def read(path: str) -> tuple[WAL, tuple]:
    w = WAL.open(path, segment_size=SEG)
    try:
        return w, w.read_all()
    except BaseException:
        w.close()
        raise


def check_still_works(path: str, expected: list[Entry]) -> None:
    """Append after the repair, reopen, and find everything."""
    w, (_, _, got) = read(path)
    assert got == expected
    nxt = Entry(2, len(expected) + 1, data=b"after repair")
    w.save(HardState(2, 1, 0), [nxt], True)
    w.close()
    w, (_, hs, got) = read(path)
    w.close()
    assert got == [*expected, nxt]
    assert hs == HardState(2, 1, 0)


@pytest.fixture
def no_fsync(monkeypatch):
    """For tests that reopen hundreds of damaged copies: what they check is parsing and
    repair, not durability, and a shared CI disk can take 30 ms per fsync."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)
    monkeypatch.setattr(os, "fdatasync", lambda fd: None)


@pytest.fixture
def pristine(tmp_path):
    def make(**kw):
        src = str(tmp_path / "pristine")
        before, hs = build(src, **kw)
        return src, before, hs

    return make


def fresh_copy(src: str, tmp_path, name: str = "work") -> str:
    dst = str(tmp_path / name)
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("last", ["entry", "state"])
def test_truncating_the_last_record_at_every_offset_drops_only_that_record(
    pristine, tmp_path, last, no_fsync
):
    src, before, hs_before = pristine(last=last, last_size=120)
    tail = sorted(os.listdir(src))[-1]
    rec = records_of(os.path.join(src, tail))[-1]
    assert rec.type == (RecordType.ENTRY if last == "entry" else RecordType.STATE)
    for cut in range(rec.offset, frame_end(rec)):
        work = fresh_copy(src, tmp_path)
        seg = os.path.join(work, tail)
        os.truncate(seg, cut)
        w, (meta, hs, got) = read(work)
        w.close()
        assert meta == b"meta"
        assert got == before, cut
        assert hs == hs_before
        assert os.path.exists(seg + ".broken") == (cut > rec.offset), cut
        assert os.path.getsize(seg) == SEG  # preallocated again
    check_still_works(work, before)


def test_zero_filled_tail_from_any_sector_inside_the_last_record_is_repaired(
    pristine, tmp_path, no_fsync
):
    src, before, _ = pristine(last="entry", last_size=3000)
    tail = sorted(os.listdir(src))[-1]
    rec = records_of(os.path.join(src, tail))[-1]
    first_sector = (rec.offset // SECTOR + 1) * SECTOR
    starts = [rec.offset, *range(first_sector, frame_end(rec), SECTOR)]
    assert len(starts) >= 5
    for start in starts:
        work = fresh_copy(src, tmp_path)
        seg = os.path.join(work, tail)
        size = os.path.getsize(seg)
        with open(seg, "r+b") as f:
            f.seek(start)
            f.write(bytes(size - start))
        w, (_, _, got) = read(work)
        w.close()
        assert got == before, start
        # a zero frame word is a clean end; a zeroed sector inside a record is a torn write
        assert os.path.exists(seg + ".broken") == (start > rec.offset)
    check_still_works(work, before)


def test_unaligned_damage_in_the_last_record_is_refused_not_guessed(pristine, tmp_path):
    src, _, _ = pristine(last="entry", last_size=100)
    tail = sorted(os.listdir(src))[-1]
    rec = records_of(os.path.join(src, tail))[-1]
    work = fresh_copy(src, tmp_path)
    seg = os.path.join(work, tail)
    with open(seg, "r+b") as f:
        f.seek(rec.offset + 40)
        f.write(b"\0" * 20)  # zeros, but no whole sector: looks like rot, not a torn write
    with pytest.raises(WalCorruptError) as info:
        read(work)
    assert info.value.path == seg and info.value.offset == rec.offset


def flip_bit(path: str, offset: int, bit: int = 3) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([b ^ (1 << bit)]))


@pytest.mark.parametrize("where", ["data", "crc", "type", "length"])
def test_a_flipped_bit_in_an_older_segment_is_refused_with_file_and_offset(
    pristine, tmp_path, where
):
    src, _, _ = pristine()
    middle = sorted(n for n in os.listdir(src) if n.endswith(".wal"))[1]
    recs = records_of(os.path.join(src, middle))
    rec = recs[len(recs) // 2]
    pos = {
        "data": rec.offset + 16 + len(rec.data) // 2,
        "crc": rec.offset + 13,
        "type": rec.offset + 8,
        "length": rec.offset + 2,
    }[where]
    work = fresh_copy(src, tmp_path)
    seg = os.path.join(work, middle)
    flip_bit(seg, pos)
    with pytest.raises(WalCorruptError) as info:
        read(work)
    err = info.value
    assert err.path == seg
    assert err.offset == rec.offset
    assert seg in str(err) and f"offset {rec.offset}" in str(err)
    assert not os.path.exists(seg + ".broken")


def test_a_flipped_bit_in_the_middle_of_the_last_segment_is_refused(pristine, tmp_path):
    src, _, _ = pristine()
    tail = sorted(os.listdir(src))[-1]
    recs = records_of(os.path.join(src, tail))
    rec = recs[len(recs) // 2]
    work = fresh_copy(src, tmp_path)
    flip_bit(os.path.join(work, tail), rec.offset + 20)
    with pytest.raises(WalCorruptError) as info:
        read(work)
    assert info.value.offset == rec.offset


def test_a_deleted_middle_segment_is_refused(pristine, tmp_path):
    src, _, _ = pristine()
    work = fresh_copy(src, tmp_path)
    names = sorted(n for n in os.listdir(work) if n.endswith(".wal"))
    os.remove(os.path.join(work, names[1]))
    with pytest.raises(WalCorruptError, match="sequence gap") as info:
        WAL.open(work, segment_size=SEG)
    assert info.value.path == os.path.join(work, names[2])


@pytest.mark.parametrize("at", ["frame_boundary", "mid_frame"])
def test_a_truncated_middle_segment_is_refused(pristine, tmp_path, at):
    src, _, _ = pristine()
    middle = sorted(n for n in os.listdir(src) if n.endswith(".wal"))[1]
    recs = records_of(os.path.join(src, middle))
    rec = recs[len(recs) // 2]
    work = fresh_copy(src, tmp_path)
    os.truncate(os.path.join(work, middle), rec.offset + (0 if at == "frame_boundary" else 21))
    with pytest.raises(WalCorruptError):
        read(work)


def test_the_reported_error_says_what_to_do(pristine, tmp_path):
    src, _, _ = pristine()
    work = fresh_copy(src, tmp_path)
    first = sorted(n for n in os.listdir(work) if n.endswith(".wal"))[0]
    flip_bit(os.path.join(work, first), 100)
    with pytest.raises(WalCorruptError) as info:
        read(work)
    text = str(info.value)
    assert first in text and "offset" in text and "backup" in text and "snapshot" in text


def test_records_after_a_torn_record_are_not_returned(tmp_path):
    """Power loss can persist a later sector but not an earlier one: the intact record after
    a torn one was never acknowledged (no fsync covered it) and must not come back."""
    path = str(tmp_path / "wal")
    w = WAL.create(path, b"meta", segment_size=SEG)
    w.save(HardState(1, 1, 0), ents(1, 3), True)
    w.save(None, [Entry(1, 4, data=b"B" * 3000)], False)  # spans several sectors
    w.save(None, [Entry(1, 5, data=b"after")], False)
    tail = w.tail_path
    w.close()
    big, after = records_of(tail)[-2:]
    assert after.type == RecordType.ENTRY  # intact, and after the torn one
    sector = (big.offset // SECTOR + 2) * SECTOR
    assert sector + SECTOR <= frame_end(big)
    with open(tail, "r+b") as f:
        f.seek(sector)
        f.write(bytes(SECTOR))
    w, (_, _, got) = read(path)
    w.close()
    assert got == ents(1, 3)
    assert os.path.exists(tail + ".broken")
    check_still_works(path, ents(1, 3))
