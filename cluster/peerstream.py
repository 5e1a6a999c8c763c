"""Frame-aware filtering of a member's outgoing peer stream, so the proxy can drop single Raft
messages instead of whole connections (sans-I/O: bytes in, bytes out).

A peer stream (raftkv.transport) is one long HTTP/1.1 request:

    POST /raft/stream HTTP/1.1\\r\\n ... Transfer-Encoding: chunked\\r\\n\\r\\n     <- head
    <hex size>\\r\\n <frames> \\r\\n   <hex size>\\r\\n <frames> \\r\\n   ...       <- chunks
    frame = u32 big-endian length N + N bytes of msgpack (one Raft message)

StreamFilter passes the head through, decodes the chunks, and re-emits the frames it keeps
as new chunks (one per feed), so what reaches the member is always a valid stream: dropped
messages are missing, never cut. Anything else (a snapshot POST, a body that is not chunked)
is passed through untouched: `raw` tells the proxy to fall back to breaking the connection.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

__all__ = ["StreamFilter"]

_LEN = struct.Struct(">I")
_MAX_HEAD = 64 * 1024
_STREAM_LINE = b"post /raft/stream "


class StreamFilter:
    def __init__(self) -> None:
        self._buf = bytearray()  # undecoded input
        self._frames = bytearray()  # decoded chunk data, not yet split into frames
        self._state = "head"  # head | size | data | crlf | raw
        self._left = 0  # bytes left in the current chunk
        self.dropped = 0
        self.kept = 0

    @property
    def raw(self) -> bool:
        """Not (or no longer) a chunked peer stream: bytes pass through as they are."""
        return self._state == "raw"

    def feed(self, data: bytes, drop: Callable[[], bool]) -> bytes:
        """The bytes to forward for `data`; drop() decides, frame by frame, what is dropped."""
        if self._state == "raw":
            return data
        buf = self._buf
        buf += data
        out = bytearray()
        pos = 0
        while True:
            if self._state == "head":
                start = bytes(buf[pos : pos + len(_STREAM_LINE)]).lower()
                if not _STREAM_LINE.startswith(start):
                    self._state = "raw"  # not a peer stream: hold nothing back
                    break
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > _MAX_HEAD:
                        self._state = "raw"
                    break
                head = bytes(buf[pos : end + 4])
                out += head
                pos = end + 4
                lower = head.lower()
                if b"\r\ntransfer-encoding: chunked\r\n" not in lower:
                    self._state = "raw"
                else:
                    self._state = "size"
            elif self._state == "size":
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                try:
                    size = int(bytes(buf[pos:end]).split(b";", 1)[0], 16)
                except ValueError:
                    self._state = "raw"  # not chunked after all: stop interpreting
                    out += buf[pos:]
                    pos = len(buf)
                    break
                pos = end + 2
                if size == 0:  # the last chunk: the rest (trailers) passes through
                    out += b"0\r\n"
                    self._state = "raw"
                else:
                    self._left, self._state = size, "data"
            elif self._state == "data":
                n = min(self._left, len(buf) - pos)
                if n == 0:
                    break
                self._frames += buf[pos : pos + n]
                pos += n
                self._left -= n
                if self._left == 0:
                    out += self._flush(drop)
                    self._state = "crlf"
            elif self._state == "crlf":
                if len(buf) - pos < 2:
                    break
                pos += 2
                self._state = "size"
            else:  # raw
                break
        if self._state == "raw":
            out += buf[pos:]
            pos = len(buf)
        elif self._state == "data":
            out += self._flush(drop)  # whole frames of a chunk still arriving go on now
        del buf[:pos]
        return bytes(out)

    def _flush(self, drop: Callable[[], bool]) -> bytes:
        """The complete frames decoded so far that drop() keeps, as one chunk (or nothing)."""
        frames = self._frames
        kept = bytearray()
        pos = 0
        while len(frames) - pos >= 4:
            (n,) = _LEN.unpack_from(frames, pos)
            if len(frames) - pos - 4 < n:
                break
            if drop():
                self.dropped += 1
            else:
                kept += frames[pos : pos + 4 + n]
                self.kept += 1
            pos += 4 + n
        del frames[:pos]
        return b"%x\r\n%b\r\n" % (len(kept), kept) if kept else b""
