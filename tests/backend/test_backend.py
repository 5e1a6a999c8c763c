"""The public Backend API: buffered writes, commits, reopen, ranges, sizes, maintenance."""

import io
import os
import struct

import pytest

from raftkv.backend import Backend, BackendError

BUCKETS = [b"key", b"meta", b"lease", b"members", b"auth"]


def rev(main: int, sub: int = 0) -> bytes:
    return struct.pack(">QcQ", main, b"_", sub)


@pytest.fixture
def path(tmp_path):
    return str(tmp_path / "db")


@pytest.fixture
def be(path):
    b = Backend.open(path)
    for name in BUCKETS:
        b.create_bucket(name)
    yield b
    b.close()


def test_open_creates_the_file_and_reopens_it(path):
    b = Backend.open(path)
    assert os.path.exists(path)
    assert b.path == path
    assert b.check() == []
    b.close()
    b = Backend.open(path)
    assert b.check() == []
    b.close()


def test_writes_are_visible_before_commit_and_durable_after(path, be):
    be.put(b"key", b"a", b"1")
    be.put(b"meta", b"consistent_index", b"\x00" * 8)
    assert be.get(b"key", b"a") == b"1"
    assert be.pending == 2 + len(BUCKETS)
    be.commit()
    assert be.pending == 0
    be.close()
    b = Backend.open(path)
    assert b.get(b"key", b"a") == b"1"
    assert b.get(b"meta", b"consistent_index") == b"\x00" * 8
    assert b.get(b"key", b"missing") is None
    b.close()


def test_close_commits_pending_writes(path, be):
    be.put(b"key", b"a", b"1")
    be.close()
    with Backend.open(path) as b:
        assert b.get(b"key", b"a") == b"1"


def test_create_bucket_is_idempotent_and_survives_reopen(path, be):
    be.create_bucket(b"key")
    be.commit()
    be.close()
    with Backend.open(path) as b:
        b.create_bucket(b"key")
        assert b.pending == 0
        b.put(b"key", b"k", b"v")


def test_unknown_bucket_is_an_error(be):
    with pytest.raises(BackendError, match="nope"):
        be.put(b"nope", b"k", b"v")
    with pytest.raises(BackendError):
        be.get(b"nope", b"k")


def test_delete_hides_committed_and_buffered_keys(be):
    be.put(b"key", b"a", b"1")
    be.put(b"key", b"b", b"2")
    be.commit()
    be.delete(b"key", b"a")
    be.put(b"key", b"c", b"3")
    be.delete(b"key", b"c")
    assert be.get(b"key", b"a") is None
    assert be.range(b"key", b"") == [(b"b", b"2")]
    be.commit()
    assert be.range(b"key", b"") == [(b"b", b"2")]


def test_range_merges_buffer_over_committed_in_both_directions_with_limit(be):
    for i in range(0, 100, 2):
        be.put(b"key", b"%03d" % i, b"c%d" % i)
    be.commit()
    for i in range(1, 100, 2):
        be.put(b"key", b"%03d" % i, b"b%d" % i)
    be.put(b"key", b"010", b"overwritten")
    be.delete(b"key", b"020")
    expect = [(b"%03d" % i, (b"b%d" if i % 2 else b"c%d") % i) for i in range(100) if i != 20]
    expect[10] = (b"010", b"overwritten")
    assert be.range(b"key", b"") == expect
    assert be.range(b"key", b"005", b"015") == [kv for kv in expect if b"005" <= kv[0] < b"015"]
    assert be.range(b"key", b"", limit=3) == expect[:3]
    assert be.range(b"key", b"", reverse=True) == expect[::-1]
    assert (
        be.range(b"key", b"015", b"025", reverse=True, limit=4)
        == [kv for kv in expect[::-1] if b"015" <= kv[0] < b"025"][:4]
    )
    assert be.range(b"key", b"5", b"6") == []


def test_batch_limit_commits_automatically(path):
    b = Backend.open(path, batch_limit=100)
    b.create_bucket(b"key")
    for i in range(250):
        b.put(b"key", rev(i), b"v")
    assert b.pending == 250 + 1 - 200
    with b.read_snapshot() as snap:
        assert len(snap.range(b"key", b"")) == 199


def test_commit_if_due_waits_for_the_interval(path):
    now = [100.0]
    b = Backend.open(path, batch_interval=0.1)
    b.clock = lambda: now[0]
    b.create_bucket(b"key")
    b.commit()
    now[0] += 1
    assert not b.commit_if_due()  # nothing pending
    b.put(b"key", b"a", b"1")
    assert b.commit_if_due()  # pending, and more than the interval since the last commit
    assert b.pending == 0
    b.put(b"key", b"b", b"2")
    now[0] += 0.06
    assert not b.commit_if_due()
    now[0] += 0.06
    assert b.commit_if_due()
    b.close()


