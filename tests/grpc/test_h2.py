"""raftkv.api.h2grpc at the frame level: a raw HTTP/2 client on a loopback socket drives the
corners gRPC libraries rarely show (CONTINUATION, padding, a message split over frames, tiny
flow-control windows, PING, RST_STREAM, compressed and oversized messages, unknown methods)."""

from __future__ import annotations

import asyncio
import struct
from typing import Any

import hpack
import pytest

from raftkv.api.h2grpc import EOF, Call, H2Protocol, Method
from raftkv.errors import GrpcCode

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW, CONT = 0, 1, 3, 4, 6, 7, 8, 9


def frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return struct.pack(">IBI", len(payload) << 8 | ftype, flags, sid) + payload


def msg(body: bytes, compressed: int = 0) -> bytes:
    return struct.pack(">BI", compressed, len(body)) + body


class Client:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.r, self.w = reader, writer
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()

    def send(self, *frames: bytes) -> None:
        self.w.write(b"".join(frames))

    def headers_block(self, path: str, extra: tuple = ()) -> bytes:
        return self.enc.encode(
            [(":method", "POST"), (":scheme", "http"), (":path", path),
             (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers"),
             *extra]
        )  # fmt: skip

    async def frame(self) -> tuple[int, int, int, bytes]:
        head = await asyncio.wait_for(self.r.readexactly(9), 5)
        lt, flags, sid = struct.unpack(">IBI", head)
        return lt & 0xFF, flags, sid, await self.r.readexactly(lt >> 8)

    async def until(self, sid: int, want_end: bool = True) -> list[tuple[int, int, Any]]:
        """Frames of stream ``sid`` (headers decoded) up to its END_STREAM; others answered
        or skipped."""
        out = []
        while True:
            ftype, flags, fsid, payload = await self.frame()
            if fsid != sid:
                continue
            if ftype == HEADERS:
                out.append((ftype, flags, dict(self.dec.decode(payload))))
            else:
                out.append((ftype, flags, payload))
            if flags & 1 and want_end:
                return out


async def echo(req: bytes, call: Call) -> bytes:
    return b"echo:" + req


async def upper_stream(_req: None, call: Call) -> None:
    while (m := await call.read()) is not EOF:
        await call.write(m.upper())


_cancelled: list[bool] = []


async def hang(_req: None, call: Call) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        _cancelled.append(True)
        raise


METHODS = {
    "/t.S/Echo": Method(echo, bytes, bytes),
    "/t.S/Upper": Method(upper_stream, bytes, bytes, client_streaming=True, server_streaming=True),
    "/t.S/Hang": Method(hang, bytes, bytes, client_streaming=True, server_streaming=True),
}


@pytest.fixture
async def client() -> Any:
    server = await asyncio.get_running_loop().create_server(
        lambda: H2Protocol(METHODS, 1000), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    c = Client(reader, writer)
    c.send(PREFACE, frame(SETTINGS, 0, 0))
    try:
        yield c
    finally:
        writer.close()
        server.close()


async def test_unary_over_continuation_padding_and_split_message(client: Client) -> None:
    block = client.headers_block("/t.S/Echo")
    body = msg(b"hello")
    client.send(
        frame(HEADERS, 0, 1, block[:3]),
        frame(CONT, 0x4, 1, block[3:]),  # END_HEADERS
        frame(DATA, 0x8, 1, b"\x02" + body[:4] + b"\x00\x00"),  # padded
        frame(DATA, 0x1, 1, body[4:]),  # END_STREAM
    )
    got = await client.until(1)
    assert got[0][2][":status"] == "200" and got[0][2]["content-type"] == "application/grpc"
    assert got[1][0] == DATA and got[1][2] == msg(b"echo:hello")
    assert got[2][2] == {"grpc-status": "0"} and got[2][1] & 1


async def test_flow_control_windows_are_honoured(client: Client) -> None:
    client.send(frame(SETTINGS, 0, 0, struct.pack(">HI", 4, 4)))  # INITIAL_WINDOW_SIZE 4
    client.send(frame(HEADERS, 0x4, 3, client.headers_block("/t.S/Echo")))
    client.send(frame(DATA, 0x1, 3, msg(b"abcdefgh")))
    got = []
    data = b""
    while len(data) < 5 + 13:
        ftype, _flags, sid, payload = await client.frame()
        if sid == 3 and ftype == DATA:
            assert len(payload) <= 4
            data += payload
            client.send(frame(WINDOW, 0, 3, struct.pack(">I", len(payload))))
        elif sid == 3 and ftype == HEADERS:
            got.append(dict(client.dec.decode(payload)))
    assert data == msg(b"echo:abcdefgh")
    assert got == [{":status": "200", "content-type": "application/grpc"}]
    trailers = await client.until(3)
    assert trailers[-1][2] == {"grpc-status": "0"}


async def test_ping_is_answered_with_its_payload(client: Client) -> None:
    client.send(frame(PING, 0, 0, b"12345678"))
    while True:
        ftype, flags, _sid, payload = await client.frame()
        if ftype == PING:
            assert (flags, payload) == (1, b"12345678")
            return


@pytest.mark.parametrize(
    ("path", "data", "code", "message"),
    [
        ("/t.S/Nope", None, GrpcCode.UNIMPLEMENTED, "unknown method Nope for service t.S"),
        ("/x.Y/Z", None, GrpcCode.UNIMPLEMENTED, "unknown service x.Y"),
        (
            "/t.S/Echo",
            struct.pack(">BI", 0, 5000),
            GrpcCode.RESOURCE_EXHAUSTED,
            "grpc: received message larger than max (5000 vs. 1000)",
        ),
        (
            "/t.S/Echo",
            msg(b"z", compressed=1),
            GrpcCode.UNIMPLEMENTED,
            "grpc: Decompressor is not installed for grpc-encoding",
        ),
    ],
)
async def test_refusals(
    client: Client, path: str, data: bytes | None, code: GrpcCode, message: str
) -> None:
    client.send(frame(HEADERS, 0x4 | (1 if data is None else 0), 1, client.headers_block(path)))
    if data is not None:
        client.send(frame(DATA, 0, 1, data))
    got = await client.until(1)
    h = got[0][2]
    assert (h[":status"], h["grpc-status"], h["grpc-message"]) == ("200", str(int(code)), message)


async def test_bidi_stream_and_reset(client: Client) -> None:
    client.send(frame(HEADERS, 0x4, 1, client.headers_block("/t.S/Upper")))
    client.send(frame(DATA, 0, 1, msg(b"ab") + msg(b"c")))
    got = []
    while len([f for f in got if f[0] == DATA]) < 2:
        ftype, flags, sid, payload = await client.frame()
        if sid == 1:
            got.append((ftype, flags, payload))
    assert [p for t, _, p in got if t == DATA] == [msg(b"AB"), msg(b"C")]
    client.send(frame(DATA, 0x1, 1))  # the client is done: the call ends with OK
    end = await client.until(1)
    assert end[-1][2] == {"grpc-status": "0"}

    _cancelled.clear()
    client.send(frame(HEADERS, 0x4, 3, client.headers_block("/t.S/Hang")))
    await asyncio.sleep(0.1)
    client.send(frame(RST, 0, 3, struct.pack(">I", 8)))  # CANCEL
    for _ in range(50):
        if _cancelled:
            break
        await asyncio.sleep(0.02)
    assert _cancelled == [True]


def test_grpc_message_is_percent_encoded() -> None:
    from raftkv.api.h2grpc import _grpc_message

    assert _grpc_message("a 100% ü\n") == b"a 100%25 %C3%BC%0A"


async def test_pings_are_policed_as_grpc_go_does_for_etcd(client: Client) -> None:
    # an answer before each ping resets the count: no strike
    for sid in (1, 3, 5, 7):
        client.send(frame(HEADERS, 0x4, sid, client.headers_block("/t.S/Echo")))
        client.send(frame(DATA, 0x1, sid, msg(b"x")))
        await client.until(sid)
        client.send(frame(PING, 0, 0, b"%08d" % sid))
    # then three pings in a row, nothing sent between them: GOAWAY too_many_pings
    client.send(*(frame(PING, 0, 0, b"%08d" % i) for i in range(3)))
    while True:
        ftype, _flags, _sid, payload = await client.frame()
        if ftype == GOAWAY:
            last, code = struct.unpack(">II", payload[:8])
            assert (last, code, payload[8:]) == (7, 0xB, b"too_many_pings")
            break
    assert await client.r.read() == b""  # and the connection closes


async def test_header_cache_follows_the_dynamic_table() -> None:
    """An indexed-only block means what the peer's table says now: a cached meaning is
    dropped once a block that may change the table arrives."""
    proto = H2Protocol({}, 100)
    reference = hpack.Decoder()
    enc = hpack.Encoder()
    first = enc.encode([(":path", "/a"), ("x-k", "1")])
    repeat = enc.encode([(":path", "/a"), ("x-k", "1")])  # indexed fields only
    change = enc.encode([(":path", "/b"), ("x-k", "2")])  # new entries shift the indexes
    assert not repeat.translate(None, bytes(range(0x80, 0xFF)))
    for block in (first, repeat, repeat, change, repeat, repeat):
        want = dict(reference.decode(block))
        path, _enc, metadata = proto._decode_headers(block)
        assert (path, dict(metadata)) == (want[":path"], {"x-k": want["x-k"]})


async def test_stream_window_holds_one_request_and_is_granted_back_as_read(
    client: Client,
) -> None:
    ftype, flags, sid, payload = await client.frame()  # the server's SETTINGS come first
    assert (ftype, flags, sid) == (SETTINGS, 0, 0)
    assert struct.unpack(">HI", payload) == (4, 1000 + 5 + 65536)  # INITIAL_WINDOW_SIZE
    client.send(frame(HEADERS, 0x4, 1, client.headers_block("/t.S/Upper")))
    client.send(frame(DATA, 0x8, 1, b"\x03" + msg(b"ab") + b"\x00\x00\x00"))  # padded
    granted = 0
    while granted < 11:  # the 7-byte message once read, and the padding (1 + 3) at once
        ftype, _flags, sid, payload = await client.frame()
        if ftype == WINDOW and sid == 1:
            granted += struct.unpack(">I", payload)[0]
    assert granted == 11
