"""Reading one committed tree: point lookup, seek, and ordered iteration in both directions.

A tree is named by its root page id (0 = empty). Values come back as stored (bytes, or a
``ValueRef`` for an out-of-line value); the caller resolves refs with ``Pager.value``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

from .node import Branch, Leaf, child_index
from .page import LeafRecords, pack_records
from .pager import Pager

__all__ = ["Cursor", "tree_get", "tree_iter", "tree_leaves", "tree_records"]


def tree_get(pager: Pager, root: int, key: bytes):
    if not root:
        return None
    n = pager.node(root)
    while not n.is_leaf:
        n = pager.node(n.children[child_index(n.keys, key)])
    return n.get(key)


def tree_iter(
    pager: Pager, root: int, start: bytes, end: bytes | None, reverse: bool = False
) -> Iterator[tuple[bytes, object]]:
    """(key, stored value) for keys in [start, end) in key order (descending if ``reverse``)."""
    if not root:
        return iter(())
    if reverse:
        return _iter_rev(pager, pager.node(root), start, end)
    return _iter_fwd(pager, pager.node(root), start, end)


def _walk(
    pager: Pager, root: int, start: bytes, read_rest: Callable[[int], Any]
) -> Iterator[tuple[LeafRecords | None, list[bytes], list[Any]]]:
    """(records, keys, values) of each leaf in key order from the first key >= ``start``: a
    leaf after the first is read by ``read_rest`` (records when it returns them, else the
    node's keys and values); the first leaf is a node, cut at ``start``."""
    stack = [root]
    first = True
    while stack:
        n = pager.peek(stack.pop()) if first else read_rest(stack.pop())
        if type(n) is tuple:  # (never empty: a commit drops a leaf left without elements)
            yield n, [], []
            continue
        if not n.is_leaf:
            i = child_index(n.keys, start) if first else 0
            stack.extend(reversed(n.children[i:]))
            continue
        keys, values = n.keys, n.values
        if first:
            first = False
            i = bisect_left(keys, start)
            keys, values = keys[i:], values[i:]
        if keys:
            yield None, keys, values


def tree_leaves(pager: Pager, root: int, start: bytes) -> Iterator[tuple[list[bytes], list]]:
    """(keys, stored values) of each leaf in key order, from the first key >= ``start``: the
    bulk form of ``tree_iter`` (no per-item generator; nodes read are not cached)."""
    if not root:
        return
    for _, keys, values in _walk(pager, root, start, pager.peek):
        yield keys, values


def tree_records(pager: Pager, root: int, start: bytes) -> Iterator[LeafRecords]:
    """The records (``page.LeafRecords``) of each leaf in key order, from the first key >=
    ``start``, out-of-line values read in: the bulk read that rebuilds an index. A leaf read
    from the file is not decoded into keys and values (nor cached); the first one is (to
    find ``start`` in it), as is one found in the node cache, and both are packed again."""
    if not root:
        return
    for records, keys, values in _walk(pager, root, start, pager.peek_records):
        yield (
            records if records is not None else pack_records(keys, [pager.value(v) for v in values])
        )


def _iter_fwd(pager: Pager, n: Leaf | Branch, start: bytes, end: bytes | None):
    if n.is_leaf:
        keys = n.keys
        i = bisect_left(keys, start)
        stop = len(keys) if end is None else bisect_left(keys, end, i)
        yield from zip(keys[i:stop], n.values[i:stop], strict=False)
        return
    keys = n.keys
    i = child_index(keys, start)
    last = len(keys) if end is None else max(child_index(keys, end) + 1, i + 1)
    for j in range(i, last):
        yield from _iter_fwd(pager, pager.node(n.children[j]), start, end)


def _iter_rev(pager: Pager, n: Leaf | Branch, start: bytes, end: bytes | None):
    if n.is_leaf:
        keys = n.keys
        stop = len(keys) if end is None else bisect_left(keys, end)
        i = bisect_left(keys, start, 0, stop)
        yield from zip(reversed(keys[i:stop]), reversed(n.values[i:stop]), strict=True)
        return
    keys = n.keys
    first = child_index(keys, start)
    last = len(keys) - 1 if end is None else child_index(keys, end)
    for j in range(last, first - 1, -1):
        yield from _iter_rev(pager, pager.node(n.children[j]), start, end)


class Cursor:
    """A position in one tree (bbolt's cursor): first/last/seek then next/prev.

    Each call returns (key, value) or None past either end. Valid while the state whose tree
    it walks is pinned (a ``ReadSnapshot``) or, on the writer thread, until the next commit.
    """

    def __init__(self, pager: Pager, root: int) -> None:
        self._pager = pager
        self._root = root
        self._stack: list[tuple[Leaf | Branch, int]] = []

    def _descend(self, n: Leaf | Branch, key: bytes | None, last: bool) -> None:
        pager = self._pager
        while not n.is_leaf:
            i = child_index(n.keys, key) if key is not None else len(n.children) - 1 if last else 0
            self._stack.append((n, i))
            n = pager.node(n.children[i])
        i = bisect_left(n.keys, key) if key is not None else len(n.keys) - 1 if last else 0
        self._stack.append((n, i))

    def _current(self):
        if not self._stack:
            return None
        leaf, i = self._stack[-1]
        if 0 <= i < len(leaf.keys):
            return leaf.keys[i], self._pager.value(leaf.values[i])
        return None

    def first(self):
        self._stack = []
        if not self._root:
            return None
        self._descend(self._pager.node(self._root), None, False)
        return self._current() or self.next()

    def last(self):
        self._stack = []
        if not self._root:
            return None
        self._descend(self._pager.node(self._root), None, True)
        return self._current() or self.prev()

    def seek(self, key: bytes):
        """The first element with a key >= ``key``."""
        self._stack = []
        if not self._root:
            return None
        self._descend(self._pager.node(self._root), key, False)
        cur = self._current()
        return cur if cur is not None else self.next()

    def next(self):
        return self._step(+1)

    def prev(self):
        return self._step(-1)

    def _step(self, d: int):
        stack = self._stack
        if not stack:
            return None
        leaf, i = stack[-1]
        i += d
        if 0 <= i < len(leaf.keys):
            stack[-1] = (leaf, i)
            return leaf.keys[i], self._pager.value(leaf.values[i])
        # climb until a branch has a sibling in direction d, then descend to its edge
        stack.pop()
        while stack:
            br, j = stack.pop()
            j += d
            if 0 <= j < len(br.children):
                stack.append((br, j))
                child = self._pager.node(br.children[j])
                self._descend(child, None, d < 0)
                cur = self._current()
                return cur if cur is not None else self._step(d)
        self._stack = []
        return None
