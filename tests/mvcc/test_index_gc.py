"""The index's key map stays out of the young generation (see ``index.KeyMap``): otherwise
every gen-0 collection walks the whole index."""

from __future__ import annotations

import gc

from raftkv.mvcc.index import TreeIndex
from raftkv.mvcc.revision import pack


def _in_young_generation(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects(0))


def test_new_keys_do_not_put_the_key_map_back_in_gen0():
    idx = TreeIndex()
    for i in range(1000):
        idx.put(b"k%04d" % i, pack(i + 2))
    gc.collect()  # the map and its tuples are old now; the tuples are untracked
    idx.put(b"new", pack(5000))  # a fresh (tracked) tuple goes in
    assert gc.is_tracked(idx._map)
    assert not _in_young_generation(idx._map)


def test_a_plain_dict_would_be_back_in_gen0():
    """What KeyMap avoids (CPython's dict untracking), so the test above can fail."""
    d = {b"k%04d" % i: (i, i, 1) for i in range(1000)}
    gc.collect()
    assert not gc.is_tracked(d)
    one = len(d) // 1001  # (a tuple built at run time: a constant one is never tracked)
    d[b"new"] = (one, 2, 3)
    assert _in_young_generation(d)


def test_a_restored_index_takes_a_key_map_over_or_makes_one():
    entries = {b"a": (2 << 32, 2 << 32, 1)}
    idx = TreeIndex.restored(entries)
    assert type(idx._map).__name__ == "KeyMap" and idx.get(b"a", 5) == entries[b"a"]
