"""The JSON gateway's unary calls over HTTP/1.1 keep-alive, without aiohttp's request machinery.

Profiling a 3-member cluster under 64 JSON clients put aiohttp's request and response objects
at about a fifth of every member's CPU, more than parsing, checking and applying the put
itself. Almost every request a client of the gateway sends is the same shape: ``POST`` of a
small JSON body with a Content-Length to one of the unary paths, on a keep-alive connection.
This protocol answers those itself, from the same ``run_unary`` the aiohttp route calls, and
hands anything else to aiohttp.

Invariants:
- Requests on a connection are answered in order, one at a time (pipelined ones wait in the
  buffer; reading pauses while it holds more than ``PAUSE_READING_AT`` bytes).
- A request this protocol does not take -- another method or path, HTTP/1.0, a chunked body,
  ``Expect``, ``Upgrade``, ``Connection`` other than keep-alive, a body over
  ``FAST_BODY_LIMIT``, anything irregular in the head -- hands the connection to aiohttp
  from that request's first byte on, for good, once every earlier answer has been written.
- An answer is byte-for-byte what the aiohttp route writes (``Date`` aside): the same header
  order, the same chunking past Go's 2048-byte buffer, the same error framing
  (``tests/api/test_http1.py`` compares the two).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import structlog

from raftkv.api.app import UNARY_PATHS, run_unary
from raftkv.api.gojson import GoJSONError
from raftkv.api.http import ERR_HEADERS, GO_BUFFER_BEFORE_CHUNKING, OK_HEADERS, error_body
from raftkv.api.ops import ClientOps
from raftkv.api.unary import Unary
from raftkv.errors import EtcdError, GrpcCode

__all__ = ["FAST_BODY_LIMIT", "GatewayHTTP1", "raw_gateway_error", "raw_grpc_error", "raw_ok"]

log = structlog.get_logger("raftkv.api")

FAST_BODY_LIMIT = 4 << 20  # larger bodies (over any sane --max-request-bytes) go to aiohttp
MAX_HEAD = 64 << 10  # a head still unfinished past this goes to aiohttp (which refuses it)
PAUSE_READING_AT = 8 << 20

_SPEC_BY_PATH: dict[bytes, Unary] = {p.encode(): s for p, s in UNARY_PATHS.items()}


def _lines(headers: dict[str, str]) -> bytes:
    return b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items())


# (the aiohttp route's header dicts, in their order: one source for both paths' bytes)
_OK_HEAD = b"HTTP/1.1 200 OK\r\n" + _lines(OK_HEADERS)
_ERR_HEADERS = _lines(ERR_HEADERS)
_TRAILER = b"0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n"

_date_cache: list[Any] = [0, b""]


def _date() -> bytes:
    """The ``Date`` header's value, formatted once per second (as aiohttp and Go do)."""
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[0] = now
        _date_cache[1] = formatdate(now, usegmt=True).encode()
    return _date_cache[1]  # type: ignore[no-any-return]


def _status_line(status: int) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status, HTTPStatus(status).phrase.encode())


def raw_ok(body: bytes) -> bytes:
    """A success: Content-Length up to Go's buffer, one chunk past it (``json_ok``)."""
    if len(body) <= GO_BUFFER_BEFORE_CHUNKING:
        return b"%sContent-Length: %d\r\nDate: %s\r\n\r\n%s" % (_OK_HEAD, len(body), _date(), body)
    return b"%sTransfer-Encoding: chunked\r\nDate: %s\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
        _OK_HEAD,
        _date(),
        len(body),
        body,
    )


def raw_gateway_error(message: str) -> bytes:
    """The gateway's own decoding error (``gateway_error``): JSON with a Content-Length."""
    body = error_body(message, int(GrpcCode.INVALID_ARGUMENT))
    return b"%s%sContent-Length: %d\r\nDate: %s\r\n\r\n%s" % (
        _status_line(400),
        _ERR_HEADERS,
        len(body),
        _date(),
        body,
    )


def raw_grpc_error(err: EtcdError) -> bytes:
    """An error from the gRPC server (``grpc_error``): one chunk, then the gRPC trailer."""
    body = error_body(err.message, int(err.code))
    return b"%s%sTrailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n" % (
        _status_line(err.http_status),
        _ERR_HEADERS,
    ) + b"Date: %s\r\n\r\n%x\r\n%s\r\n%s" % (_date(), len(body), body, _TRAILER)


