from raftkv.mvcc.revision import (
    bytes_to_rev,
    is_tombstone,
    main_of,
    pack,
    rev_to_bytes,
    sub_of,
)


def test_revision_bytes_layout_is_etcds():
    b = rev_to_bytes(5, 2)
    assert b == (5).to_bytes(8, "big") + b"_" + (2).to_bytes(8, "big")
    assert bytes_to_rev(b) == (5, 2)
    assert not is_tombstone(b)
    t = rev_to_bytes(5, 2, tombstone=True)
    assert t == b + b"t" and is_tombstone(t) and bytes_to_rev(t) == (5, 2)


def test_revision_bytes_sort_like_revisions():
    revs = [(1, 0), (1, 1), (2, 0), (255, 3), (256, 0), (2**40, 7)]
    encoded = [rev_to_bytes(m, s) for m, s in revs]
    assert sorted(encoded) == encoded
    # a tombstone sorts after its plain revision and before the next sub revision
    assert rev_to_bytes(3, 1) < rev_to_bytes(3, 1, True) < rev_to_bytes(3, 2)


def test_packed_revisions_order_and_split():
    assert pack(2, 0) > pack(1, 5000)
    r = pack(123456789, 42)
    assert main_of(r) == 123456789 and sub_of(r) == 42
