"""The gateway's two bidirectional streams: ``/v3/watch`` and ``/v3/lease/keepalive``.

The request body is a sequence of concatenated JSON request objects, read as it arrives; the
response is chunked newline-delimited JSON, one ``{"result": <response>}`` per line, flushed as
produced. As in grpc-gateway v1: a bad *first* request fails the whole call (HTTP 500, code 2,
before anything is sent); a bad later request just ends the reading side. Response headers go
out with the first line, so a watch that never produces anything sends nothing at all. A watch
stream never ends by itself; a keepalive stream ends once the body has ended and every request
has been answered.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
from typing import Any

from aiohttp import web

from raftkv.api.codec import decode_message, dumps, encoder
from raftkv.api.gojson import GoJSONError, decode_first_value
from raftkv.api.http import CORS, GO_BUFFER_BEFORE_CHUNKING, request_token
from raftkv.api.ops import ClientOps, WatchStreamOps
from raftkv.api.unary import keep_alive_once, watch_refusal
from raftkv.errors import EtcdError, GrpcCode, http_status
from raftkv.pb import rpc

log = logging.getLogger(__name__)

__all__ = [
    "BodyReader",
    "apply_watch_request",
    "handle_keepalive",
    "handle_watch",
    "stream_refusal",
]

_STREAM_HEADERS = {
    **CORS,
    "Content-Type": "application/json",
    "Grpc-Metadata-Content-Type": "application/grpc",
}
_HTTP_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    412: "Precondition Failed",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class BodyReader:
    """Yields the JSON values of a request body one by one as its bytes arrive."""

    def __init__(self, content: Any) -> None:
        self._content = content
        self._dec = codecs.getincrementaldecoder("utf-8")("replace")
        self._buf = ""
        self._pos = 0
        self._eof = False

    async def next(self) -> tuple[bool, Any]:
        """``(True, value)``, or ``(False, None)`` at the end of the body. Raises GoJSONError."""
        while True:
            try:
                found, value, end = decode_first_value(self._buf, self._pos)
            except GoJSONError as e:
                if self._eof or str(e) != "unexpected EOF":
                    raise
                found, value, end = False, None, self._pos
                need_more = True
            else:
                need_more = not found
                if found:
                    # A scalar at the very end might continue in the next chunk.
                    if (
                        end == len(self._buf)
                        and not self._eof
                        and self._buf[self._pos :].lstrip()[:1] not in ("{", "[")
                    ):
                        need_more = True
                    else:
                        self._pos = end
                        if self._pos > 65536:
                            self._buf = self._buf[self._pos :]
                            self._pos = 0
                        return True, value
            if need_more:
                if self._eof:
                    return False, None
                chunk = await self._content.readany()
                if not chunk:
                    self._eof = True
                    self._buf += self._dec.decode(b"", final=True)
                else:
                    self._buf += self._dec.decode(chunk)


class _LineWriter:
    """Sends ``{"result": ...}`` lines, preparing the response with the first one."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.resp: web.StreamResponse | None = None

    async def _start(self, status: int = 200, headers: dict | None = None) -> web.StreamResponse:
        resp = _Stream(status=status, headers=headers or _STREAM_HEADERS)
        resp.enable_chunked_encoding()
        await resp.prepare(self.request)
        self.resp = resp
        return resp

    async def send(self, data: bytes) -> None:
        resp = self.resp or await self._start()
        await resp.write(data)

    async def stream_error(self, err: EtcdError) -> None:
        """grpc-gateway's in-stream error chunk (no newline after it)."""
        status = http_status(err.code)
        chunk = dumps(
            {
                "error": {
                    "grpc_code": int(err.code),
                    "http_code": status,
                    "message": err.message,
                    "http_status": _HTTP_TEXT.get(status, ""),
                }
            }
        )
        if self.resp is None:
            await self._start(status, {**CORS, "Content-Type": "application/json"})
        assert self.resp is not None
        await self.resp.write(chunk)

    async def finish(self) -> web.StreamResponse:
        if self.resp is None:
            # Nothing was ever sent: grpc-gateway still answers 200, chunked, empty.
            await self._start(200, {**CORS, "Content-Type": "application/json"})
        assert self.resp is not None
        with contextlib.suppress(ConnectionError):
            await self.resp.write_eof()
        return self.resp


class _Stream(web.StreamResponse):
    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self._headers.popall("Server", None)


