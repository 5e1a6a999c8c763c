"""Page codecs: layouts round-trip, and the checksum catches any changed byte."""

import struct

import pytest

from raftkv.backend import page
from raftkv.backend.page import PAGE_SIZE, Meta, ValueRef


def test_header_layout_is_32_bytes_and_8_aligned():
    assert page.HEADER_SIZE == 32 == struct.calcsize("<QQHHIII")
    assert page.META_BODY.size % 8 == 0


def test_leaf_round_trips_inline_and_out_of_line_values():
    keys = [b"a", b"bb", b"ccc"]
    values = [b"", b"x" * 100, ValueRef(77, 9000)]
    buf = page.encode_leaf(5, 9, keys, values)
    assert len(buf) == PAGE_SIZE
    assert page.verify(buf, 5) is None
    assert page.parse_header(buf)[:4] == (5, 9, page.LEAF, 3)
    assert page.decode_leaf(buf) == (keys, values)


def test_branch_round_trips():
    keys = [b"k%03d" % i for i in range(50)]
    children = list(range(100, 150))
    buf = page.encode_branch(3, 1, keys, children)
    assert page.decode_branch(buf) == (keys, children)


def test_node_larger_than_a_page_spans_a_run_of_pages():
    keys = [b"big"]
    values = [b"v" * 10_000]
    buf = page.encode_leaf(10, 1, keys, values)
    assert len(buf) == 3 * PAGE_SIZE
    assert page.parse_header(buf)[4] == 2  # overflow count
    assert page.verify(buf, 10) is None
    assert page.decode_leaf(buf) == (keys, values)


def test_meta_round_trips():
    m = Meta(root=7, freelist=8, hwm=9, txid=42)
    got = page.decode_meta(page.encode_meta(0, m), 0)
    assert isinstance(got, Meta)
    assert (got.root, got.freelist, got.hwm, got.txid) == (7, 8, 9, 42)


def test_freelist_round_trips_and_pads_to_the_allocated_run():
    ids = list(range(2, 1500))
    buf = page.encode_freelist(4, 1, ids, npages=5)
    assert len(buf) == 5 * PAGE_SIZE
    assert page.verify(buf, 4) is None
    assert page.decode_freelist(buf) == ids


@pytest.mark.parametrize("offset", [0, 9, 17, 21, 25, 29, 40, 2000, PAGE_SIZE - 1])
def test_any_flipped_byte_is_detected(offset):
    buf = bytearray(page.encode_leaf(5, 1, [b"k"], [b"v" * 50]))
    buf[offset] ^= 0x40
    assert page.verify(bytes(buf), 5) is not None


def test_page_written_at_the_wrong_place_is_detected():
    buf = page.encode_leaf(5, 1, [b"k"], [b"v"])
    assert "header names page 5" in page.verify(buf, 6)


def test_garbage_meta_is_rejected_with_a_reason():
    assert isinstance(page.decode_meta(b"\xff" * PAGE_SIZE, 0), str)
    assert isinstance(page.decode_meta(bytes(PAGE_SIZE), 1), str)


def test_the_page_checksum_is_zlibs_crc32_of_the_header_and_body():
    """The on-disk format (see ``page``): CRC-32 (zlib's) of bytes [0, 28) then [32, end),
    whichever library computes it."""
    import struct
    import zlib

    from raftkv.backend import page

    buf = page.encode_leaf(7, 3, [b"a", b"bb"], [b"1", b"x" * 100])
    (stored,) = struct.unpack_from("<I", buf, 28)
    assert stored == zlib.crc32(buf[32:], zlib.crc32(buf[:28]))
    assert page.verify(buf, 7) is None
