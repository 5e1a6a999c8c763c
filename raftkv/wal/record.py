"""WAL record framing and payload codecs: the bytes of one record, nothing about files.

One record on disk (every field little-endian, every frame a multiple of 8 bytes)::

    offset  size  field
    0       8     frame word: bits 0..55  = record length R (8 + len(data))
                              bits 56..63 = 0x80 | pad  when pad > 0, else 0
    8       1     type      (METADATA=1, ENTRY=2, STATE=3, CRC=4, SNAPSHOT=5)
    9       3     reserved  (zero)
    12      4     crc       CRC32 chained over records, see below
    16      D     data      (D = R - 8)
    16+D    pad   zero bytes, pad = (-D) % 8, so the next frame starts 8-byte aligned

    frame:  | word (8) | type | 0 0 0 | crc (4) | data ............ | pad |
            '--------'  '--------- record (R bytes) ---------------'

The CRC chain: for every record but CRC, ``crc = crc32(data, crc32(type_byte, prev))`` where
``prev`` is the crc field of the record before it (in any segment; 0 before the first). A CRC
record carries the running crc itself in its crc field and has no data; it is the first record
of every segment, so a segment can be verified on its own and checked against its predecessor.
The type byte is inside the chain (etcd's covers the data only): a flipped type bit would
otherwise turn an entry into a valid-looking hard state.

Payloads:
- METADATA: opaque bytes chosen by the server (cluster id, member id), same in every segment.
- ENTRY:    ``raftkv.raft.messages.encode_entry``.
- STATE:    ``encode_hard_state``.
- SNAPSHOT: the WAL snapshot marker, ``struct '<QQ'`` = (index, term).
- CRC:      empty.

A zero frame word marks the end of what was written (segments are preallocated with zeros).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from zlib_ng.zlib_ng import crc32  # (zlib-ng: the same CRC-32 as zlib, faster)

__all__ = [
    "FRAME",
    "HEADER_SIZE",
    "LENGTH_MASK",
    "SNAP_MARKER",
    "Record",
    "RecordType",
    "WalSnapshot",
    "decode_frame_word",
    "decode_snapshot_marker",
    "encode_frame_word",
    "encode_snapshot_marker",
    "record_crc",
]


class RecordType(IntEnum):
    METADATA = 1
    ENTRY = 2
    STATE = 3
    CRC = 4
    SNAPSHOT = 5


@dataclass(frozen=True, slots=True)
class WalSnapshot:
    """A snapshot marker: the log is compacted up to ``index`` (whose entry had ``term``)."""

    index: int
    term: int


@dataclass(frozen=True, slots=True)
class Record:
    type: int
    crc: int
    data: bytes
    offset: int = 0  # where its frame word starts in its segment (for errors and tests)


# frame word, type, reserved, crc
FRAME = struct.Struct("<QB3xI")
HEADER_SIZE = FRAME.size  # 16: the frame word plus the 8-byte record header
RECORD_HEADER = HEADER_SIZE - 8
LENGTH_MASK = (1 << 56) - 1
SNAP_MARKER = struct.Struct("<QQ")
assert HEADER_SIZE == 16 and SNAP_MARKER.size == 16

TYPE_BYTES = {int(t): bytes([t]) for t in RecordType}
ZEROS = bytes(8)


def encode_frame_word(record_len: int) -> tuple[int, int]:
    """(frame word, pad bytes) for a record of ``record_len`` bytes."""
    pad = -record_len & 7
    word = record_len | ((0x80 | pad) << 56) if pad else record_len
    return word, pad


def decode_frame_word(word: int) -> tuple[int, int]:
    """(record length, pad bytes) of a frame word."""
    pad = (word >> 56) & 0x7 if word >> 63 else 0
    return word & LENGTH_MASK, pad


def record_crc(rtype: int, data: bytes | memoryview, prev: int) -> int:
    """The chained CRC of a non-CRC record (the type byte, then the data)."""
    return crc32(data, crc32(TYPE_BYTES[rtype], prev))


def encode_snapshot_marker(snap: WalSnapshot) -> bytes:
    return SNAP_MARKER.pack(snap.index, snap.term)


def decode_snapshot_marker(data: bytes) -> WalSnapshot:
    index, term = SNAP_MARKER.unpack(data)
    return WalSnapshot(index, term)
