"""Damaged files: a torn newer meta falls back, two bad metas refuse, a bad page is named."""

import os

import pytest

from raftkv.backend import Backend, BackendCorruptError, page
from raftkv.backend.page import PAGE_SIZE


def two_commits(path: str) -> None:
    with Backend.open(path) as be:
        be.create_bucket(b"key")
        for i in range(500):
            be.put(b"key", b"%04d" % i, b"old" * 30)
        be.commit()
        for i in range(500):
            be.put(b"key", b"%04d" % i, b"new" * 30)
        be.commit()


def newest_meta_slot(path: str) -> int:
    with open(path, "rb") as f:
        metas = [page.decode_meta(f.read(PAGE_SIZE), slot) for slot in (0, 1)]
    return max((0, 1), key=lambda s: metas[s].txid)


def overwrite(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_torn_newer_meta_opens_at_the_older_commit(tmp_path):
    path = str(tmp_path / "db")
    two_commits(path)
    slot = newest_meta_slot(path)
    overwrite(path, slot * PAGE_SIZE + 40, os.urandom(300))
    with Backend.open(path) as be:
        assert be.get(b"key", b"0042") == b"old" * 30
        assert be.check() == []
        be.put(b"key", b"0042", b"again")
        be.commit()  # overwrites the torn slot, not the good one
    with Backend.open(path) as be:
        assert be.get(b"key", b"0042") == b"again"
        assert be.get(b"key", b"0043") == b"old" * 30
        assert be.check() == []


def test_both_metas_bad_refuses_to_open_with_a_clear_error(tmp_path):
    path = str(tmp_path / "db")
    two_commits(path)
    overwrite(path, 0, b"\x00" * 100)
    overwrite(path, PAGE_SIZE + 100, b"garbage")
    with pytest.raises(BackendCorruptError) as err:
        Backend.open(path)
    msg = str(err.value)
    assert path in msg
    assert "both meta pages are invalid" in msg
    assert "meta page 0" in msg and "meta page 1" in msg


def find_leaf_holding(path: str, key: bytes) -> int:
    """The leaf page holding ``key`` (the file was written by one commit: no stale copies)."""
    with open(path, "rb") as f:
        data = f.read()
    for pgid in range(2, len(data) // PAGE_SIZE):
        buf = data[pgid * PAGE_SIZE : (pgid + 1) * PAGE_SIZE]
        if page.verify(buf, pgid) is None and page.parse_header(buf)[2] == page.LEAF:
            keys, _ = page.decode_leaf(buf)
            if key in keys:
                return pgid
    raise AssertionError("no leaf found")


def test_flipped_byte_in_a_data_page_is_detected_and_named(tmp_path):
    path = str(tmp_path / "db")
    with Backend.open(path) as be:
        be.create_bucket(b"key")
        for i in range(2000):
            be.put(b"key", b"%05d" % i, b"v" * 100)
    pgid = find_leaf_holding(path, b"01000")
    with open(path, "r+b") as f:
        f.seek(pgid * PAGE_SIZE + 700)
        b = f.read(1)
        f.seek(pgid * PAGE_SIZE + 700)
        f.write(bytes([b[0] ^ 0x01]))
    with Backend.open(path) as be:
        with pytest.raises(BackendCorruptError) as err:
            be.get(b"key", b"01000")
        assert err.value.pgid == pgid
        assert f"page {pgid}" in str(err.value) and path in str(err.value)
        assert "checksum mismatch" in str(err.value)
        with pytest.raises(BackendCorruptError):
            be.range(b"key", b"")
        problems = be.check()
        assert any(f"page {pgid}:" in p and "checksum" in p for p in problems)
        assert be.get(b"key", b"00001") == b"v" * 100  # other pages still read


def test_truncated_file_is_refused(tmp_path):
    path = str(tmp_path / "db")
    two_commits(path)
    size = os.path.getsize(path)
    os.truncate(path, size - 3 * PAGE_SIZE)
    with pytest.raises(BackendCorruptError, match="needs"):
        Backend.open(path)