async def stream_refusal(request: web.Request, err: EtcdError) -> web.StreamResponse:
    """A stream the server refuses before any message (grpc-gateway: the error object as the
    only chunk, under the error's HTTP status)."""
    out = _LineWriter(request)
    await out.stream_error(err)
    return await out.finish()


def _first_request_error(message: str) -> web.Response:
    from raftkv.api.http import gateway_error

    return gateway_error(message, GrpcCode.UNKNOWN)


def _line(obj: Any) -> bytes:
    return dumps({"result": encoder(type(obj))(obj)}) + b"\n"


async def _send_line(out: _LineWriter, line: bytes) -> None:
    """One chunk per message, as grpc-gateway's Write+Write("\\n")+Flush through Go's 2048-byte
    buffer produces: a message longer than the buffer goes out alone, its newline after it."""
    if len(line) - 1 > GO_BUFFER_BEFORE_CHUNKING:
        await out.send(line[:-1])
        await out.send(b"\n")
    else:
        await out.send(line)


def _gone(request: web.Request) -> bool:
    t = request.transport
    return t is None or t.is_closing()


# --- watch -------------------------------------------------------------------------------------


async def apply_watch_request(
    stream: WatchStreamOps,
    wr: rpc.WatchRequest,
    server: ClientOps,
    token: str | None,
    cert_user: str | None = None,
) -> int | None:
    """Apply one request to the member's watch stream; a create returns the new watch id (-1
    when refused: by the stream, or by the auth check of its range, ``token`` and
    ``cert_user`` being the stream's), anything else None."""
    c = wr.create_request
    if c is not None:
        if not c.key:
            c.key = b"\x00"  # etcd: "\x00 is the smallest key"
        refused = await watch_refusal(server, token, c, cert_user)
        if refused is not None:
            stream.refuse(refused)
            return -1
        return stream.create(c)
    if wr.cancel_request is not None:
        stream.cancel(wr.cancel_request.watch_id)
    elif wr.progress_request is not None:
        stream.request_progress()
    return None


async def handle_watch(request: web.Request, server: ClientOps) -> web.StreamResponse:
    reader = BodyReader(request.content)
    try:
        found, value = await reader.next()
        first = decode_message(rpc.WatchRequest, value) if found else None
    except GoJSONError as e:
        return _first_request_error(str(e))

    ready = asyncio.Event()
    stream = server.new_watch_stream(ready.set)
    out = _LineWriter(request)
    token = request_token(request)  # the stream's, for every create on it (gRPC's metadata)

    async def read_rest() -> None:
        while True:
            try:
                found, value = await reader.next()
                if not found:
                    return
                wr = decode_message(rpc.WatchRequest, value)
            except (GoJSONError, ConnectionError, asyncio.IncompleteReadError):
                return  # grpc-gateway stops sending; the watch stream stays open
            await apply_watch_request(stream, wr, server, token)
            ready.set()

    reader_task: asyncio.Task | None = None
    try:
        if first is not None:
            await apply_watch_request(stream, first, server, token)
            ready.set()
            reader_task = asyncio.ensure_future(read_rest())
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 1.0)
            if _gone(request):
                break
            if not ready.is_set():
                continue
            ready.clear()
            batch = stream.drain()
            for r in batch:  # one chunk per response, as grpc-gateway flushes each
                await _send_line(out, _line(r))
    except (ConnectionError, asyncio.CancelledError):
        pass
    except EtcdError as e:  # the server gave up on the stream (stopping, ...)
        await out.stream_error(e)
    except Exception as e:
        log.exception("watch stream failed")
        await out.stream_error(EtcdError(str(e) or type(e).__name__, GrpcCode.UNKNOWN))
    finally:
        if reader_task is not None:
            reader_task.cancel()
        stream.close()
    return out.resp if out.resp is not None else web.Response(status=499)


# --- lease keepalive ---------------------------------------------------------------------------


async def handle_keepalive(request: web.Request, server: ClientOps) -> web.StreamResponse:
    reader = BodyReader(request.content)
    out = _LineWriter(request)
    first = True
    while True:
        try:
            found, value = await reader.next()
            if not found:
                break
            req = decode_message(rpc.LeaseKeepAliveRequest, value)
        except GoJSONError as e:
            if first:
                return _first_request_error(str(e))
            break
        first = False
        try:
            resp = await keep_alive_once(server, req)
        except EtcdError as e:
            await out.stream_error(e)
            return await out.finish()
        try:
            await _send_line(out, _line(resp))
        except ConnectionError:
            return out.resp or web.Response(status=499)
    return await out.finish()
