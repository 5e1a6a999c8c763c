"""Page codecs of the backend page file: struct layouts and checksums, nothing more.

The file is an array of 4 KiB pages. A page, or a run of ``overflow + 1`` contiguous pages
holding one node or one large value, starts with a 32-byte header::

    0        8        16     18     20       24         28         32
    +--------+--------+------+------+--------+----------+----------+---------------- ...
    | pgid   | txid   |flags | rsvd | count  | overflow | checksum | body, zero padded
    | u64    | u64    | u16  | u16  | u32    | u32      | u32      | to the run's end
    +--------+--------+------+------+--------+----------+----------+---------------- ...

``checksum`` is the CRC32 of bytes [0, 28) followed by [32, end of run): it covers the page's own
id (a page written at the wrong offset fails), the txid that wrote it, and the padding. Every
read verifies it (bbolt has no page checksum; raftkv refuses to serve a damaged page).

Bodies by ``flags``::

    META      magic u32 | version u32 | page_size u32 | flags u32 |
              root u64 | freelist u64 | hwm u64 | txid u64            (48 bytes, pages 0 and 1)
    FREELIST  count x pgid u64                                        (count in the header)
    BRANCH    count x (child pgid u64, ksize u32) | key0 key1 ...
    LEAF      count x (flags u32, ksize u32, vsize u32) | key0 value0 key1 value1 ...
              a leaf element with flag VALUE_REF holds (pgid u64, length u64): the value
              lives out of line in an OVERFLOW run (values larger than ``INLINE_MAX``)
    OVERFLOW  the raw value bytes

The meta page is the commit point: its page checksum is the meta checksum. ``root`` is the
root of the tree of buckets (0 = no buckets); each bucket entry's value is (root u64, seq u64).
``hwm`` is the first page id never allocated: the file's pages are [0, hwm).
"""

from __future__ import annotations

import struct
import sys
from array import array
from itertools import chain

# zlib's CRC-32, computed by zlib-ng (carry-less multiply): the same values, ~8x faster per
# 4 KiB page here than the system zlib, and every page read and written is checksummed
from zlib_ng.zlib_ng import crc32

__all__ = [
    "BRANCH",
    "BRANCH_ELEM",
    "BUCKET_VALUE",
    "FREELIST",
    "HEADER",
    "HEADER_SIZE",
    "INLINE_MAX",
    "LEAF",
    "LEAF_ELEM",
    "MAGIC",
    "META",
    "META_BODY",
    "OVERFLOW",
    "PAGE_SIZE",
    "VALUE_REF",
    "VALUE_REF_FLAG",
    "VERSION",
    "LeafRecords",
    "Meta",
    "ValueRef",
    "decode_branch",
    "decode_freelist",
    "decode_leaf",
    "decode_meta",
    "decode_overflow",
    "encode_branch",
    "encode_freelist",
    "encode_leaf",
    "encode_meta",
    "encode_overflow",
    "freelist_pages",
    "leaf_records",
    "pack_records",
    "pages_for",
    "parse_header",
    "verify",
]

PAGE_SIZE = 4096
MAGIC = 0x52414654  # "RAFT"
VERSION = 1

BRANCH = 0x01
LEAF = 0x02
META = 0x04
FREELIST = 0x10
OVERFLOW = 0x20
_KNOWN_FLAGS = (BRANCH, LEAF, META, FREELIST, OVERFLOW)

VALUE_REF_FLAG = 0x01  # leaf element flag: the value is out of line

HEADER = struct.Struct("<QQHHIII")  # pgid, txid, flags, reserved, count, overflow, checksum
_HEAD28 = struct.Struct("<QQHHII")  # the header without its checksum
_CRC = struct.Struct("<I")
_COUNT = struct.Struct("<I")  # at offset 20 of the header
HEADER_SIZE = HEADER.size
META_BODY = struct.Struct("<IIIIQQQQ")
BRANCH_ELEM = struct.Struct("<QI")
LEAF_ELEM = struct.Struct("<III")
VALUE_REF = struct.Struct("<QQ")
BUCKET_VALUE = struct.Struct("<QQ")
assert HEADER_SIZE == 32 and _HEAD28.size == 28
assert struct.calcsize("<QQHHIII") == 32
assert META_BODY.size == 48
assert BRANCH_ELEM.size == 12 and LEAF_ELEM.size == 12
assert VALUE_REF.size == 16 and BUCKET_VALUE.size == 16

#: Values longer than this are stored out of line in an OVERFLOW run.
INLINE_MAX = PAGE_SIZE // 2

_BIG_ENDIAN = sys.byteorder == "big"
assert array("Q").itemsize == 8
_ZEROS = memoryview(bytes(PAGE_SIZE))
_structs: dict[tuple[str, int], struct.Struct] = {}


