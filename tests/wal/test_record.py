"""Record framing: every record type round-trips, decoders accept any chunking, damage is named."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftkv.raft.messages import (
    Entry,
    EntryType,
    HardState,
    decode_entry,
    decode_hard_state,
    encode_entry,
    encode_hard_state,
)
from raftkv.wal.decoder import DecodeError, Decoder
from raftkv.wal.encoder import Encoder
from raftkv.wal.record import (
    RecordType,
    WalSnapshot,
    decode_frame_word,
    decode_snapshot_marker,
    encode_frame_word,
    encode_snapshot_marker,
)


def _one_of_each() -> tuple[bytearray, list[tuple[int, bytes]]]:
    """A buffer holding every record type, and the (type, data) expected back."""
    buf = bytearray()
    expected: list[tuple[int, bytes]] = []
    crc = Encoder.crc_record(buf, 0)
    expected.append((RecordType.CRC, b""))
    for rtype, data in [
        (RecordType.METADATA, b"cluster=1 member=2"),
        (RecordType.SNAPSHOT, encode_snapshot_marker(WalSnapshot(7, 3))),
        (RecordType.STATE, encode_hard_state(HardState(3, 2, 7))),
    ]:
        crc = Encoder.record(buf, rtype, data, crc)
        expected.append((rtype, data))
    ents = [
        Entry(3, 8, EntryType.NORMAL, b""),
        Entry(3, 9, EntryType.CONF_CHANGE, b"\x00" * 13),
        Entry(3, 10, EntryType.NORMAL, bytes(range(256)) * 3),
    ]
    crc = Encoder.entries(buf, ents, crc)
    for e in ents:
        expected.append((RecordType.ENTRY, encode_entry(e)))
    return buf, expected


def _decode_all(dec: Decoder) -> list:
    out = []
    while (rec := dec.next()) is not None:
        out.append(rec)
    return out


def test_frame_word_round_trips_and_pads_to_eight_bytes():
    for n in range(8, 40):
        word, pad = encode_frame_word(n)
        assert (n + pad) % 8 == 0
        assert decode_frame_word(word) == (n, pad)
        assert (word >> 56) == (0x80 | pad if pad else 0)


def test_every_record_type_round_trips():
    buf, expected = _one_of_each()
    assert len(buf) % 8 == 0
    dec = Decoder()
    dec.feed(bytes(buf))
    recs = _decode_all(dec)
    dec.finish()
    assert [(r.type, r.data) for r in recs] == expected
    assert dec.end == len(buf)
    assert all(r.offset % 8 == 0 for r in recs)
    assert decode_snapshot_marker(recs[2].data) == WalSnapshot(7, 3)
    assert decode_hard_state(recs[3].data) == HardState(3, 2, 7)
    assert decode_entry(recs[-1].data) == Entry(3, 10, EntryType.NORMAL, bytes(range(256)) * 3)


def test_decoder_fed_one_byte_at_a_time_matches_whole_feed():
    buf, expected = _one_of_each()
    buf += bytes(24)  # the zero tail of a preallocated segment
    dec = Decoder()
    recs = []
    for i in range(len(buf)):
        dec.feed(buf[i : i + 1])
        recs.extend(_decode_all(dec))
    dec.finish()
    assert [(r.type, r.data) for r in recs] == expected
    assert dec.ended
    assert dec.end == len(buf) - 24


def test_zero_frame_word_ends_the_stream():
    buf, expected = _one_of_each()
    dec = Decoder()
    dec.feed(bytes(buf) + bytes(8) + b"garbage after the end is never read")
    assert len(_decode_all(dec)) == len(expected)
    assert dec.ended
    dec.finish()


def test_crc_chain_continues_across_decoders():
    buf, _ = _one_of_each()
    first = Decoder()
    first.feed(bytes(buf))
    _decode_all(first)
    nxt = bytearray()
    Encoder.crc_record(nxt, first.crc)
    Encoder.record(nxt, RecordType.METADATA, b"m", first.crc)
    second = Decoder(first.crc)
    second.feed(bytes(nxt))
    assert [r.type for r in _decode_all(second)] == [RecordType.CRC, RecordType.METADATA]

    wrong = bytearray()
    Encoder.crc_record(wrong, first.crc ^ 1)
    third = Decoder(first.crc)
    third.feed(bytes(wrong))
    with pytest.raises(DecodeError, match="crc chain broken"):
        third.next()


def test_type_byte_is_covered_by_the_crc():
    buf = bytearray()
    crc = Encoder.crc_record(buf, 0)
    Encoder.record(buf, RecordType.ENTRY, encode_entry(Entry(1, 1)), crc)
    buf[16 + 8] = RecordType.STATE  # entry -> state: same data, different meaning
    dec = Decoder()
    dec.feed(bytes(buf))
    dec.next()
    with pytest.raises(DecodeError, match="crc mismatch") as info:
        dec.next()
    assert info.value.offset == 16
    assert not info.value.torn


def test_truncated_frame_is_torn_at_finish():
    buf, expected = _one_of_each()
    last_start = len(buf) - 8 - (8 + len(expected[-1][1]) + (-len(expected[-1][1]) & 7))
    for cut in (last_start + 3, last_start + 8, len(buf) - 1):
        dec = Decoder()
        dec.feed(bytes(buf[:cut]))
        assert len(_decode_all(dec)) == len(expected) - 1
        with pytest.raises(DecodeError) as info:
            dec.finish()
        assert info.value.torn and info.value.offset == last_start
        assert dec.end == last_start


def test_crc_failure_with_a_zeroed_sector_is_torn_and_without_is_not():
    buf = bytearray()
    crc = Encoder.crc_record(buf, 0)
    Encoder.record(buf, RecordType.METADATA, b"\x01" * 2000, crc)  # spans sectors 0..4
    torn = bytearray(buf)
    torn[1024:] = bytes(len(torn) - 1024)
    dec = Decoder()
    dec.feed(bytes(torn))
    dec.next()
    with pytest.raises(DecodeError) as info:
        dec.next()
    assert info.value.torn

    rotten = bytearray(buf)
    rotten[1500] ^= 0x10
    dec = Decoder()
    dec.feed(bytes(rotten))
    dec.next()
    with pytest.raises(DecodeError) as info:
        dec.next()
    assert not info.value.torn and info.value.offset == 16


@pytest.mark.parametrize(
    "word",
    [
        4,  # shorter than a record header
        17 | (0x80 << 56),  # padded flag with zero pad
        17 | ((0x80 | 3) << 56),  # pad disagrees with the length
        16 | (0x40 << 56),  # stray high bits
    ],
)
def test_bad_frame_words_are_corruption(word):
    dec = Decoder()
    dec.feed(struct.pack("<Q", word) + bytes(32))
    with pytest.raises(DecodeError, match="bad frame word") as info:
        dec.next()
    assert not info.value.torn


def test_unknown_record_type_is_refused():
    buf = bytearray()
    Encoder.crc_record(buf, 0)
    buf[8] = 9
    dec = Decoder()
    dec.feed(bytes(buf))
    with pytest.raises(DecodeError, match="unknown record type"):
        dec.next()


@settings(max_examples=60, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=70), max_size=12),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=20),
)
def test_any_chunking_decodes_the_same_records(payloads, cuts):
    buf = bytearray()
    crc = Encoder.crc_record(buf, 0)
    for p in payloads:
        crc = Encoder.record(buf, RecordType.METADATA, p, crc)
    data = bytes(buf)
    bounds = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    dec = Decoder()
    got = []
    for a, b in itertools.pairwise(bounds):
        dec.feed(data[a:b])
        got.extend(_decode_all(dec))
    dec.finish()
    assert [r.data for r in got] == [b"", *payloads]
    assert dec.crc == crc and dec.end == len(data)
