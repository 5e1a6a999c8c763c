"""Segment files: their names, listing them in order, and decoding a run of them.

A segment is ``%016x-%016x.wal`` (sequence number, index of the next entry when it was cut).
``Scan`` feeds the segments' bytes, 1 MiB at a time, through one ``Decoder`` chain per file
(the CRC chain continues from one segment into the next) and stops at the first damage,
remembering where it is; ``wal.py`` decides whether that damage is a repairable torn tail.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence

from raftkv.wal.decoder import DecodeError, Decoder
from raftkv.wal.record import Record, RecordType

__all__ = ["Scan", "ScanError", "list_segments", "parse_segment_name", "segment_name"]

_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")
_READ_CHUNK = 1 << 20
_CRC = int(RecordType.CRC)


def segment_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def parse_segment_name(name: str) -> tuple[int, int] | None:
    """(seq, index) of a segment file name, or None if it is not one."""
    m = _NAME.match(name)
    return (int(m.group(1), 16), int(m.group(2), 16)) if m else None


def list_segments(dirpath: str) -> list[tuple[int, int, str]]:
    """(seq, index, path) of every segment in the directory, by sequence."""
    try:
        names = os.listdir(dirpath)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        parsed = parse_segment_name(name)
        if parsed is not None:
            out.append((*parsed, os.path.join(dirpath, name)))
    out.sort()
    return out


class ScanError:
    """The first damage a scan met: where (``offset``, the bad frame), why, whether it looks
    like a torn write, and ``end_offset`` just past the last good record of that segment."""

    __slots__ = ("end_offset", "offset", "reason", "torn")

    def __init__(self, offset: int, reason: str, torn: bool, end_offset: int) -> None:
        self.offset, self.reason, self.torn, self.end_offset = offset, reason, torn, end_offset


class Scan:
    """Decode a run of segments in order, yielding (path, record). Iteration stops at the
    first damage; then ``error`` is (path, ScanError). ``crc`` is the chain after the last good
    record and ``tail_end`` the end of the last good record in the last segment read."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths = paths
        self.error: tuple[str, ScanError] | None = None
        self.crc = 0
        self.tail_end = 0

    def __iter__(self) -> Iterator[tuple[str, Record]]:
        crc = 0
        for path in self._paths:
            dec = Decoder(crc)
            first = True
            try:
                with open(path, "rb", buffering=0) as f:
                    while not dec.ended:
                        chunk = f.read(_READ_CHUNK)
                        if not chunk:
                            dec.finish()
                            break
                        dec.feed(chunk)
                        while (rec := dec.next()) is not None:
                            if first and rec.type != _CRC:
                                reason = "segment does not open with a crc record"
                                self._fail(path, ScanError(rec.offset, reason, False, 0), dec)
                                return
                            first = False
                            yield path, rec
            except DecodeError as err:
                self._fail(path, ScanError(err.offset, err.reason, err.torn, dec.end), dec)
                return
            if first:
                self._fail(path, ScanError(0, "segment has no records", False, 0), dec)
                return
            crc = dec.crc
            self.crc, self.tail_end = crc, dec.end

    def _fail(self, path: str, err: ScanError, dec: Decoder) -> None:
        self.error = (path, err)
        self.crc, self.tail_end = dec.crc, dec.end
