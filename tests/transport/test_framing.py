"""The peer stream's frame codec: whatever way the bytes are cut, the same messages come out."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.raft.messages import Entry, Message, MessageType
from raftkv.transport.framing import FrameDecoder, FrameError, encode_frame, encode_frames


def _msgs(n: int) -> list[Message]:
    return [
        Message(
            MessageType.APP,
            to=2,
            from_=1,
            term=3,
            log_term=3,
            index=i,
            entries=tuple(Entry(3, i + 1 + k, data=b"v" * (k * 7)) for k in range(i % 4)),
            commit=i,
        )
        for i in range(n)
    ]


def test_decoder_fed_one_byte_at_a_time_yields_every_message():
    msgs = _msgs(20)
    data = encode_frames(msgs)
    dec = FrameDecoder()
    out = []
    for i in range(len(data)):
        out += dec.feed_messages(data[i : i + 1])
    assert out == msgs
    assert dec.pending == 0


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=97), min_size=1, max_size=40))
def test_decoder_output_does_not_depend_on_chunking(cuts):
    msgs = _msgs(15)
    data = encode_frames(msgs)
    dec = FrameDecoder()
    out, pos, i = [], 0, 0
    while pos < len(data):
        step = cuts[i % len(cuts)]
        out += dec.feed_messages(data[pos : pos + step])
        pos += step
        i += 1
    assert out == msgs


def test_incomplete_frame_stays_pending():
    data = encode_frames(_msgs(2))
    dec = FrameDecoder()
    assert len(dec.feed_messages(data[:-1])) == 1
    assert dec.pending > 0


def test_oversized_frame_is_refused():
    dec = FrameDecoder(max_frame=10)
    with pytest.raises(FrameError):
        dec.feed(encode_frame(b"x" * 11))


def test_garbage_payload_is_a_frame_error():
    with pytest.raises(FrameError):
        FrameDecoder().feed_messages(encode_frame(b"\xc1\xc1\xc1"))
