"""Length-prefixed frames for the peer stream (sans-I/O: bytes in, payloads out).

A peer stream body is a sequence of frames, one Raft message each::

    +----------------------+-------------------------------+
    | u32 big-endian len N | N bytes: msgpack Message wire |
    +----------------------+-------------------------------+

The sender concatenates every frame queued since its last write into one write (many
messages per chunk); the receiver feeds whatever bytes arrived to ``FrameDecoder`` and gets
back the complete payloads. A frame longer than ``max_frame`` is a protocol error (the
connection is dropped, never buffered without bound).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from raftkv.raft.messages import Message, decode_message, encode_message

__all__ = ["MAX_FRAME", "FrameDecoder", "FrameError", "encode_frame", "encode_frames"]

_LEN = struct.Struct(">I")
MAX_FRAME = 256 << 20


class FrameError(Exception):
    """The peer sent bytes that are not a valid frame sequence."""


def encode_frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def encode_frames(msgs: Iterable[Message]) -> bytes:
    """Every message framed and concatenated: one write for the whole batch."""
    out = bytearray()
    pack = _LEN.pack
    for m in msgs:
        p = encode_message(m)
        out += pack(len(p))
        out += p
    return bytes(out)


class FrameDecoder:
    """Feed bytes as they arrive; ``feed`` returns the payloads completed by them."""

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self._max = max_frame

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (size,) = _LEN.unpack_from(buf, pos)
            if size > self._max:
                raise FrameError(f"frame of {size} bytes exceeds the limit of {self._max}")
            if n - pos - 4 < size:
                break
            out.append(bytes(buf[pos + 4 : pos + 4 + size]))
            pos += 4 + size
        if pos:
            del buf[:pos]
        return out

    def feed_messages(self, data: bytes) -> list[Message]:
        try:
            return [decode_message(p) for p in self.feed(data)]
        except FrameError:
            raise
        except Exception as e:  # a malformed payload: msgpack or shape error
            raise FrameError(f"undecodable message frame: {e}") from e

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame still buffered (0 at a clean end of stream)."""
        return len(self._buf)
