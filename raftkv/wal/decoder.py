"""Incremental record decoder: bytes of one segment in (any chunking), verified records out.

Sans-I/O: the caller feeds bytes as it reads them (a whole file, 1 MiB chunks or one byte at a
time give the same records) and pulls records with ``next()``; ``finish()`` is called once
the input is exhausted. The frame layout and CRC chain are drawn in ``record.py``.

    dec = Decoder(crc=running_crc_of_previous_segment_or_0)
    for chunk in chunks:
        dec.feed(chunk)
        while (rec := dec.next()) is not None:
            ...
        if dec.ended:          # a zero frame word: the end of what was written
            break
    dec.finish()               # leftover bytes that are not a whole frame -> DecodeError(torn)

Errors are ``DecodeError(offset, reason, torn)``. ``torn`` says the damage looks like a write
that never completed rather than rot: the input ends inside a frame, or a frame that fails its
CRC holds a 512-byte-sector-aligned run of zeros (a sector that was never written; segments are
preallocated with zeros). The WAL truncates a torn tail of its last segment and refuses
everything else. ``offset`` is where the bad frame's word starts (absolute in the segment);
``end`` is the offset just past the last good record.
"""

from __future__ import annotations

import struct

from zlib_ng.zlib_ng import crc32  # (zlib-ng: the same CRC-32 as zlib, faster)

from raftkv.wal.record import FRAME, LENGTH_MASK, TYPE_BYTES, Record, RecordType

__all__ = ["SECTOR", "DecodeError", "Decoder"]

SECTOR = 512
_WORD = struct.Struct("<Q")
_CRC = int(RecordType.CRC)
_COMPACT_AT = 1 << 20
_VALID_TOP = frozenset([0, *(0x80 | p for p in range(1, 8))])


class DecodeError(Exception):
    def __init__(self, offset: int, reason: str, *, torn: bool) -> None:
        super().__init__(f"offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason
        self.torn = torn


class Decoder:
    """Push decoder for one segment (a stream of frames starting at offset ``base``)."""

    __slots__ = ("_base", "_buf", "_pos", "crc", "ended")

    def __init__(self, crc: int = 0, base: int = 0) -> None:
        self.crc = crc  # the chain after the last good record
        self.ended = False  # a zero frame word was seen
        self._buf = bytearray()
        self._pos = 0  # start of the next frame in _buf
        self._base = base  # absolute offset of _buf[0]

    @property
    def end(self) -> int:
        """Absolute offset just past the last good record."""
        return self._base + self._pos

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        if self.ended:
            return
        pos = self._pos
        if pos >= _COMPACT_AT or (pos and pos * 2 >= len(self._buf)):
            del self._buf[:pos]
            self._base += pos
            self._pos = 0
        self._buf += data

    def next(self) -> Record | None:
        """The next verified record, or None when more input is needed (or after the end)."""
        if self.ended:
            return None
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 8:
            return None
        (word,) = _WORD.unpack_from(buf, pos)
        if word == 0:
            self.ended = True
            return None
        rlen = word & LENGTH_MASK
        top = word >> 56
        pad = top & 7  # top is 0 (no padding) or 0x80 | pad with pad in 1..7
        offset = self._base + pos
        if rlen < 8 or top not in _VALID_TOP or pad != -rlen & 7:
            raise DecodeError(offset, f"bad frame word {word:#018x}", torn=False)
        if avail < 8 + rlen + pad:
            return None
        _, rtype, stored = FRAME.unpack_from(buf, pos)
        data = bytes(buf[pos + 16 : pos + 8 + rlen])
        reason = None
        if buf[pos + 9 : pos + 12] != b"\0\0\0":
            reason = "nonzero reserved header bytes"
        elif rtype == _CRC:
            if rlen != 8:
                reason = "crc record with data"
            elif self.crc != 0 and stored != self.crc:
                reason = (
                    f"crc chain broken: segment opens with {stored:#010x}, "
                    f"expected {self.crc:#010x}"
                )
        elif rtype in TYPE_BYTES:
            calc = crc32(data, crc32(TYPE_BYTES[rtype], self.crc))
            if calc != stored:
                reason = f"crc mismatch: stored {stored:#010x}, computed {calc:#010x}"
        else:
            reason = f"unknown record type {rtype}"
        if reason is not None:
            torn = _has_zero_sector(buf, pos + 8, pos + 8 + rlen, self._base)
            raise DecodeError(offset, reason, torn=torn)
        self.crc = stored
        self._pos = pos + 8 + rlen + pad
        return Record(rtype, stored, data, offset)

    def finish(self) -> None:
        """Declare the input complete: bytes left that are not a whole frame are a torn write."""
        if self.ended:
            return
        rest = len(self._buf) - self._pos
        if rest == 0 or self._buf.count(0, self._pos) == rest:
            return
        offset = self.end
        if rest < 8:
            raise DecodeError(offset, f"input ends inside a frame word ({rest} bytes)", torn=True)
        (word,) = _WORD.unpack_from(self._buf, self._pos)
        need = 8 + (word & LENGTH_MASK)
        raise DecodeError(
            offset, f"input ends inside a frame ({rest} of {need}+ bytes present)", torn=True
        )


def _has_zero_sector(buf: bytearray, start: int, end: int, base: int) -> bool:
    """True when ``buf[start:end]``, cut at absolute sector boundaries, has an all-zero piece."""
    a = start
    while a < end:
        b = min(end, (base + a) // SECTOR * SECTOR + SECTOR - base)
        if buf.count(0, a, b) == b - a:
            return True
        a = b
    return False
