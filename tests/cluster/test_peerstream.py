"""The proxy's peer-stream filter: drops whole frames, always forwards a valid stream."""

from __future__ import annotations

import itertools
import random
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from cluster.peerstream import StreamFilter

HEAD = (
    b"POST /raft/stream HTTP/1.1\r\nHost: 127.0.0.12:2380\r\nX-Raftkv-From: 1\r\n"
    b"Transfer-Encoding: chunked\r\nContent-Type: application/octet-stream\r\n\r\n"
)


def frame(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def decode(stream: bytes) -> tuple[bytes, list[bytes], bytes]:
    """(head, frames, rest after the last chunk) of a chunked peer stream; asserts validity."""
    end = stream.index(b"\r\n\r\n") + 4
    head, pos, body = stream[:end], end, b""
    while pos < len(stream):
        line_end = stream.index(b"\r\n", pos)
        size = int(stream[pos:line_end], 16)
        pos = line_end + 2
        if size == 0:
            return head, split(body), stream[pos:]
        body += stream[pos : pos + size]
        assert stream[pos + size : pos + size + 2] == b"\r\n"
        pos += size + 2
    return head, split(body), b""


def split(body: bytes) -> list[bytes]:
    frames, pos = [], 0
    while pos < len(body):
        (n,) = struct.unpack_from(">I", body, pos)
        assert pos + 4 + n <= len(body), "a frame was cut"
        frames.append(body[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return frames


def run(pieces, drop=lambda: False) -> bytes:
    f = StreamFilter()
    return b"".join(f.feed(p, drop) for p in pieces)


PAYLOADS = [b"msg%d" % i * (i % 5 + 1) for i in range(20)]
# frames spread over chunks that split frames in the middle
BODY = b"".join(frame(p) for p in PAYLOADS)
CHUNKS = [BODY[:7], BODY[7:50], BODY[50:51], BODY[51:]]
STREAM = HEAD + b"".join(chunk(c) for c in CHUNKS)


def test_without_drops_the_frames_arrive_intact_in_order():
    head, frames, _ = decode(run([STREAM]))
    assert head == HEAD and frames == PAYLOADS


def test_fed_one_byte_at_a_time():
    out = run([STREAM[i : i + 1] for i in range(len(STREAM))])
    head, frames, _ = decode(out)
    assert head == HEAD and frames == PAYLOADS


def test_drops_whole_frames_only():
    flips = itertools.cycle([False, True, True])
    f = StreamFilter()
    out = f.feed(STREAM, lambda: next(flips))
    _, frames, _ = decode(out)
    assert frames == PAYLOADS[::3]
    assert (f.kept, f.dropped) == (7, 13)


def test_end_of_body_and_trailing_bytes_pass_through():
    stream = STREAM + b"0\r\n\r\nGET /next HTTP/1.1\r\n\r\n"
    f = StreamFilter()
    _, frames, rest = decode(f.feed(stream, lambda: False))
    assert frames == PAYLOADS and rest == b"\r\nGET /next HTTP/1.1\r\n\r\n"
    assert f.raw


def test_other_requests_pass_through_untouched():
    snap = b"POST /raft/snapshot HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    f = StreamFilter()
    assert f.feed(snap[:10], lambda: True) + f.feed(snap[10:], lambda: True) == snap
    assert f.raw
    not_chunked = b"POST /raft/stream HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
    assert run([not_chunked], lambda: True) == not_chunked


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.binary(max_size=40), max_size=30),
    st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=20),
    st.integers(min_value=0, max_value=2**32),
    st.floats(min_value=0, max_value=1),
)
def test_any_split_and_drop_rate_gives_a_valid_subsequence(payloads, cuts, seed, share):
    body = b"".join(frame(p) for p in payloads)
    chunks, pos = [], 0
    for n in itertools.cycle(cuts):
        if pos >= len(body):
            break
        chunks.append(body[pos : pos + n])
        pos += n
    stream = HEAD + b"".join(chunk(c) for c in chunks)
    rng = random.Random(seed)
    decisions: list[bool] = []

    def drop() -> bool:
        decisions.append(rng.random() < share)
        return decisions[-1]

    pieces, pos = [], 0
    for n in itertools.cycle(reversed(cuts)):
        if pos >= len(stream):
            break
        pieces.append(stream[pos : pos + n])
        pos += n
    head, frames, _ = decode(run(pieces, drop))
    assert head == HEAD
    assert frames == [p for p, d in zip(payloads, decisions, strict=True) if not d]