def _array(code: str, n: int) -> struct.Struct:
    s = _structs.get((code, n))
    if s is None:
        s = _structs[(code, n)] = struct.Struct("<" + code * n)
    return s


def pages_for(body_len: int) -> int:
    """Number of pages a run with a body of ``body_len`` bytes occupies."""
    return (HEADER_SIZE + body_len + PAGE_SIZE - 1) // PAGE_SIZE


def _finish(pgid: int, txid: int, flags: int, count: int, body: bytes, npages: int = 0) -> bytes:
    total = HEADER_SIZE + len(body)
    npages = max(npages, (total + PAGE_SIZE - 1) // PAGE_SIZE)
    pad = npages * PAGE_SIZE - total
    head = _HEAD28.pack(pgid, txid, flags, 0, count, npages - 1)
    crc = crc32(body, crc32(head))
    if not pad:
        return b"".join((head, _CRC.pack(crc), body))
    zeros = _ZEROS[:pad] if pad <= PAGE_SIZE else bytes(pad)
    crc = crc32(zeros, crc)
    return b"".join((head, _CRC.pack(crc), body, zeros))


def parse_header(buf: bytes) -> tuple[int, int, int, int, int, int]:
    """(pgid, txid, flags, count, overflow, checksum) of a page header."""
    pgid, txid, flags, _rsvd, count, overflow, checksum = HEADER.unpack_from(buf, 0)
    return pgid, txid, flags, count, overflow, checksum


def verify(buf: bytes, pgid: int) -> str | None:
    """What is wrong with the run ``buf`` read at ``pgid`` (None when it is sound)."""
    if len(buf) < PAGE_SIZE:
        return f"short read ({len(buf)} bytes)"
    got_id, _txid, flags, _rsvd, _count, overflow, stored = HEADER.unpack_from(buf, 0)
    if len(buf) != (overflow + 1) * PAGE_SIZE:
        return f"run of {overflow + 1} pages but {len(buf)} bytes read"
    mv = memoryview(buf)
    crc = crc32(mv[HEADER_SIZE:], crc32(mv[:28]))
    if crc != stored:
        return f"checksum mismatch (stored {stored:08x}, computed {crc:08x})"
    if got_id != pgid:
        return f"header names page {got_id}"
    if flags not in _KNOWN_FLAGS:
        return f"unknown page flags {flags:#x}"
    return None


# --- meta -------------------------------------------------------------------------------------


class Meta:
    """The commit point: where the tree of buckets and the freelist are, and which txid."""

    __slots__ = ("freelist", "hwm", "root", "txid")

    def __init__(self, root: int, freelist: int, hwm: int, txid: int) -> None:
        self.root = root
        self.freelist = freelist
        self.hwm = hwm
        self.txid = txid

    def copy(self) -> Meta:
        return Meta(self.root, self.freelist, self.hwm, self.txid)

    def __repr__(self) -> str:
        return f"Meta(root={self.root}, freelist={self.freelist}, hwm={self.hwm}, txid={self.txid})"


def encode_meta(pgid: int, meta: Meta) -> bytes:
    body = META_BODY.pack(
        MAGIC, VERSION, PAGE_SIZE, 0, meta.root, meta.freelist, meta.hwm, meta.txid
    )
    return _finish(pgid, meta.txid, META, 0, body)


def decode_meta(buf: bytes, pgid: int) -> Meta | str:
    """The meta in ``buf``, or what is wrong with it."""
    problem = verify(buf, pgid)
    if problem:
        return problem
    flags = parse_header(buf)[2]
    if flags != META:
        return f"not a meta page (flags {flags:#x})"
    magic, version, page_size, _fl, root, freelist, hwm, txid = META_BODY.unpack_from(
        buf, HEADER_SIZE
    )
    if magic != MAGIC:
        return f"bad magic {magic:#x}"
    if version != VERSION:
        return f"unsupported version {version}"
    if page_size != PAGE_SIZE:
        return f"page size {page_size}, expected {PAGE_SIZE}"
    return Meta(root, freelist, hwm, txid)


# --- freelist ---------------------------------------------------------------------------------


def encode_freelist(pgid: int, txid: int, ids: list[int], npages: int = 1) -> bytes:
    """A freelist run of at least ``npages`` pages (zero padded)."""
    arr = array("Q", ids)
    if _BIG_ENDIAN:
        arr.byteswap()
    return _finish(pgid, txid, FREELIST, len(ids), arr.tobytes(), npages)


def decode_freelist(buf: bytes) -> list[int]:
    count = _COUNT.unpack_from(buf, 20)[0]
    arr = array("Q")
    arr.frombytes(buf[HEADER_SIZE : HEADER_SIZE + 8 * count])
    if _BIG_ENDIAN:
        arr.byteswap()
    return arr.tolist()


def freelist_pages(count: int) -> int:
    return pages_for(8 * count)


# --- branch and leaf --------------------------------------------------------------------------


def encode_branch(pgid: int, txid: int, keys: list[bytes], children: list[int]) -> bytes:
    n = len(keys)
    flat: list[int] = []
    for child, key in zip(children, keys, strict=True):
        flat.append(child)
        flat.append(len(key))
    body = _array("QI", n).pack(*flat) + b"".join(keys)
    return _finish(pgid, txid, BRANCH, n, body)


def decode_branch(buf: bytes) -> tuple[list[bytes], list[int]]:
    count = _COUNT.unpack_from(buf, 20)[0]
    flat = _array("QI", count).unpack_from(buf, HEADER_SIZE)
    pos = HEADER_SIZE + 12 * count
    keys = []
    for ks in flat[1::2]:
        keys.append(buf[pos : pos + ks])
        pos += ks
    return keys, list(flat[0::2])


class ValueRef:
    """A leaf value stored out of line: ``npages`` pages from ``pgid``, ``length`` bytes.

    ``len()`` of a ref is the bytes it takes in its leaf, so node sizes add up with ``map(len)``.
    """

    __slots__ = ("length", "pgid")

    def __init__(self, pgid: int, length: int) -> None:
        self.pgid = pgid
        self.length = length

    def __len__(self) -> int:
        return 16

    @property
    def npages(self) -> int:
        return pages_for(self.length)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, ValueRef) and other.pgid == self.pgid and other.length == self.length
        )

    def __hash__(self) -> int:
        return hash((self.pgid, self.length))

    def __repr__(self) -> str:
        return f"ValueRef({self.pgid}, {self.length})"