def test_values_larger_than_a_page_live_in_overflow_pages(path, be):
    big = os.urandom(50_000)
    be.put(b"key", b"big", big)
    be.put(b"key", b"small", b"s")
    be.commit()
    assert be.get(b"key", b"big") == big
    be.put(b"key", b"big", b"now small")  # frees the overflow run
    be.commit()
    be.close()
    with Backend.open(path) as b:
        assert b.get(b"key", b"big") == b"now small"
        assert b.check() == []


def test_large_keys_work(be):
    keys = [bytes([i]) * (3000 if i % 5 else 10_000) for i in range(1, 20)]
    for k in keys:
        be.put(b"auth", k, b"v" * 100)
    be.commit()
    assert [k for k, _ in be.range(b"auth", b"")] == keys
    assert be.check() == []
    for k in keys[::2]:
        be.delete(b"auth", k)
    be.commit()
    assert [k for k, _ in be.range(b"auth", b"")] == keys[1::2]
    assert be.check() == []


def test_revision_appends_fill_pages_and_file_stays_close_to_data_size(be):
    value = b"x" * 256
    for batch in range(10):
        for i in range(1000):
            be.put(b"key", rev(batch * 1000 + i), value)
        be.commit()
    data = 10_000 * (17 + 256)
    assert be.size_in_use < data * 1.15
    assert be.range(b"key", rev(5000), rev(5003)) == [(rev(i), value) for i in range(5000, 5003)]
    assert be.check() == []


def test_freed_pages_are_reused_so_overwrites_do_not_grow_the_file(be):
    for _ in range(3):
        for i in range(2000):
            be.put(b"key", b"%05d" % i, os.urandom(100))
        be.commit()
    size = be.size
    for _ in range(20):
        for i in range(0, 2000, 7):
            be.put(b"key", b"%05d" % i, os.urandom(100))
        be.commit()
    assert be.size <= size * 1.1
    assert be.check() == []


def test_hash_covers_pending_writes_and_matches_after_reopen(path, be):
    be.put(b"key", b"a", b"1")
    h = be.hash()
    be.put(b"key", b"a", b"2")
    assert be.hash() != h
    be.put(b"key", b"a", b"1")
    assert be.hash() == h
    be.close()
    with Backend.open(path) as b:
        assert b.hash() == h


def test_write_to_produces_a_valid_copy_of_the_committed_state(tmp_path, be):
    for i in range(3000):
        be.put(b"key", rev(i), b"v%d" % i)
    be.commit()
    be.put(b"key", b"uncommitted", b"x")
    buf = io.BytesIO()
    n = be.write_to(buf)
    assert n == len(buf.getvalue()) and n % 4096 == 0
    copy = tmp_path / "copy"
    copy.write_bytes(buf.getvalue())
    with Backend.open(str(copy)) as c:
        assert c.check() == []
        assert c.get(b"key", rev(2999)) == b"v2999"
        assert c.get(b"key", b"uncommitted") is None
        assert len(c.range(b"key", b"")) == 3000


def test_defragment_shrinks_the_file_and_keeps_the_data(path, be):
    for i in range(20_000):
        be.put(b"key", rev(i), b"v" * 200)
    be.commit()
    for i in range(0, 19_000):
        be.delete(b"key", rev(i))
    be.put(b"lease", b"big", b"L" * 9000)
    be.commit()
    before = be.size
    h = be.hash()
    be.defragment()
    assert be.size < before / 5
    assert be.size == be.size_in_use
    assert be.hash() == h
    assert be.check() == []
    be.put(b"key", rev(30_000), b"after")
    be.commit()
    be.close()
    with Backend.open(path) as b:
        assert b.get(b"key", rev(30_000)) == b"after"
        assert b.get(b"lease", b"big") == b"L" * 9000
        assert b.check() == []


async def test_defragment_runs_in_a_worker_thread(be):
    import asyncio

    for i in range(5000):
        be.put(b"key", rev(i), b"v" * 100)
    be.commit()
    await asyncio.to_thread(be.defragment)
    assert len(be.range(b"key", b"")) == 5000


def test_snapshot_opened_before_defragment_keeps_reading_the_old_file(be):
    for i in range(2000):
        be.put(b"key", rev(i), b"v")
    be.commit()
    snap = be.read_snapshot()
    be.defragment()
    assert len(snap.range(b"key", b"")) == 2000
    snap.close()


