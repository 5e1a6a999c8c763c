"""Batch encoder: turns records into framed bytes appended to one bytearray (no I/O).

The WAL encodes a whole Ready (entries, then the hard state) into one buffer and writes it with
one system call. The encoder owns the running CRC of the chain (see ``record.py`` for the frame
layout); it advances only through ``commit`` so a failed write leaves it where the file is.

    enc = Encoder(crc=prev)
    buf = bytearray()
    crc = enc.entries(buf, entries, enc.crc)   # returns the chain after these records
    crc = enc.record(buf, RecordType.STATE, encode_hard_state(hs), crc)
    os.write(fd, buf); enc.crc = crc           # commit only once the bytes are in the file
"""

from __future__ import annotations

from collections.abc import Sequence

from zlib_ng.zlib_ng import crc32  # (zlib-ng: the same CRC-32 as zlib, faster)

from raftkv.raft.messages import Entry, encode_entry
from raftkv.wal.record import FRAME, TYPE_BYTES, ZEROS, RecordType

__all__ = ["Encoder"]

_pack = FRAME.pack
_ENTRY = int(RecordType.ENTRY)
_ENTRY_BYTE = TYPE_BYTES[_ENTRY]
_CRC = int(RecordType.CRC)
_PAD_FLAGS = [0] + [(0x80 | p) << 56 for p in range(1, 8)]


class Encoder:
    """Frames records into a caller's bytearray; ``crc`` is the chain after the last commit."""

    __slots__ = ("crc",)

    def __init__(self, crc: int = 0) -> None:
        self.crc = crc

    @staticmethod
    def record(buf: bytearray, rtype: int, data: bytes, crc: int) -> int:
        """Append one non-CRC record chained from ``crc``; returns the new chain value."""
        crc = crc32(data, crc32(TYPE_BYTES[rtype], crc))
        n = len(data)
        pad = -n & 7
        buf += _pack((n + 8) | _PAD_FLAGS[pad], rtype, crc)
        buf += data
        if pad:
            buf += ZEROS[:pad]
        return crc

    @staticmethod
    def crc_record(buf: bytearray, crc: int) -> int:
        """Append the CRC record that opens a segment (carries ``crc``, no data)."""
        buf += _pack(8, _CRC, crc)
        return crc

    @staticmethod
    def entries(buf: bytearray, entries: Sequence[Entry], crc: int) -> int:
        """Append one ENTRY record per entry (the hot path: inlined ``record``)."""
        pack = _pack
        flags = _PAD_FLAGS
        eb = _ENTRY_BYTE
        for e in entries:
            data = encode_entry(e)
            n = len(data)
            pad = -n & 7
            crc = crc32(data, crc32(eb, crc))
            buf += pack((n + 8) | flags[pad], _ENTRY, crc)
            buf += data
            if pad:
                buf += ZEROS[:pad]
        return crc
