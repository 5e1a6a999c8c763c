"""Revisions: (main, sub) pairs, packed into one int in memory and 17 bytes on disk.

A write transaction takes the next *main* revision; each change inside it takes the next *sub*
revision (0, 1, 2 ...). Revisions order by main, then sub.

In memory a revision is one Python int ``main << 32 | sub`` (an int is smaller and compares
faster than a tuple; no transaction holds 2**32 changes). On disk, as the key of the backend's
``key`` bucket, it is etcd's layout, so the newest revisions sit at the right edge and writes
append::

    0        8   9        17  18
    +--------+---+--------+---+
    |  main  | _ |  sub   | t |     main, sub: unsigned 64-bit big-endian
    +--------+---+--------+---+     t: present only on tombstones (deletes)
"""

from __future__ import annotations

import struct

__all__ = [
    "MARK_TOMBSTONE",
    "REV_BYTES_LEN",
    "REV_STRUCT",
    "SUB_BITS",
    "bytes_to_rev",
    "is_tombstone",
    "main_of",
    "pack",
    "rev_to_bytes",
    "sub_of",
]

SUB_BITS = 32
_SUB_MASK = (1 << SUB_BITS) - 1
REV_BYTES_LEN = 17
MARK_TOMBSTONE = b"t"

REV_STRUCT = _REV = struct.Struct(">QcQ")  # main, b"_", sub
assert _REV.size == REV_BYTES_LEN


def pack(main: int, sub: int = 0) -> int:
    """The in-memory form of revision (main, sub)."""
    return (main << SUB_BITS) | sub


def main_of(rev: int) -> int:
    return rev >> SUB_BITS


def sub_of(rev: int) -> int:
    return rev & _SUB_MASK


def rev_to_bytes(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    """The backend key of revision (main, sub), with the tombstone mark when asked."""
    b = _REV.pack(main, b"_", sub)
    return b + MARK_TOMBSTONE if tombstone else b


def bytes_to_rev(b: bytes) -> tuple[int, int]:
    """(main, sub) of a backend key (the tombstone mark, if any, is ignored)."""
    main, _, sub = _REV.unpack_from(b)
    return main, sub


def is_tombstone(b: bytes) -> bool:
    return len(b) == REV_BYTES_LEN + 1 and b[REV_BYTES_LEN] == 0x74  # b"t"