def encode_leaf(pgid: int, txid: int, keys: list[bytes], values: list) -> bytes:
    n = len(keys)
    flat: list[int] = []
    data: list[bytes] = []
    for key, value in zip(keys, values, strict=True):
        if type(value) is ValueRef:
            value = VALUE_REF.pack(value.pgid, value.length)
            flat.append(VALUE_REF_FLAG)
        else:
            flat.append(0)
        flat.append(len(key))
        flat.append(len(value))
        data.append(key)
        data.append(value)
    body = _array("III", n).pack(*flat) + b"".join(data)
    return _finish(pgid, txid, LEAF, n, body)


def decode_leaf(buf: bytes) -> tuple[list[bytes], list]:
    count = _COUNT.unpack_from(buf, 20)[0]
    flat = _array("III", count).unpack_from(buf, HEADER_SIZE)
    pos = HEADER_SIZE + 12 * count
    keys: list[bytes] = []
    values: list = []
    for i in range(0, 3 * count, 3):
        end = pos + flat[i + 1]
        keys.append(buf[pos:end])
        pos = end + flat[i + 2]
        if flat[i]:
            values.append(ValueRef(*VALUE_REF.unpack_from(buf, end)))
        else:
            values.append(buf[end:pos])
    return keys, values


#: A leaf's elements as stored, not split into objects: (key sizes, value sizes, the bytes
#: key0 value0 key1 value1 ...). The bulk form a scan that rebuilds an index reads: a decoder
#: of the values (msgpack's Unpacker) walks the bytes itself, and only what it builds is made.
LeafRecords = tuple[tuple[int, ...], tuple[int, ...], bytes]


def leaf_records(buf: bytes) -> LeafRecords | None:
    """The records of the leaf run ``buf``; None when a value is out of line (its element
    holds a VALUE_REF, not the value: see ``pack_records``)."""
    count = _COUNT.unpack_from(buf, 20)[0]
    flat = _array("III", count).unpack_from(buf, HEADER_SIZE)
    if any(flat[0::3]):
        return None
    ksizes, vsizes = flat[1::3], flat[2::3]
    pos = HEADER_SIZE + 12 * count
    return ksizes, vsizes, buf[pos : pos + sum(ksizes) + sum(vsizes)]


def pack_records(keys: list[bytes], values: list[bytes]) -> LeafRecords:
    """The records of decoded elements (every value inline)."""
    return (
        tuple(map(len, keys)),
        tuple(map(len, values)),
        b"".join(chain.from_iterable(zip(keys, values, strict=True))),
    )


# --- overflow ---------------------------------------------------------------------------------


def encode_overflow(pgid: int, txid: int, value: bytes) -> bytes:
    return _finish(pgid, txid, OVERFLOW, 0, value)


def decode_overflow(buf: bytes, length: int) -> bytes:
    return buf[HEADER_SIZE : HEADER_SIZE + length]
