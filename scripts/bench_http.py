"""A lean HTTP/1.1 keep-alive client for the load generator of ``scripts/bench.py``.

aiohttp's client costs about 190 us of CPU per request; on a 2-core machine shared with the
servers that is CPU the servers do not get, and it dilutes any difference between them. This
client does only what a closed-loop benchmark client needs: one connection per client, one
request in flight on it, request bytes built before the run, and a parser that reads no more
of a response than its status and where it ends.

``ResponseParser`` is sans-I/O (bytes in, the status of each complete response out). It
understands a body delimited by ``Content-Length`` (what etcd's gateway and raftkv send for
small unary answers) and ``Transfer-Encoding: chunked`` (what Go's net/http switches to when a
handler writes more than its 2 KiB buffer without a length, e.g. a range of an 8 KiB value).
A response with neither and a status that has a body is a protocol error: the connection is
closed and the request counts as failed. ``HttpConn`` is the asyncio Protocol around it; a
request still unanswered when its connection closes gets status 0 (an error).
"""

from __future__ import annotations

import asyncio
import ssl

__all__ = ["HttpConn", "ProtocolError", "ResponseParser", "request_head"]


class ProtocolError(Exception):
    """The server's bytes are not an HTTP/1.1 response this parser understands."""


_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER = range(5)


class ResponseParser:
    """Feeds on the bytes of a stream of responses; ``feed`` returns the status of each
    response that became complete. Invariant: ``_buf`` holds only bytes not yet consumed;
    in ``_BODY`` / ``_CHUNK_DATA`` states ``_left`` is how many body bytes remain (for a chunk:
    its data and the CRLF after it, skipped unread)."""

    __slots__ = ("_buf", "_left", "_state", "_status")

    def __init__(self) -> None:
        self._buf = b""
        self._state = _HEAD
        self._status = 0
        self._left = 0

    def feed(self, data: bytes) -> list[int]:
        buf = self._buf + data if self._buf else data
        done: list[int] = []
        pos = 0
        while True:
            state = self._state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    break
                self._head(buf[pos:end])
                pos = end + 4
            elif state in (_BODY, _CHUNK_DATA):
                take = min(self._left, len(buf) - pos)
                pos += take
                self._left -= take
                if self._left:
                    break
                if state == _CHUNK_DATA:
                    self._state = _CHUNK_SIZE
                    continue
            elif state == _CHUNK_SIZE:
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                try:
                    size = int(buf[pos:end].split(b";", 1)[0], 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {buf[pos:end]!r}") from None
                pos = end + 2
                if size:
                    self._state, self._left = _CHUNK_DATA, size + 2
                else:
                    self._state = _TRAILER
                continue
            else:  # _TRAILER: header lines after the last chunk, up to an empty line
                end = buf.find(b"\r\n", pos)
                if end < 0:
                    break
                blank = end == pos
                pos = end + 2
                if not blank:
                    continue
            if self._state in (_BODY, _TRAILER) and not self._left:
                done.append(self._status)
                self._state = _HEAD
        self._buf = buf[pos:]
        return done

    def _head(self, head: bytes) -> None:
        if (
            not head.startswith(b"HTTP/1.")
            or len(head) < 12
            or head[12:13] not in (b" ", b"\r", b"")
        ):
            raise ProtocolError(f"bad status line {head[:40]!r}")
        try:
            self._status = status = int(head[9:12])
        except ValueError:
            raise ProtocolError(f"bad status line {head[:40]!r}") from None
        lower = head.lower()  # header names are case-insensitive
        chunked = False
        at = lower.find(b"\r\ntransfer-encoding:")
        if at >= 0:
            end = lower.find(b"\r\n", at + 2)
            chunked = b"chunked" in lower[at : end if end >= 0 else len(lower)]
        at = lower.find(b"\r\ncontent-length:")
        if 100 <= status < 200:  # an interim answer: the real one follows, skip it
            self._state = _HEAD
        elif chunked:
            self._state = _CHUNK_SIZE
        elif at >= 0:
            end = lower.find(b"\r\n", at + 2)
            self._state, self._left = _BODY, int(lower[at + 17 : end if end >= 0 else len(lower)])
        elif status in (204, 304):
            self._state, self._left = _BODY, 0
        else:
            raise ProtocolError("response with neither Content-Length nor chunked encoding")


def request_head(path: str, host: str, length: int, token: str | None) -> bytes:
    """The head of a POST of a JSON body of ``length`` bytes (everything before the body)."""
    auth = f"Authorization: {token}\r\n" if token is not None else ""
    return (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n{auth}\r\n"
    ).encode()


class HttpConn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight (a closed-loop client)."""

    def __init__(self) -> None:
        self._parser = ResponseParser()
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[int] | None = None
        self.closed = False

    @classmethod
    async def open(cls, host: str, port: int, ssl_ctx: ssl.SSLContext | None) -> HttpConn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            cls, host, port, ssl=ssl_ctx, server_hostname=host if ssl_ctx else None
        )
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's: no subclass

    def data_received(self, data: bytes) -> None:
        try:
            statuses = self._parser.feed(data)
        except (ProtocolError, ValueError):
            self.close()
            return
        for status in statuses:
            waiter, self._waiter = self._waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(status)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(0)

    def request(self, data: bytes) -> asyncio.Future[int]:
        """Send one request; the future gets its status (0 if the connection closes first)."""
        assert self._transport is not None and self._waiter is None
        waiter = asyncio.get_running_loop().create_future()
        self._waiter = waiter
        self._transport.write(data)
        return waiter

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