def _parse_head(head: bytes) -> tuple[Unary, int, str | None] | None:
    """(the call, the body's length, the caller's token) of a request head this protocol
    takes, else None."""
    lines = head.split(b"\r\n")
    if head.count(b"\n") != len(lines) - 1 or head.count(b"\r") != len(lines) - 1:
        return None  # a bare CR or LF somewhere
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[0] != b"POST" or parts[2] != b"HTTP/1.1":
        return None
    spec = _SPEC_BY_PATH.get(parts[1])
    if spec is None:
        return None
    length: int | None = None
    token: bytes | None = None
    authorization: bytes | None = None
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or b" " in name or b"\t" in name:
            return None  # (folded or malformed lines included)
        name = name.lower()
        if name == b"content-length":
            value = value.strip()
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        elif name in (b"transfer-encoding", b"expect", b"upgrade"):
            return None
        elif name == b"connection":
            if value.strip().lower() != b"keep-alive":
                return None
        elif name == b"grpc-metadata-token":
            if token is None:
                token = value.strip()
        elif name == b"authorization" and authorization is None:
            authorization = value.strip()
    if length is None:
        length = 0
    elif length > FAST_BODY_LIMIT:
        return None
    # etcd reads the ``token`` metadata first, then ``authorization`` (``request_token``)
    chosen = token if token is not None else authorization
    return spec, length, None if chosen is None else chosen.decode("utf-8", "surrogateescape")


class GatewayHTTP1(asyncio.Protocol):
    """One client connection of the JSON gateway, until a request asks for aiohttp."""

    def __init__(self, ops: ClientOps, fallback: Callable[[], asyncio.Protocol]) -> None:
        self._ops = ops
        self._fallback = fallback
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._busy = False  # a request is being served: later bytes wait in _buf
        self._paused = False
        self._eof = False
        self._closed = False
        self._task: asyncio.Task[None] | None = None

    # --- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if not self._busy:
            self._next()
        elif len(self._buf) > PAUSE_READING_AT and not self._paused:
            assert self._transport is not None
            self._transport.pause_reading()
            self._paused = True

    def eof_received(self) -> bool:
        self._eof = True
        # busy: kept half-open until the answer in progress is written (else closed now)
        return self._busy

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True

    # --- serving --------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection now (the listener's shutdown), abandoning a call in flight."""
        if self._task is not None:
            self._task.cancel()
        if self._transport is not None:
            self._transport.close()

    def _next(self) -> None:
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            first = bytes(buf[:5])
            if len(buf) > MAX_HEAD or first != b"POST "[: len(first)]:
                self._hand_over()
            elif self._eof and self._transport is not None:
                self._transport.close()
            return
        parsed = _parse_head(bytes(buf[:end]))
        if parsed is None:
            self._hand_over()
            return
        spec, length, token = parsed
        start = end + 4
        if len(buf) < start + length:
            if self._eof and self._transport is not None:
                self._transport.close()  # (it never will be)
            return  # the rest of the body is still on its way
        body = bytes(buf[start : start + length])
        del buf[: start + length]
        self._busy = True
        self._task = asyncio.get_running_loop().create_task(self._serve(spec, body, token))

    async def _serve(self, spec: Unary, body: bytes, token: str | None) -> None:
        try:
            out = raw_ok(await run_unary(self._ops, spec, body, token))
        except GoJSONError as e:
            out = raw_gateway_error(str(e))
        except EtcdError as e:
            out = raw_grpc_error(e)
        except Exception as e:  # never a traceback to the client (as the aiohttp route)
            log.exception("internal_error", path=spec.method)
            out = raw_grpc_error(EtcdError(str(e) or type(e).__name__, GrpcCode.UNKNOWN))
        self._busy = False
        self._task = None
        t = self._transport
        if self._closed or t is None or t.is_closing():
            return  # the client hung up first: no error of ours
        t.write(out)
        if self._paused:
            self._paused = False
            t.resume_reading()
        if self._buf:
            self._next()
        elif self._eof:
            t.close()

    def _hand_over(self) -> None:
        """aiohttp serves this connection from here on, starting with what is buffered."""
        t = self._transport
        assert t is not None
        proto = self._fallback()
        t.set_protocol(proto)
        proto.connection_made(t)
        if self._paused:
            t.resume_reading()
        data, self._buf = bytes(self._buf), bytearray()
        if data:
            proto.data_received(data)
        if self._eof:
            proto.eof_received()
