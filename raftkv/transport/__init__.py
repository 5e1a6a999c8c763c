"""Peer transport: per-peer msgpack message streams and the snapshot stream, over HTTP."""

from raftkv.transport.framing import FrameDecoder, FrameError, encode_frame, encode_frames
from raftkv.transport.transport import Transport

__all__ = ["FrameDecoder", "FrameError", "Transport", "encode_frame", "encode_frames"]
