"""Freelist: pending pages wait for readers; runs are found or the file grows."""

from raftkv.backend.freelist import Freelist


def test_pages_freed_by_a_tx_wait_until_released():
    fl = Freelist([5])
    fl.free_pages(7, 10, 2)
    assert fl.allocate(1) == 5
    assert fl.allocate(1) == 0  # 10 and 11 are pending
    assert sorted(fl.ids()) == [10, 11]  # but recorded on disk as free
    fl.release(6)
    assert fl.allocate(1) == 0
    fl.release(7)
    assert fl.allocate(2) == 10
    assert len(fl) == 0


def test_contiguous_runs_are_found_and_a_failed_search_is_remembered():
    fl = Freelist([3, 5, 6, 9, 10, 11])
    assert fl.allocate(3) == 9
    assert fl.allocate(3) == 0
    assert fl.allocate(4) == 0  # remembered: no scan
    assert fl.allocate(2) == 5
    fl.free_pages(2, 20, 3)
    fl.release(2)
    assert fl.allocate(3) == 20  # releases forget the failure
    assert list(fl.free) == [3]


def test_give_back_returns_rolled_back_pages():
    fl = Freelist([4, 5])
    assert fl.allocate(2) == 4
    fl.give_back(4, 2)
    assert list(fl.free) == [4, 5]
