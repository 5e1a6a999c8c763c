"""Pure node logic: merging sorted changes into a leaf, and where nodes are cut."""

import itertools

from raftkv.backend.node import CAPACITY, TOMBSTONE, child_index, merge_leaf, split_points
from raftkv.backend.page import HEADER_SIZE, ValueRef


def test_merge_inserts_replaces_and_deletes_in_order():
    keys = [b"b", b"d", b"f"]
    values = [b"B", ValueRef(9, 5000), b"F"]
    nk, nv, dropped = merge_leaf(
        keys, values, [b"a", b"d", b"e", b"f"], [b"A", b"D", b"E", TOMBSTONE]
    )
    assert nk == [b"a", b"b", b"d", b"e"]
    assert nv == [b"A", b"B", b"D", b"E"]
    assert dropped == [ValueRef(9, 5000)]
    assert keys == [b"b", b"d", b"f"]  # inputs untouched (cached nodes are shared)


def test_merge_append_fast_path_skips_tombstones_of_absent_keys():
    nk, nv, dropped = merge_leaf([b"a"], [b"1"], [b"b", b"c"], [TOMBSTONE, b"3"])
    assert (nk, nv, dropped) == ([b"a", b"c"], [b"1", b"3"], [])


def test_child_index_routes_below_first_separator_to_child_zero():
    keys = [b"c", b"f", b"k"]
    assert [child_index(keys, k) for k in (b"a", b"c", b"e", b"f", b"z")] == [0, 0, 0, 1, 2]


def test_small_nodes_are_not_split():
    assert split_points([100] * 10, False) == []


def test_even_split_makes_chunks_of_similar_size():
    sizes = [300] * 20  # 6000 bytes: two nodes of ~3000
    cuts = split_points(sizes, False)
    assert cuts == [10]


def test_pack_full_fills_nodes_to_capacity_for_appends():
    sizes = [285] * 100
    cuts = split_points(sizes, True)
    per_node = (CAPACITY - HEADER_SIZE) // 285
    assert cuts[0] == per_node
    assert all(b - a == per_node for a, b in itertools.pairwise(cuts))


def test_every_chunk_fits_a_page_unless_one_element_is_bigger():
    sizes = [1000, 3900, 50, 50, 2000, 2000, 2000]
    cuts = split_points(sizes, False)
    bounds = [0, *cuts, len(sizes)]
    for a, b in itertools.pairwise(bounds):
        assert b > a
        assert sum(sizes[a:b]) <= CAPACITY - HEADER_SIZE or b - a == 1
