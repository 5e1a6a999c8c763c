"""The in-memory index: user key -> KeyIndex, sorted by key (etcd's mvcc/index.go treeIndex).

A ``SortedDict`` gives O(1) point lookups (its dict) and ordered range scans (its key list).
Ranges follow etcd: ``end is None`` is a single key, ``end == b""`` means every key >= key,
otherwise the half-open interval [key, end).
"""

from __future__ import annotations

from collections.abc import Iterator

from sortedcontainers import SortedDict

from raftkv.mvcc.key_index import KeyIndex, RevisionNotFoundError
from raftkv.mvcc.revision import main_of

__all__ = ["TreeIndex"]


class TreeIndex:
    __slots__ = ("_tree",)

    def __init__(self) -> None:
        self._tree: SortedDict = SortedDict()

    def __len__(self) -> int:
        return len(self._tree)

    def get(self, key: bytes, at: int) -> tuple[int, int, int] | None:
        """(modified, created, version) of key at main revision ``at``, or None."""
        ki = self._tree.get(key)
        if ki is None:
            return None
        try:
            return ki.get(at)
        except RevisionNotFoundError:
            return None

    def key_index(self, key: bytes) -> KeyIndex | None:
        return self._tree.get(key)

    def put(self, key: bytes, rev: int) -> None:
        ki = self._tree.get(key)
        if ki is None:
            ki = KeyIndex(key)
            ki.put(rev)
            self._tree[key] = ki
        else:
            ki.put(rev)

    def tombstone(self, key: bytes, rev: int) -> None:
        ki = self._tree.get(key)
        if ki is None:
            raise RevisionNotFoundError
        ki.tombstone(rev)

    def insert(self, ki: KeyIndex) -> None:
        self._tree[ki.key] = ki

    def _visit(self, key: bytes, end: bytes) -> Iterator[KeyIndex]:
        tree = self._tree
        if end:
            if key >= end:
                return iter(())
            keys = tree.irange(key, end, (True, False))
        else:
            keys = tree.irange(key)
        return map(tree.__getitem__, keys)

    def revisions(self, key: bytes, end: bytes | None, at: int) -> list[tuple[bytes, int]]:
        """(key, modified revision) of every key in the range that exists at ``at``."""
        if end is None:
            got = self.get(key, at)
            return [] if got is None else [(key, got[0])]
        out = []
        append = out.append
        for ki in self._visit(key, end):
            try:  # noqa: SIM105 (hot loop: try is cheaper than contextlib.suppress)
                append((ki.key, ki.get(at)[0]))
            except RevisionNotFoundError:
                pass
        return out

    def count(self, key: bytes, end: bytes | None, at: int) -> int:
        if end is None:
            return 0 if self.get(key, at) is None else 1
        n = 0
        for ki in self._visit(key, end):
            try:
                ki.get(at)
                n += 1
            except RevisionNotFoundError:
                pass
        return n

    def compact(self, at: int, available: set[int] | None = None) -> None:
        """Compact every key at main revision ``at``; keys left empty leave the index."""
        tree = self._tree
        empty = []
        for ki in tree.values():
            gens = ki.generations
            # nothing to drop: one live generation whose first revision is the only one <= at
            if len(gens) == 1 and len(gens[0].revs) == 1:
                if available is not None and main_of(gens[0].revs[0]) <= at:
                    available.add(gens[0].revs[0])
                continue
            ki.compact(at, available)
            if ki.is_empty():
                empty.append(ki.key)
        for k in empty:
            del tree[k]

    def compact_some(self, at: int, after: bytes | None, limit: int) -> bytes | None:
        """Compact up to ``limit`` keys after key ``after`` (None: from the first); returns
        the last key done, or None when no key is left. Keys created meanwhile hold only
        revisions above ``at``: skipping or revisiting them is harmless."""
        tree = self._tree
        keys = tree.irange(after, inclusive=(False, False)) if after is not None else iter(tree)
        done = []
        for k in keys:
            done.append(k)
            if len(done) == limit:
                break
        if not done:
            return None
        for k in done:
            ki = tree[k]
            if len(ki) == 1 and len(ki[0]) == 1:
                continue  # one live revision: nothing to drop
            ki.compact(at)
            if ki.is_empty():
                del tree[k]
        return done[-1]

    def keep(self, at: int) -> set[int]:
        """The revisions a compaction at ``at`` would keep (etcd's Keep, for HashKV)."""
        available: set[int] = set()
        for ki in self._tree.values():
            ki.keep(at, available)
        return available

    def items(self) -> Iterator[KeyIndex]:
        return iter(self._tree.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TreeIndex) or len(self) != len(other):
            return False
        return all(other._tree.get(k) == ki for k, ki in self._tree.items())
