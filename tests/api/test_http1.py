"""The gateway's HTTP/1.1 fast path (``raftkv.api.http1``) against aiohttp's route and etcd.

The same listener a member runs (``serve_clients``) over a fake server: every stateless case
still answers etcd's recorded reply, and the fast path's bytes equal aiohttp's (``Date``
masked) for successes, chunked successes and both error framings. Pipelined requests, bodies
cut at every byte, a hand-over to aiohttp mid-connection and a half-closed client are served
as a client expects.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.config import free_ports
from raftkv.api import create_app, serve_clients
from raftkv.api.listener import ClientListener
from tests.api import cases as C
from tests.api import exchange as X
from tests.api.appthread import AppThread
from tests.api.fake_server import FakeServer

GOLDEN = json.loads((Path(__file__).parent / "golden" / "etcd_replies.json").read_text())
STATELESS = [X.as_dict(c) for c in C.CASES if X.as_dict(c)["name"] in C.STATELESS]


class ListenerThread:
    """``serve_clients`` over a FakeServer on a loop in a background thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.url = f"http://127.0.0.1:{free_ports(1)[0]}"
        self.listener: ClientListener | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)

        async def start() -> None:
            self.listener = await serve_clients(FakeServer(), [self.url])

        self.loop.run_until_complete(start())
        self._ready.set()
        self.loop.run_forever()

    def __enter__(self) -> ListenerThread:
        self._thread.start()
        assert self._ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.listener is not None
        asyncio.run_coroutine_threadsafe(self.listener.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def fast() -> Iterator[ListenerThread]:
    with ListenerThread() as t:
        yield t


@pytest.fixture(scope="module")
def slow() -> Iterator[AppThread]:
    with AppThread(create_app(FakeServer())) as t:
        yield t


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def post(path: str, body: bytes, extra: bytes = b"") -> bytes:
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n%s" % (
        path.encode(),
        extra,
    ) + b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def exchange(url: str, chunks: list[bytes], answers: int, timeout: float = 5.0) -> bytes:
    """Send ``chunks`` one write each; read until ``answers`` complete answers came (or EOF)."""
    with socket.create_connection(("127.0.0.1", _port(url)), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for c in chunks:
            s.sendall(c)
        out = b""
        while _complete_answers(out) < answers:
            got = s.recv(65536)
            if not got:
                break
            out += got
        return out


def _complete_answers(data: bytes) -> int:
    n, rest = 0, data
    while True:
        end = rest.find(b"\r\n\r\n")
        if end < 0:
            return n
        head, rest = rest[:end].lower(), rest[end + 4 :]
        m = re.search(rb"content-length: (\d+)", head)
        if m:
            if len(rest) < int(m.group(1)):
                return n
            rest = rest[int(m.group(1)) :]
        elif b"transfer-encoding: chunked" in head:
            stop = rest.find(b"0\r\n")
            tail = rest.find(b"\r\n\r\n", stop)
            if stop < 0 or tail < 0:
                return n
            rest = rest[tail + 4 :]
        n += 1


def _mask_date(data: bytes) -> bytes:
    return re.sub(rb"Date: [^\r]+", b"Date: -", data)


def _mask_revision(data: bytes) -> bytes:
    """(the two fake servers have seen different writes by then)"""
    return re.sub(rb'"revision":"\d+"', b'"revision":"-"', _mask_date(data))


@pytest.mark.parametrize("case", STATELESS, ids=[c["name"] for c in STATELESS])
def test_listener_reply_is_etcds(fast: ListenerThread, case: dict) -> None:
    got = X.normalize(X.send(fast.url, case), case, {})
    assert got == GOLDEN[case["name"]]


BYTE_CASES = [
    ("put", "/v3/kv/put", b'{"key":"YQ==","value":"Yg=="}'),
    ("range", "/v3/kv/range", b'{"key":"YQ=="}'),
    ("empty body", "/v3/kv/range", b""),
    ("chunked success", "/v3/kv/put", b'{"key":"Yg==","value":"' + b"QUFB" * 800 + b'"}'),
    ("server error", "/v3/kv/put", b'{"key":"","value":"Yg=="}'),
    ("bad json", "/v3/kv/put", b'{"key":'),
    ("wrong type", "/v3/kv/range", b'{"key":1}'),
    ("two values", "/v3/kv/range", b'{"key":"YQ=="} {"x":1}'),
]


@pytest.mark.parametrize("name,path,body", BYTE_CASES, ids=[c[0] for c in BYTE_CASES])
def test_fast_path_bytes_equal_aiohttps(
    fast: ListenerThread, slow: AppThread, name: str, path: str, body: bytes
) -> None:
    got = exchange(fast.url, [post(path, body)], 1)
    want = exchange(slow.url, [post(path, body)], 1)
    assert got.startswith(b"HTTP/1.1 ")
    assert _mask_date(got) == _mask_date(want)


def test_pipelined_requests_answered_in_order(fast: ListenerThread) -> None:
    reqs = b"".join(
        post("/v3/kv/put", b'{"key":"%s","value":"eA=="}' % k) for k in (b"cDE=", b"cDI=")
    ) + post("/v3/kv/range", b'{"key":"cDE=","range_end":"cDM="}')
    out = exchange(fast.url, [reqs], 3)
    assert _complete_answers(out) == 3
    last = out[out.rfind(b"\r\n\r\n") + 4 :]
    assert json.loads(last)["count"] == "2"  # both puts were applied before the range


def test_request_cut_at_every_byte(fast: ListenerThread) -> None:
    req = post("/v3/kv/put", b'{"key":"Y3V0","value":"eA=="}')
    out = exchange(fast.url, [req[i : i + 1] for i in range(len(req))], 1)
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b'"revision"' in out


def test_hand_over_to_aiohttp_keeps_order(fast: ListenerThread) -> None:
    """A GET after a fast-path put goes to aiohttp on the same connection, after the put's
    answer; a put after it is still answered (by aiohttp now)."""
    reqs = (
        post("/v3/kv/put", b'{"key":"aG8=","value":"eA=="}')
        + b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
        + post("/v3/kv/range", b'{"key":"aG8="}')
    )
    out = exchange(fast.url, [reqs], 3)
    assert _complete_answers(out) == 3
    first = out.find(b'"revision"')
    version = out.find(b'"etcdserver"')
    assert 0 <= first < version
    assert out.count(b"HTTP/1.1 200 OK") == 3


def test_connection_close_and_http10_go_to_aiohttp(fast: ListenerThread, slow: AppThread) -> None:
    for extra, first_line in ((b"Connection: close\r\n", None), (b"", b"HTTP/1.0")):
        req = post("/v3/kv/range", b'{"key":"bm9uZQ=="}', extra)
        if first_line:
            req = req.replace(b"HTTP/1.1\r\n", first_line + b"\r\n", 1)
        got = exchange(fast.url, [req], 1)
        want = exchange(slow.url, [req], 1)
        assert _mask_revision(got) == _mask_revision(want)


def test_half_closed_client_gets_its_answer(fast: ListenerThread) -> None:
    with socket.create_connection(("127.0.0.1", _port(fast.url)), timeout=5) as s:
        s.sendall(post("/v3/kv/put", b'{"key":"aGM=","value":"eA=="}'))
        s.shutdown(socket.SHUT_WR)
        out = b""
        while got := s.recv(65536):
            out += got
    assert out.startswith(b"HTTP/1.1 200 OK\r\n")
    assert _complete_answers(out) == 1
