"""Go's sort.Sort, ported: sorted output, and Go's own placement of ties."""

import random

from raftkv.mvcc.gosort import go_sort


def test_go_sort_sorts_like_sorted_on_any_input():
    rnd = random.Random(5)
    for n in (0, 1, 2, 12, 13, 49, 50, 51, 200, 1000):
        for spread in (1, 3, n or 1, 10 * n + 1):
            vals = [rnd.randrange(spread) for _ in range(n)]
            for reverse in (False, True):
                got = list(vals)
                go_sort(got, key=lambda v: v, reverse=reverse)
                assert got == sorted(vals, reverse=reverse)


def test_ties_beyond_twelve_elements_are_placed_as_go_places_them():
    # 30 items, 3 distinct values: etcd (go1.19) answered this order for a VALUE sort
    items = [(i, (i * 7) % 3) for i in range(10, 40)]
    go_sort(items, key=lambda x: x[1])
    assert [i for i, _ in items] == [
        21, 39, 12, 36, 33, 15, 30, 27, 18, 24,
        31, 16, 22, 37, 19, 25, 13, 34, 28, 10,
        29, 20, 32, 14, 17, 35, 26, 23, 38, 11,
    ]  # fmt: skip


def test_up_to_twelve_elements_go_sorts_stably_in_both_directions():
    items = [(i, i % 2) for i in range(12)]
    go_sort(items, key=lambda x: x[1], reverse=True)
    assert [i for i, _ in items] == [1, 3, 5, 7, 9, 11, 0, 2, 4, 6, 8, 10]
