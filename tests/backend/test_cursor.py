"""Cursor: seek, first/last, and stepping across leaf boundaries in both directions."""

import pytest

from raftkv.backend import Backend


@pytest.fixture
def snap(tmp_path):
    be = Backend.open(str(tmp_path / "db"))
    be.create_bucket(b"key")
    be.create_bucket(b"empty")
    for i in range(0, 6000, 2):  # many leaves, two levels
        be.put(b"key", b"%05d" % i, b"v%d" % i * 10)
    be.put(b"key", b"99999", b"B" * 9000)  # out of line
    be.commit()
    with be.read_snapshot() as s:
        yield s
    be.close()


def test_seek_lands_on_the_first_key_at_or_after(snap):
    c = snap.cursor(b"key")
    assert c.seek(b"00100") == (b"00100", b"v100" * 10)
    assert c.seek(b"00101")[0] == b"00102"
    assert c.seek(b"")[0] == b"00000"
    assert c.seek(b"99999") == (b"99999", b"B" * 9000)
    assert c.seek(b"a") is None


def test_walk_forward_and_backward_visits_every_key_once(snap):
    expect = [b"%05d" % i for i in range(0, 6000, 2)] + [b"99999"]
    c = snap.cursor(b"key")
    got = []
    kv = c.first()
    while kv is not None:
        got.append(kv[0])
        kv = c.next()
    assert got == expect
    got = []
    kv = c.last()
    while kv is not None:
        got.append(kv[0])
        kv = c.prev()
    assert got == expect[::-1]


def test_next_then_prev_returns_to_the_same_key_across_leaves(snap):
    c = snap.cursor(b"key")
    c.seek(b"03000")
    for _ in range(500):
        c.next()
    for _ in range(500):
        kv = c.prev()
    assert kv[0] == b"03000"


def test_empty_and_missing_buckets_have_nothing(snap):
    for name in (b"empty", b"missing"):
        c = snap.cursor(name)
        assert c.first() is None and c.last() is None and c.seek(b"x") is None
