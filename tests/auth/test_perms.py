"""Key-range permission checks (raftkv.auth.perms), against the cases etcd 3.4's own
range_perm_cache_test.go and the interval rules it documents."""

from __future__ import annotations

import pytest

from raftkv.auth.perms import merge
from raftkv.pb.auth import Permission, PermissionType

R, W, RW = PermissionType.READ, PermissionType.WRITE, PermissionType.READWRITE


def perms(*ps: tuple[PermissionType, bytes, bytes]):
    return merge(Permission(permType=t, key=k, range_end=e) for t, k, e in ps)


@pytest.mark.parametrize(
    ("granted", "key", "end", "ok"),
    [
        # etcd's TestRangePermission
        ([(R, b"a", b"c"), (R, b"x", b"z")], b"a", b"z", False),
        ([(R, b"a", b"f"), (R, b"c", b"d"), (R, b"f", b"z")], b"a", b"z", True),
        ([(R, b"a", b"d"), (R, b"a", b"b"), (R, b"c", b"f")], b"a", b"f", True),
        ([(R, b"a", b"d"), (R, b"a", b"b"), (R, b"c", b"f")], b"a", b"g", False),
        # a prefix
        ([(R, b"r/", b"r0")], b"r/", b"r0", True),
        ([(R, b"r/", b"r0")], b"r/a", b"r/b", True),
        ([(R, b"r/", b"r0")], b"r", b"r0", False),
        # open-ended "\0": every key from its key on
        ([(R, b"z", b"\x00")], b"z", b"\x00", True),
        ([(R, b"z", b"\x00")], b"zz", b"\x00", True),
        ([(R, b"z", b"\x00")], b"y", b"\x00", False),
        ([(R, b"a", b"m"), (R, b"m", b"\x00")], b"b", b"\x00", True),  # touching is contiguous
        ([(R, b"a", b"z")], b"a", b"\x00", False),
        # a single-key permission covers no range but its own point
        ([(R, b"s", b"")], b"s", b"s\x00", True),
        ([(R, b"s", b"")], b"s", b"t", False),
    ],
)
def test_range(granted, key, end, ok):
    assert perms(*granted).permits(key, end, R) is ok


@pytest.mark.parametrize(
    ("granted", "key", "ok"),
    [
        ([(R, b"a", b"c")], b"b", True),
        ([(R, b"a", b"c")], b"c", False),
        ([(R, b"s", b"")], b"s", True),
        ([(R, b"s", b"")], b"s/1", False),
        ([(R, b"z", b"\x00")], b"zzz", True),
        ([(R, b"z", b"\x00")], b"y", False),
    ],
)
def test_key(granted, key, ok):
    assert perms(*granted).permits(key, b"", R) is ok


def test_readwrite_counts_for_both_and_the_kinds_are_apart():
    p = perms((RW, b"w/", b"w0"), (R, b"r/", b"r0"), (W, b"s", b""))
    assert p.permits(b"w/1", b"", R) and p.permits(b"w/1", b"", W)
    assert p.permits(b"r/1", b"", R) and not p.permits(b"r/1", b"", W)
    assert p.permits(b"s", b"", W) and not p.permits(b"s", b"", R)
    assert not perms().permits(b"a", b"", R)