def test_size_in_use_counts_live_pages(be):
    for i in range(5000):
        be.put(b"key", rev(i), b"v" * 100)
    be.commit()
    in_use = be.size_in_use
    for i in range(5000):
        be.delete(b"key", rev(i))
    be.commit()
    assert be.size_in_use < in_use / 10
    assert be.size >= in_use


def test_reads_after_close_fail_cleanly_but_open_snapshots_keep_working(path, be):
    be.put(b"key", b"a", b"1")
    be.commit()
    snap = be.read_snapshot()
    be.close()
    be.close()  # idempotent
    assert snap.get(b"key", b"a") == b"1"
    snap.close()
    reopened = Backend.open(path)
    reopened._db.state.pager.clear_cache()
    reopened.close()
    with pytest.raises(BackendError, match="closed"):
        reopened.get(b"key", b"a")


def test_a_file_cannot_be_opened_twice(path, be):
    with pytest.raises(BackendError, match="already open"):
        Backend.open(path)
    be.close()
    Backend.open(path).close()


def test_hash_is_crc32c_of_bucket_names_keys_and_values_in_order(tmp_path):
    """The hash etcdctl's ``snapshot status`` reports: CRC-32C (Castagnoli) chained over each
    bucket's name, then its keys and values in key order, buckets in name order."""
    import zlib

    import crc32c

    with Backend.open(str(tmp_path / "db")) as be:
        be.create_bucket(b"zz")
        be.create_bucket(b"aa")
        be.put(b"zz", b"k", b"v")
        be.put(b"aa", b"y", b"2")
        be.put(b"aa", b"x", b"1")
        stream = b"aa" + b"x" + b"1" + b"y" + b"2" + b"zz" + b"k" + b"v"
        assert be.hash() == crc32c.crc32c(stream)
        assert be.hash() != zlib.crc32(stream)


def _scanned(be: Backend, bucket: bytes, start: bytes = b"") -> list[tuple[bytes, bytes]]:
    """The items of ``be.scan``, cut out of each chunk's records by their sizes."""
    out = []
    for ksizes, vsizes, data in be.scan(bucket, start):
        assert len(ksizes) == len(vsizes) and ksizes
        assert len(data) == sum(ksizes) + sum(vsizes)
        pos = 0
        for ks, vs in zip(ksizes, vsizes, strict=True):
            out.append((data[pos : pos + ks], data[pos + ks : pos + ks + vs]))
            pos += ks + vs
    return out


def test_scan_reads_whole_leaves_in_key_order_with_large_values_read_in(tmp_path):
    with Backend.open(str(tmp_path / "db"), batch_limit=10**9) as be:
        be.create_bucket(b"b")
        model = {b"k%05d" % i: (b"x" * 3000 if i % 50 == 0 else b"v%d" % i) for i in range(5000)}
        for k, v in model.items():
            be.put(b"b", k, v)
        be.commit()
        assert _scanned(be, b"b") == sorted(model.items())
        assert _scanned(be, b"b", b"k02500") == sorted(model.items())[2500:]
        assert _scanned(be, b"b", b"k02500\x00") == sorted(model.items())[2501:]
        assert _scanned(be, b"b", b"l") == []
        # leaves in the node cache (read by gets) are packed from their decoded elements
        for k in list(model)[::7]:
            assert be.get(b"b", k) == model[k]
        assert _scanned(be, b"b") == sorted(model.items())
        be.create_bucket(b"empty")
        assert _scanned(be, b"empty") == []


def test_scan_of_a_bucket_emptied_by_deletes_is_empty(tmp_path):
    path = str(tmp_path / "db")
    with Backend.open(path) as be:
        be.create_bucket(b"b")
        for i in range(500):
            be.put(b"b", b"k%03d" % i, b"v")
        be.commit()
        for i in range(500):
            be.delete(b"b", b"k%03d" % i)
    with Backend.open(path) as be:  # (a fresh node cache: the leaves come from the file)
        assert _scanned(be, b"b") == []
        assert _scanned(be, b"b", b"k250") == []


def test_scan_merges_buffered_and_in_flight_writes(tmp_path):
    with Backend.open(str(tmp_path / "db"), batch_limit=10**9) as be:
        be.create_bucket(b"b")
        model = {b"k%05d" % i: b"v%d" % i for i in range(3000)}
        for k, v in model.items():
            be.put(b"b", k, v)
        be.commit()
        be.delete(b"b", b"k00007")
        be.put(b"b", b"k00008", b"new")
        fut = be.commit_async()  # in flight (or done: reads merge it either way)
        be.put(b"b", b"k99999", b"buffered")
        del model[b"k00007"]
        model[b"k00008"] = b"new"
        model[b"k99999"] = b"buffered"
        assert _scanned(be, b"b") == sorted(model.items())
        fut.result(30)
