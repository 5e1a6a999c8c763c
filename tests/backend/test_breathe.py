"""The commit thread lets the event loop's thread in while it builds pages (backend.breathe),
and a big append is merged a slice at a time with exactly the leaves of one pass."""

import struct
import threading

import pytest

from raftkv.backend import Backend, breathe
from raftkv.backend.db import DB
from raftkv.backend.node import TOMBSTONE, Leaf
from raftkv.backend.tx import _APPEND_SLICE, WriteTx

REV = struct.Struct(">QcQ")


def rev_keys(first: int, n: int) -> list[bytes]:
    return [REV.pack(first + i, b"_", 0) for i in range(n)]


@pytest.mark.parametrize("n", [_APPEND_SLICE + 1, 3 * _APPEND_SLICE + 7, 10_000])
@pytest.mark.parametrize("start", [0, 5, 140])
def test_an_append_in_slices_cuts_the_leaves_of_one_pass(tmp_path, n, start):
    db = DB(str(tmp_path / "db"))
    tx = WriteTx(db.state.pager, db.freelist, db.state.meta, db.freelist_npages)
    base = rev_keys(1, start)
    leaf = Leaf(base, [b"v" * 40] * start)
    ck = rev_keys(1 + start, n)
    cv = [TOMBSTONE if i % 97 == 3 else b"x" * (i % 300) for i in range(n)]
    sliced = tx._append_in_slices(leaf, ck, cv)
    whole = tx._apply_leaf(leaf, ck, cv, True)
    assert [(lf.keys, lf.values) for lf in sliced] == [(lf.keys, lf.values) for lf in whole]
    assert len(whole) > 1
    db.close()


def test_an_append_of_only_tombstones_to_an_empty_tree_leaves_no_leaf(tmp_path):
    db = DB(str(tmp_path / "db"))
    tx = WriteTx(db.state.pager, db.freelist, db.state.meta, db.freelist_npages)
    ck = rev_keys(1, 2 * _APPEND_SLICE + 1)
    assert tx._append_in_slices(Leaf([], []), ck, [TOMBSTONE] * len(ck)) == []
    db.close()


def test_breather_releases_the_gil_only_after_its_interval(monkeypatch):
    sleeps: list[float] = []
    monkeypatch.setattr(breathe.time, "sleep", sleeps.append)
    b = breathe.Breather(every=3600)
    for _ in range(100):
        b.tick()
    assert sleeps == []
    b = breathe.Breather(every=0.0)
    b.tick()
    b.tick()
    assert sleeps == [breathe.PAUSE, breathe.PAUSE]


def test_a_commit_in_the_commit_thread_breathes_and_one_on_the_writer_does_not(
    tmp_path, monkeypatch
):
    ticks: list[str] = []
    orig = breathe.Breather.tick

    def tick(self: breathe.Breather) -> None:
        ticks.append(threading.current_thread().name)
        orig(self)

    monkeypatch.setattr(breathe.Breather, "tick", tick)
    be = Backend.open(str(tmp_path / "db"), batch_limit=10**9)
    be.create_bucket(b"key")
    for k in rev_keys(1, 5000):
        be.put(b"key", k, b"v" * 100)
    be.commit()  # on this thread
    assert ticks == []
    for k in rev_keys(5001, 5000):
        be.put(b"key", k, b"v" * 100)
    be.commit_async().result(30)
    be.wait_commit()
    assert len(ticks) > 100 and all(t.startswith("backend-commit") for t in ticks)
    assert dict(be.range(b"key", b"")) == {k: b"v" * 100 for k in rev_keys(1, 10_000)}
    assert be.check() == []
    be.close()
