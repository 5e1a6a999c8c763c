"""Key-range permissions merged per user, and the interval checks etcd 3.4 makes with them
(auth/range_perm_cache.go over pkg/adt's interval tree).

A permission covers ``[key, range_end)``; an empty ``range_end`` is the single key (the
interval ``[key, key + "\\0")``), and ``"\\0"`` is open-ended: every key from ``key`` on. Bounds
compare as etcd's BytesAffineComparable does: the empty bound is above every key.

- a single key is permitted when some interval of the right kind *intersects* its point;
- a range ``[key, range_end)`` when the intervals that overlap it are contiguous (touching is
  enough) and together cover it from its start to its end.

A user's permissions are the union over its roles; READWRITE counts as both READ and WRITE.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cmp_to_key

from raftkv.pb.auth import Permission, PermissionType

__all__ = ["Interval", "UserPerms", "merge"]

Interval = tuple[bytes, bytes]  # (begin, end); end b"" = above every key


def _cmp(a: bytes, b: bytes) -> int:
    """BytesAffineComparable: the empty slice is greater than any other."""
    if not a:
        return 0 if not b else 1
    if not b:
        return -1
    return (a > b) - (a < b)


def _overlaps(x: Interval, y: Interval) -> bool:
    """adt's Interval.Compare(x, y) == 0."""
    if _cmp(x[0], y[0]) < 0 and _cmp(x[1], y[0]) <= 0:
        return False
    return _cmp(x[0], y[1]) < 0


def _point(key: bytes) -> Interval:
    return (key, key + b"\x00")


def perm_interval(p: Permission) -> Interval:
    if not p.range_end:
        return _point(p.key)
    return (p.key, b"" if p.range_end == b"\x00" else p.range_end)


_by_begin = cmp_to_key(lambda a, b: _cmp(a[0], b[0]))


@dataclass(slots=True)
class UserPerms:
    read: list[Interval] = field(default_factory=list)
    write: list[Interval] = field(default_factory=list)

    def permits(self, key: bytes, range_end: bytes, kind: PermissionType) -> bool:
        ivls = self.read if kind == PermissionType.READ else self.write
        if not range_end:
            pt = _point(key)
            return any(_overlaps(pt, i) for i in ivls)
        want = (key, b"" if range_end == b"\x00" else range_end)
        hits = sorted((i for i in ivls if _overlaps(want, i)), key=_by_begin)
        if not hits:
            return False
        begin, end = hits[0]
        for b, e in hits[1:]:
            if _cmp(end, b) < 0:
                return False  # a gap
            if _cmp(e, end) > 0:
                end = e
        return _cmp(end, want[1]) >= 0 and _cmp(begin, want[0]) <= 0


def merge(perms: Iterable[Permission]) -> UserPerms:
    """The union of ``perms`` (the permissions of every role of one user)."""
    out = UserPerms()
    for p in perms:
        ivl = perm_interval(p)
        if p.permType in (PermissionType.READ, PermissionType.READWRITE):
            out.read.append(ivl)
        if p.permType in (PermissionType.WRITE, PermissionType.READWRITE):
            out.write.append(ivl)
    return out
