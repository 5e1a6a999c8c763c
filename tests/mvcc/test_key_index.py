import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.mvcc.index import TreeIndex
from raftkv.mvcc.key_index import Generation, KeyIndex, RevisionNotFoundError
from raftkv.mvcc.revision import pack


def gen(created: int, ver: int, *revs: int) -> Generation:
    return Generation(pack(created), ver, [pack(r) for r in revs])


def docstring_example() -> KeyIndex:
    """put(1.0); put(2.0); tombstone(3.0); put(4.0); tombstone(5.0) on "foo"."""
    ki = KeyIndex(b"foo")
    ki.put(pack(1))
    ki.put(pack(2))
    ki.tombstone(pack(3))
    ki.put(pack(4))
    ki.tombstone(pack(5))
    return ki


def test_key_index_docstring_example_generations():
    ki = docstring_example()
    assert ki.modified == pack(5)
    assert list(ki.generations) == [gen(1, 3, 1, 2, 3), gen(4, 2, 4, 5), Generation()]


@pytest.mark.parametrize(
    ("at", "generations", "kept"),
    [
        (2, [gen(1, 3, 2, 3), gen(4, 2, 4, 5), Generation()], {2}),
        (4, [gen(4, 2, 4, 5), Generation()], {4}),
        (5, [Generation()], set()),  # -> key removed
        (6, [Generation()], set()),  # -> key removed
    ],
)
def test_key_index_docstring_example_compaction(at, generations, kept):
    ki = docstring_example()
    available: set[int] = set()
    ki.compact(at, available)
    # created/ver of a generation are untouched by compaction; compare revisions
    assert [g.revs for g in ki.generations] == [g.revs for g in generations]
    assert available == {pack(r) for r in kept}
    assert ki.is_empty() == (at >= 5)
    keep: set[int] = set()
    docstring_example().keep(at, keep)
    assert keep == available


def test_key_index_compaction_at_each_step_in_sequence():
    """Compacting at 2, then 4, then 5 walks the drawing's rows in order."""
    ki = docstring_example()
    ki.compact(2)
    assert [len(g.revs) for g in ki.generations] == [2, 2, 0]
    ki.compact(4)
    assert [len(g.revs) for g in ki.generations] == [2, 0]
    ki.compact(5)
    assert ki.is_empty()


def test_key_index_get_versions_and_gaps():
    ki = docstring_example()
    assert ki.get(1) == (pack(1), pack(1), 1)
    assert ki.get(2) == (pack(2), pack(1), 2)
    for at in (0, 3, 5, 6):
        with pytest.raises(RevisionNotFoundError):
            ki.get(at)
    assert ki.get(4) == (pack(4), pack(4), 1)


def test_tombstone_on_ended_generation_is_not_found():
    ki = KeyIndex(b"k")
    ki.put(pack(1))
    ki.tombstone(pack(2))
    with pytest.raises(RevisionNotFoundError):
        ki.tombstone(pack(3))


def test_put_with_smaller_revision_is_refused():
    ki = KeyIndex(b"k")
    ki.put(pack(5))
    with pytest.raises(ValueError):
        ki.put(pack(4))


# a random life of one key: True = put, False = delete (only when it exists)
lives = st.lists(st.booleans(), min_size=1, max_size=25)


def _build(life: list[bool]) -> tuple[KeyIndex, dict[int, tuple[int, int, int] | None]]:
    ki = KeyIndex(b"k")
    truth: dict[int, tuple[int, int, int] | None] = {}
    exists, created, ver, last = False, 0, 0, None
    rev = 1
    for is_put in life:
        rev += 1
        if is_put:
            ki.put(pack(rev))
            if not exists:
                created, ver = rev, 0
            exists, ver, last = True, ver + 1, rev
        elif exists:
            ki.tombstone(pack(rev))
            exists = False
        truth[rev] = (pack(last), pack(created), ver) if exists else None
    truth[1] = None
    return ki, truth


@settings(max_examples=150, deadline=None)
@given(lives, st.integers(min_value=1, max_value=30))
def test_compaction_keeps_every_read_at_or_after_its_revision(life, at):
    ki, truth = _build(life)
    last_rev = max(truth)
    keep: set[int] = set()
    ki.keep(at, keep)
    available: set[int] = set()
    if ki.is_empty():
        return
    ki.compact(at, available)
    assert keep == available
    for r in range(at, last_rev + 1):
        want = truth[min(r, last_rev)]
        if ki.is_empty():
            assert want is None
            continue
        try:
            got = ki.get(r)
        except RevisionNotFoundError:
            got = None
        if want is None:
            assert got is None
        else:
            assert got[0] == want[0] and got[2] == want[2]
    # nothing <= at survives but the revisions reads at ``at`` need
    left = {r for g in ki.generations for r in g.revs if (r >> 32) <= at}
    assert left == available


def test_tree_index_ranges_single_key_from_key_and_interval():
    ti = TreeIndex()
    for i, k in enumerate([b"a", b"b", b"c", b"d"]):
        ti.put(k, pack(i + 2))
    ti.tombstone(b"c", pack(6))
    assert [k for k, _ in ti.revisions(b"b", None, 6)] == [b"b"]
    assert [k for k, _ in ti.revisions(b"b", b"", 6)] == [b"b", b"d"]
    assert [k for k, _ in ti.revisions(b"a", b"c", 6)] == [b"a", b"b"]
    assert [k for k, _ in ti.revisions(b"b", b"", 5)] == [b"b", b"c", b"d"]
    assert ti.revisions(b"c", b"a", 6) == []
    assert ti.count(b"a", b"", 6) == 3
    ti.compact(6)
    assert ti.key_index(b"c") is None
    assert len(ti) == 3


def test_tree_index_compact_entries_read_like_the_key_indexes_they_stand_for():
    """Keys with one revision are kept compactly (see mvcc.index); every read and compaction
    answers as a KeyIndex-only index does, and key_index() hands out the KeyIndex itself."""
    compact, plain = TreeIndex(), TreeIndex()
    for i, key in enumerate([b"a", b"b", b"c", b"d"]):
        compact.put(key, pack(2 + i))
        ki = KeyIndex(key)
        ki.put(pack(2 + i))
        plain.insert(ki)
    for ti in (compact, plain):
        ti.put(b"b", pack(6))
        ti.tombstone(b"c", pack(7))
    assert compact == plain
    for at in range(1, 9):
        for key in (b"a", b"b", b"c", b"d", b"e"):
            assert compact.get(key, at) == plain.get(key, at)
        assert compact.revisions(b"a", b"", at) == plain.revisions(b"a", b"", at)
        assert compact.count(b"a", b"z", at) == plain.count(b"a", b"z", at)
        assert compact.keep(at) == plain.keep(at)
    assert compact.has_revision(b"a", pack(2)) and not compact.has_revision(b"a", pack(3))
    compact.compact(7)
    plain.compact(7)
    assert compact == plain and len(compact) == 3  # c: its tombstone was the last, gone
    ki = compact.key_index(b"b")
    assert isinstance(ki, KeyIndex) and ki.get(8) == (pack(6), pack(3), 2)
    assert compact.key_index(b"b") is ki
