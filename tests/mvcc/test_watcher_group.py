from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.mvcc.watcher_group import IntervalIndex, Watcher, WatcherGroup

points = st.sampled_from([b"", b"\x00", b"a", b"a\x00", b"ab", b"b", b"ba", b"c", b"zz"])


def brute(ranges, key):
    return {id(ws) for (s, e), ws in ranges.items() if s <= key and (not e or key < e) and ws}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), points, points), max_size=30),
    st.lists(points, min_size=1, max_size=10),
)
def test_interval_index_matches_a_linear_scan(changes, queries):
    idx = IntervalIndex()
    ws: list[Watcher] = []
    for add, start, end in changes:
        if add:
            w = Watcher(None, len(ws), start, end)  # type: ignore[arg-type]
            ws.append(w)
            idx.add(w)
        elif ws:
            idx.discard(ws.pop(0))
        for _ in range(IntervalIndex.REBUILD_AFTER + 1):  # both the scan and the table
            for q in queries:
                assert {id(s) for s in idx.stab(q)} == brute(idx.ranges, q)


def test_group_finds_key_and_range_watchers():
    g = WatcherGroup()
    a = Watcher(None, 0, b"a", None)  # type: ignore[arg-type]
    pre = Watcher(None, 1, b"a", b"b")  # type: ignore[arg-type]
    frm = Watcher(None, 2, b"ab", b"")  # type: ignore[arg-type]
    for w in (a, pre, frm):
        g.add(w)
    for _ in range(IntervalIndex.REBUILD_AFTER + 2):
        assert set(g.watchers_of(b"a")) == {a, pre}
        assert set(g.watchers_of(b"ab")) == {pre, frm}
        assert set(g.watchers_of(b"zz")) == {frm}
        assert not g.contains_key(b"0")
    g.delete(pre)
    assert set(g.watchers_of(b"ab")) == {frm}


def test_deeply_nested_intervals_fall_back_to_scanning(monkeypatch):
    monkeypatch.setattr(IntervalIndex, "MAX_COVER", 10)
    idx = IntervalIndex()
    ws = [Watcher(None, i, b"k%02d" % i, b"") for i in range(20)]  # type: ignore[arg-type]
    for w in ws:
        idx.add(w)
    for _ in range(IntervalIndex.REBUILD_AFTER + 5):
        assert len(idx.stab(b"k10")) == 11
    assert idx._dirty  # no table was built
    monkeypatch.setattr(IntervalIndex, "MAX_COVER", 1 << 18)
    idx.discard(ws[0])
    for _ in range(IntervalIndex.REBUILD_AFTER + 5):
        assert len(idx.stab(b"k10")) == 10
    assert not idx._dirty
