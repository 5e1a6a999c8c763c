"""The in-memory index: user key -> its revisions, sorted by key (etcd's mvcc/index.go treeIndex).

A dict gives O(1) point lookups and a ``SortedList`` of the same keys ordered range scans (a
``SortedDict``'s two halves, held apart: a restored index takes over the dict its rebuild made
instead of copying it, and changing an existing key's entry is a plain dict store).
Invariant: the sorted list holds exactly the dict's keys.
Ranges follow etcd: ``end is None`` is a single key, ``end == b""`` means every key >= key,
otherwise the half-open interval [key, end).

A key's entry is a ``KeyIndex``, or, for a key with exactly one revision in one live generation
(what most keys hold after a restart or a compaction), the tuple ``(modified, created,
version)`` that ``KeyIndex.get`` would return for it: a tuple of ints is a third of the memory
of a KeyIndex and its Generation, costs one allocation to rebuild, and the garbage collector
stops tracking it. The first change to such a key turns its entry into the KeyIndex it stands
for (``KeyIndex.restored``); compaction turns a KeyIndex left with one revision back into a
tuple. Nothing outside this module sees the tuples: ``key_index()`` hands out KeyIndex only.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from sortedcontainers import SortedList

from raftkv.mvcc.key_index import KeyIndex, RevisionNotFoundError
from raftkv.mvcc.revision import SUB_BITS

__all__ = ["Entry", "KeyMap", "TreeIndex"]

_SORT_PIECE = 20_000  # keys sorted by one C call when the loop must keep running

#: One key's index entry: a KeyIndex, or (modified, created, version) of its only revision.
Entry = KeyIndex | tuple[int, int, int]

_restored = KeyIndex.restored


class KeyMap(dict):
    """The index's key -> entry dict; a subclass only so the cyclic collector never untracks it.

    CPython untracks an exact dict whose keys and values are all untracked (bytes keys, the
    tuples of ints once a collection has seen them) and tracks it again as a new object when a
    tracked value goes in (every fresh tuple is): the dict of millions of keys then sits in
    the youngest generation, and the next gen-0 collection walks all of it. Measured with
    600k keys: gen-0 pauses up to 14 ms with a dict, under 0.1 ms with this subclass, which
    the collector leaves tracked in its old generation (in the frozen one after a start)."""

    __slots__ = ()


class TreeIndex:
    __slots__ = ("_keys", "_map")

    def __init__(self) -> None:
        self._map: dict[bytes, Entry] = KeyMap()
        self._keys = SortedList()

    @classmethod
    def restored(cls, entries: dict[bytes, Entry], *, in_thread: bool = False) -> TreeIndex:
        """An index holding ``entries`` (taken over, not copied: the caller drops it); its keys
        are sorted once, in one bulk load. ``in_thread``: built by a worker thread while the
        event loop runs, so no single C call may hold the GIL for long: one ``sorted()`` of 1M
        keys holds it ~0.5 s, pieces of ``_SORT_PIECE`` keys merged in Python hold it ~4 ms
        each (the bulk load's final sort of sorted keys is one linear pass)."""
        index = cls()
        index._map = entries if type(entries) is KeyMap else KeyMap(entries)
        if in_thread:
            keys = list(entries)
            pieces = [sorted(keys[i : i + _SORT_PIECE]) for i in range(0, len(keys), _SORT_PIECE)]
            index._keys = SortedList(heapq.merge(*pieces))
        else:
            index._keys = SortedList(entries)
        return index

    def __len__(self) -> int:
        return len(self._map)

    def sorted_items(self) -> tuple[list[bytes], list[Entry]]:
        """Every key in order, and the entries in the same order (``restored`` takes them back
        as a dict built in that order)."""
        keys = list(self._keys)
        m = self._map
        return keys, [m[k] for k in keys]

    def get(self, key: bytes, at: int) -> tuple[int, int, int] | None:
        """(modified, created, version) of key at main revision ``at``, or None."""
        e = self._map.get(key)
        if e is None:
            return None
        if type(e) is tuple:
            return e if e[0] >> SUB_BITS <= at else None
        try:
            return e.get(at)
        except RevisionNotFoundError:
            return None

    def key_index(self, key: bytes) -> KeyIndex | None:
        e = self._map.get(key)
        if type(e) is tuple:
            e = self._map[key] = _restored(key, e[1], e[0], e[2])
        return e

    def has_revision(self, key: bytes, rev: int) -> bool:
        """The key's index still holds revision ``rev`` (compaction has not dropped it)."""
        e = self._map.get(key)
        if e is None:
            return False
        if type(e) is tuple:
            return e[0] == rev
        return any(g and g[0] <= rev <= g[-1] and rev in g for g in e)

    def put(self, key: bytes, rev: int) -> None:
        m = self._map
        e = m.get(key)
        if e is None:
            m[key] = (rev, rev, 1)  # a new key: KeyIndex(key).put(rev), compactly
            self._keys.add(key)
        else:
            if type(e) is tuple:
                e = m[key] = _restored(key, e[1], e[0], e[2])
            e.put(rev)

    def tombstone(self, key: bytes, rev: int) -> None:
        ki = self.key_index(key)
        if ki is None:
            raise RevisionNotFoundError
        ki.tombstone(rev)

    def insert(self, ki: KeyIndex) -> None:
        if ki.key not in self._map:
            self._keys.add(ki.key)
        self._map[ki.key] = ki

    def _visit(self, key: bytes, end: bytes) -> Iterator[tuple[bytes, Entry]]:
        if end:
            if key >= end:
                return iter(())
            keys = self._keys.irange(key, end, (True, False))
        else:
            keys = self._keys.irange(key)
        get = self._map.__getitem__
        return ((k, get(k)) for k in keys)

    def revisions(self, key: bytes, end: bytes | None, at: int) -> list[tuple[bytes, int]]:
        """(key, modified revision) of every key in the range that exists at ``at``."""
        if end is None:
            got = self.get(key, at)
            return [] if got is None else [(key, got[0])]
        out = []
        append = out.append
        for k, e in self._visit(key, end):
            if type(e) is tuple:
                if e[0] >> SUB_BITS <= at:
                    append((k, e[0]))
                continue
            try:  # noqa: SIM105 (hot loop: try is cheaper than contextlib.suppress)
                append((k, e.get(at)[0]))
            except RevisionNotFoundError:
                pass
        return out

    def count(self, key: bytes, end: bytes | None, at: int) -> int:
        if end is None:
            return 0 if self.get(key, at) is None else 1
        n = 0
        for _, e in self._visit(key, end):
            if type(e) is tuple:
                n += e[0] >> SUB_BITS <= at
                continue
            try:
                e.get(at)
                n += 1
            except RevisionNotFoundError:
                pass
        return n

    def compact(self, at: int, available: set[int] | None = None) -> None:
        """Compact every key at main revision ``at``; keys left empty leave the index."""
        self._compact_keys(list(self._keys), at, available)

    def compact_some(self, at: int, after: bytes | None, limit: int) -> bytes | None:
        """Compact up to ``limit`` keys after key ``after`` (None: from the first); returns
        the last key done, or None when no key is left. Keys created meanwhile hold only
        revisions above ``at``: skipping or revisiting them is harmless."""
        sl = self._keys
        keys = sl.irange(after, inclusive=(False, False)) if after is not None else iter(sl)
        done = []
        for k in keys:
            done.append(k)
            if len(done) == limit:
                break
        if not done:
            return None
        self._compact_keys(done, at, None)
        return done[-1]

    def _compact_keys(self, keys: list[bytes], at: int, available: set[int] | None) -> None:
        tree = self._map
        for k in keys:
            e = tree[k]
            if type(e) is tuple:  # one live revision: nothing to drop
                if available is not None and e[0] >> SUB_BITS <= at:
                    available.add(e[0])
                continue
            if len(e) == 1 and len(e[0]) == 1:
                g = e[0]
                if available is not None and g[0] >> SUB_BITS <= at:
                    available.add(g[0])
                tree[k] = (g[0], g.created, g.ver)
                continue
            e.compact(at, available)
            if e.is_empty():
                del tree[k]
                self._keys.remove(k)
            elif len(e) == 1 and len(e[0]) == 1:
                g = e[0]
                tree[k] = (g[0], g.created, g.ver)

    def keep(self, at: int) -> set[int]:
        """The revisions a compaction at ``at`` would keep (etcd's Keep, for HashKV)."""
        available: set[int] = set()
        for e in self._map.values():
            if type(e) is tuple:
                if e[0] >> SUB_BITS <= at:
                    available.add(e[0])
            else:
                e.keep(at, available)
        return available

    def key_indexes(self) -> Iterator[KeyIndex]:
        """Every key's KeyIndex in key order (tuple entries expanded into fresh copies)."""
        m = self._map
        for k in self._keys:
            e = m[k]
            yield _restored(k, e[1], e[0], e[2]) if type(e) is tuple else e

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TreeIndex) or len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self.key_indexes(), other.key_indexes(), strict=True))
