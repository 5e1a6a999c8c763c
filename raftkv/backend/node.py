"""Decoded B+tree nodes and the pure logic that reshapes them (merge changes, split, join).

A node never touches bytes (``page`` does); a decoded node is immutable once it has been
cached, so every change builds new lists.

Tree shape (bbolt's): a branch holds, for each child, the child's smallest key and page id::

    branch  [ k0 | k3 | k7 ]          child i holds keys in [keys[i], keys[i+1]);
             /     |     \\            child 0 also holds anything below keys[0]
    leaf [k0 k1 k2] [k3 .. k6] [k7 k8]

A commit applies the write buffer's sorted changes to a tree top-down and rebuilds the touched
path bottom-up: a leaf that grows past a page splits (evenly, or packed full when the change
appends at the right edge of the tree, bbolt's fill-percent trick for revision keys); a node
that shrinks below ``MIN_FILL`` joins a neighbour.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from .page import HEADER_SIZE, PAGE_SIZE, ValueRef

__all__ = [
    "CAPACITY",
    "MIN_FILL",
    "TOMBSTONE",
    "Branch",
    "Leaf",
    "child_index",
    "merge_leaf",
    "split_points",
]

CAPACITY = PAGE_SIZE  # a node's target size in bytes (header included)
MIN_FILL = PAGE_SIZE // 4  # below this a node joins a neighbour
ELEM = 12  # element header size of both branch and leaf elements


class _Tombstone:
    __slots__ = ()

    def __repr__(self) -> str:
        return "TOMBSTONE"


#: The write buffer's marker for a deleted key.
TOMBSTONE = _Tombstone()


class Leaf:
    __slots__ = ("keys", "values")
    is_leaf = True

    def __init__(self, keys: list[bytes], values: list) -> None:
        self.keys = keys
        self.values = values

    def size(self) -> int:
        return (
            HEADER_SIZE
            + ELEM * len(self.keys)
            + sum(map(len, self.keys))
            + sum(map(len, self.values))
        )

    def get(self, key: bytes):
        keys = self.keys
        i = bisect_left(keys, key)
        if i < len(keys) and keys[i] == key:
            return self.values[i]
        return None


class Branch:
    __slots__ = ("children", "keys")
    is_leaf = False

    def __init__(self, keys: list[bytes], children: list) -> None:
        self.keys = keys
        self.children = children

    def size(self) -> int:
        return HEADER_SIZE + ELEM * len(self.keys) + sum(map(len, self.keys))


def child_index(keys: list[bytes], key: bytes) -> int:
    """The child of a branch with separator ``keys`` that holds ``key``."""
    i = bisect_right(keys, key) - 1
    return i if i > 0 else 0


def merge_leaf(
    keys: list[bytes], values: list, ch_keys: list[bytes], ch_values: list
) -> tuple[list[bytes], list, list[ValueRef]]:
    """Apply sorted changes (value or TOMBSTONE) to a leaf's elements.

    Returns the new keys and values and the out-of-line values that were replaced or deleted.
    """
    dropped: list[ValueRef] = []
    if not keys or ch_keys[0] > keys[-1]:
        # append fast path (revision keys): nothing to replace
        nk = list(keys)
        nv = list(values)
        for k, v in zip(ch_keys, ch_values, strict=True):
            if v is not TOMBSTONE:
                nk.append(k)
                nv.append(v)
        return nk, nv, dropped
    nk = []
    nv = []
    i = 0
    n = len(keys)
    for k, v in zip(ch_keys, ch_values, strict=True):
        j = bisect_left(keys, k, i)
        if j > i:
            nk.extend(keys[i:j])
            nv.extend(values[i:j])
        i = j
        if i < n and keys[i] == k:
            old = values[i]
            if type(old) is ValueRef:
                dropped.append(old)
            i += 1
        if v is not TOMBSTONE:
            nk.append(k)
            nv.append(v)
    if i < n:
        nk.extend(keys[i:])
        nv.extend(values[i:])
    return nk, nv, dropped


def split_points(sizes: list[int], pack_full: bool, min_elems: int = 1) -> list[int]:
    """Where to cut elements of these sizes (element header included) into nodes.

    Returns the start index of every chunk after the first. ``pack_full`` fills each node to
    ``CAPACITY`` (appends at the right edge); otherwise the chunks are of even size. Every
    chunk gets at least ``min_elems`` elements (a branch needs two to shrink the tree), even
    if that makes it span more than one page.
    """
    room = CAPACITY - HEADER_SIZE
    total = sum(sizes)
    if total <= room:
        return []
    if pack_full:
        target = room
    else:
        chunks = (total + room - 1) // room
        target = (total + chunks - 1) // chunks
    cuts = []
    acc = 0
    for i, s in enumerate(sizes):
        if acc and acc + s > room:
            cuts.append(i)
            acc = 0
        acc += s
        if acc >= target and i + 1 < len(sizes):
            cuts.append(i + 1)
            acc = 0
    if min_elems > 1:
        kept: list[int] = []
        prev = 0
        for c in cuts:
            if c - prev >= min_elems:
                kept.append(c)
                prev = c
        while kept and len(sizes) - kept[-1] < min_elems:
            kept.pop()
        cuts = kept
    return cuts
