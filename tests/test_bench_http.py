"""The benchmark's lean HTTP client (scripts/bench_http.py) reads responses as servers send them:
Content-Length bodies, chunked bodies with trailers, interim 1xx answers, split anywhere."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
from bench_http import HttpConn, ProtocolError, ResponseParser, request_head

STREAM = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
    b'{"header":{}}'
    b"HTTP/1.1 100 Continue\r\n\r\n"
    b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}"
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n1a\r\n" + b"x" * 26 + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
    b"HTTP/1.1 204 No Content\r\n\r\n"
    b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
)
STATUSES = [200, 400, 200, 204, 503]


def test_parser_reads_a_stream_of_responses_whole() -> None:
    assert ResponseParser().feed(STREAM) == STATUSES


def test_parser_reads_the_same_stream_one_byte_at_a_time() -> None:
    parser = ResponseParser()
    got = [s for i in range(len(STREAM)) for s in parser.feed(STREAM[i : i + 1])]
    assert got == STATUSES


def test_parser_refuses_a_body_it_cannot_delimit() -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}")
    with pytest.raises(ProtocolError):
        ResponseParser().feed(b"SSH-2.0-OpenSSH\r\n\r\n")


async def test_conn_keeps_alive_over_content_length_and_chunked_answers() -> None:
    async def echo(request: web.Request) -> web.StreamResponse:
        body = await request.read()
        if request.path == "/chunked":
            resp = web.StreamResponse()
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            for _ in range(3):
                await resp.write(body * 1000)
            await resp.write_eof()
            return resp
        return web.Response(body=body, status=200 if request.path == "/ok" else 404)

    app = web.Application()
    app.router.add_post("/{name}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        conn = await HttpConn.open("127.0.0.1", port, None)
        body = b'{"key":"YQ=="}'
        got = []
        for path in ("/ok", "/chunked", "/missing", "/ok"):
            head = request_head(path, f"127.0.0.1:{port}", len(body), "tok")
            got.append(await conn.request(head + body))
        assert got == [200, 200, 404, 200]
        assert not conn.closed
        conn.close()
    finally:
        await runner.cleanup()
