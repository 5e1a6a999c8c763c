"""A small gRPC server: HTTP/2 framing (RFC 9113) and gRPC's message framing on an asyncio
Protocol, for the member's client connections that open with HTTP/2's preface.

Why not grpc.aio: its Python layer costs ~280 µs of CPU per unary call on this machine even
with an empty handler, over three times raftkv's whole JSON request path; etcd's Go server
costs a fraction of that. This server handles exactly what gRPC over cleartext HTTP/2 needs:

- connection: SETTINGS (acknowledged; the peer's INITIAL_WINDOW_SIZE and MAX_FRAME_SIZE
  honoured), PING (answered; policed as etcd's grpc-go server does: pings every 5 s during a
  call are fine, faster ones end in GOAWAY too_many_pings), WINDOW_UPDATE, GOAWAY, RST_STREAM
  (cancels the call's task), PRIORITY (ignored), padding, CONTINUATION;
- flow control: a stream's receive window holds one request of the largest size allowed, and a
  streaming call's window is granted back as the handler reads its requests (a client cannot
  queue more than that unread); the connection's window is granted back in large increments.
  What is sent waits for the peer's connection and stream windows and for the transport's
  write buffer (a slow reader holds back the writer: watch back-pressure);
- headers: HPACK decoding (the ``hpack`` package, with the peer's dynamic table); responses
  are encoded without the dynamic table, from constant blocks;
- calls: the four gRPC kinds, each a task; an error before any message is a trailers-only
  response; ``grpc-message`` is percent-encoded; compressed messages are refused.

A handler gets the decoded request (unary, server-streaming) and a ``Call`` (read, write,
metadata, abort), the same surface grpc.aio's ServicerContext gives.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import hpack
import structlog

from raftkv.errors import GrpcCode

__all__ = ["EOF", "Call", "GrpcAbort", "H2Protocol", "Method"]

log = structlog.get_logger("raftkv.api")

# frame types
_DATA, _HEADERS, _PRIORITY, _RST, _SETTINGS, _PUSH, _PING, _GOAWAY, _WINDOW, _CONT = range(10)
# flags
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIO = 0x1, 0x1, 0x4, 0x8, 0x20
# settings
_S_INITIAL_WINDOW, _S_MAX_FRAME = 0x4, 0x5
_MAX_WINDOW = 2**31 - 1
_REFILL = 1 << 30  # the connection's window: granted back once this many bytes are owed
_PROTOCOL_ERROR, _FLOW_CONTROL_ERROR, _ENHANCE_YOUR_CALM = 0x1, 0x3, 0xB
# grpc-go's keepalive enforcement with etcd's settings (--grpc-keepalive-min-time 5s)
_PING_MIN_TIME = 5.0
_PING_IDLE_MIN_TIME = 2 * 3600.0  # no call open: grpc-go's defaultPingTimeout
_MAX_PING_STRIKES = 2
_ONE_BYTE_INDEXED = bytes(range(0x80, 0xFF))  # HPACK indexed header fields 1..126

_frame_head = struct.Struct(">IBI")  # (length << 8 | type), flags, stream id


def _frame(ftype: int, flags: int, sid: int, payload: bytes = b"") -> bytes:
    return _frame_head.pack(len(payload) << 8 | ftype, flags, sid) + payload


def _literal(name: bytes, value: bytes) -> bytes:
    """HPACK literal header field without indexing, new name, no Huffman (lengths < 127)."""
    return b"\x00" + bytes((len(name),)) + name + _hpack_str(value)


def _hpack_str(value: bytes) -> bytes:
    n = len(value)
    if n < 127:
        return bytes((n,)) + value
    out = bytearray((127,))
    n -= 127
    while n >= 128:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out) + value


# ":status: 200" is static entry 8; content-type (31) as a literal with its indexed name
_RESPONSE_HEADERS = b"\x88" + b"\x0f\x10" + _hpack_str(b"application/grpc")
_OK_TRAILERS = _literal(b"grpc-status", b"0")
_OPEN_CONNECTION_WINDOW = _frame(_WINDOW, 0, 0, struct.pack(">I", _MAX_WINDOW - 65535))
_SETTINGS_ACK = _frame(_SETTINGS, _ACK, 0)


def _grpc_message(text: str) -> bytes:
    """gRPC's percent-encoding of grpc-message: printable ASCII but '%' as is."""
    out = bytearray()
    for b in text.encode():
        if 0x20 <= b <= 0x7E and b != 0x25:
            out.append(b)
        else:
            out += b"%%%02X" % b
    return bytes(out)


class _EOF:
    def __repr__(self) -> str:
        return "EOF"


EOF = _EOF()  # what ``Call.read`` returns once the client has finished sending


class GrpcAbort(Exception):
    """Ends a call with a status (raised by ``Call.abort``)."""

    def __init__(self, code: GrpcCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class Method:
    """One RPC: ``handler(request_or_None, call)``; for unary calls it returns the response."""

    handler: Callable[[Any, Call], Awaitable[Any]]
    deserialize: Callable[[bytes], Any]
    serialize: Callable[[Any], bytes]
    client_streaming: bool = False
    server_streaming: bool = False


class Call:
    """One gRPC call on a connection: its request messages, metadata, and response side."""

    __slots__ = (
        "_conn",
        "_incoming",
        "_need_window",
        "_partial",
        "headers_sent",
        "metadata",
        "method",
        "remote_done",
        "send_window",
        "sid",
        "task",
    )

    def __init__(self, conn: H2Protocol, sid: int, method: Method, metadata: list) -> None:
        self._conn = conn
        self.sid = sid
        self.method = method
        self.metadata = metadata
        self._partial = bytearray()
        self._incoming: asyncio.Queue | None = asyncio.Queue() if method.client_streaming else None
        self.headers_sent = False
        self.remote_done = False
        self.send_window = conn.peer_initial_window
        self._need_window: asyncio.Event | None = None
        self.task: asyncio.Task | None = None

    # --- the handler's side --------------------------------------------------------------------

    def invocation_metadata(self) -> list[tuple[str, str]]:
        return self.metadata

    def peer_cert(self) -> dict | None:
        """The client's certificate as ``ssl`` shows it, when the TLS handshake verified one
        (``--client-cert-auth``); None otherwise."""
        t = self._conn.transport
        cert = t.get_extra_info("peercert") if t is not None else None
        return cert or None

    async def read(self) -> Any:
        """The next request message, or ``EOF``."""
        assert self._incoming is not None
        item = await self._incoming.get()
        if isinstance(item, GrpcAbort):
            raise item
        if item is EOF:
            return EOF
        msg, size = item
        self._conn.credit(self.sid, size)  # consumed: the client may send as much again
        return msg

    async def write(self, msg: Any) -> None:
        data = self.method.serialize(msg)
        await self._conn.send_message(self, struct.pack(">BI", 0, len(data)) + data)

    async def abort(self, code: GrpcCode, details: str) -> NoReturn:
        raise GrpcAbort(code, details)

    # --- the connection's side -----------------------------------------------------------------

    def data(self, chunk: bytes, max_message: int) -> list[bytes]:
        """Request bytes in; whole gRPC messages out (their declared size and compressed flag
        checked first, as grpc-go does)."""
        buf = self._partial
        buf += chunk
        out = []
        while len(buf) >= 5:
            flag, n = struct.unpack_from(">BI", buf)
            if n > max_message:
                raise GrpcAbort(
                    GrpcCode.RESOURCE_EXHAUSTED,
                    f"grpc: received message larger than max ({n} vs. {max_message})",
                )
            if len(buf) < 5 + n:
                break
            if flag:
                raise GrpcAbort(
                    GrpcCode.UNIMPLEMENTED, "grpc: Decompressor is not installed for grpc-encoding"
                )
            out.append(bytes(buf[5 : 5 + n]))
            del buf[: 5 + n]
        return out

    def deliver(self, raw: bytes) -> None:
        assert self._incoming is not None
        try:
            self._incoming.put_nowait((self.method.deserialize(raw), 5 + len(raw)))
        except Exception as e:
            self._incoming.put_nowait(_unmarshal_error(e))

    def end_of_requests(self) -> None:
        if self._incoming is not None:
            self._incoming.put_nowait(EOF)

    def window_opened(self) -> None:
        if self._need_window is not None:
            self._need_window.set()


def _unmarshal_error(e: Exception) -> GrpcAbort:
    return GrpcAbort(GrpcCode.INTERNAL, f"grpc: error unmarshalling request: {e}")


class H2Protocol(asyncio.Protocol):
    """One client connection speaking gRPC over HTTP/2 (starting with the client preface)."""

    def __init__(self, methods: dict[str, Method], max_message: int) -> None:
        self.methods = methods
        self.max_message = max_message
        self.transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._preface_seen = False
        self._decoder = hpack.Decoder()
        self._calls: dict[int, Call] = {}
        self._header_block: tuple[int, int, bytearray] | None = None  # sid, flags, block
        self.peer_initial_window = 65535
        self.peer_max_frame = 16384
        self._conn_send_window = 65535
        self._recv_unacked = 0
        self._last_sid = 0
        self._goaway = False
        self._paused = False
        self._writable: asyncio.Event | None = None
        self._window_waiters: set[Call] = set()
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self._header_cache: dict[bytes, tuple[str, str, list[tuple[str, str]]]] = {}
        self._last_ping = float("-inf")
        self._ping_strikes = 0
        self._sent_since_ping = False

    # --- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        # a stream's window holds one whole request: a unary call never waits for a grant,
        # and a streaming call's unread requests stay within it (granted back as read)
        window = min(_MAX_WINDOW, self.max_message + 5 + 65536)
        settings = _frame(_SETTINGS, 0, 0, struct.pack(">HI", _S_INITIAL_WINDOW, window))
        transport.write(settings + _OPEN_CONNECTION_WINDOW)

    def connection_lost(self, exc: Exception | None) -> None:
        for call in list(self._calls.values()):
            if call.task is not None:
                call.task.cancel()
        self._calls.clear()
        if self._writable is not None:
            self._writable.set()
        for c in self._window_waiters:
            c.window_opened()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._writable is not None:
            self._writable.set()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        if not self._preface_seen:
            if len(buf) < 24:
                return
            pos = 24  # checked by the listener
            self._preface_seen = True
        n = len(buf)
        try:
            while n - pos >= 9:
                head, flags, sid = _frame_head.unpack_from(buf, pos)
                length = head >> 8
                end = pos + 9 + length
                if end > n:
                    break
                self._frame(head & 0xFF, flags, sid & 0x7FFFFFFF, bytes(buf[pos + 9 : end]))
                pos = end
        except _ConnectionError as e:
            self._close_with(e.code, str(e))
            return
        del buf[:pos]

    # --- frames in -----------------------------------------------------------------------------

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes) -> None:
        if self._header_block is not None and ftype != _CONT:
            raise _ConnectionError(_PROTOCOL_ERROR, "expected CONTINUATION")
        if ftype == _DATA:
            self._data(flags, sid, payload)
        elif ftype == _HEADERS:
            if flags & _PADDED:
                payload = payload[1 : len(payload) - payload[0]]
            if flags & _PRIO:
                payload = payload[5:]
            if flags & _END_HEADERS:
                self._headers(sid, flags, payload)
            else:
                self._header_block = (sid, flags, bytearray(payload))
        elif ftype == _CONT:
            if self._header_block is None or self._header_block[0] != sid:
                raise _ConnectionError(_PROTOCOL_ERROR, "unexpected CONTINUATION")
            self._header_block[2].extend(payload)
            if flags & _END_HEADERS:
                hsid, hflags, block = self._header_block
                self._header_block = None
                self._headers(hsid, hflags, bytes(block))
        elif ftype == _SETTINGS:
            if not flags & _ACK:
                self._settings(payload)
        elif ftype == _WINDOW:
            self._window_update(sid, struct.unpack(">I", payload)[0] & 0x7FFFFFFF)
        elif ftype == _PING:
            if not flags & _ACK:
                self._write(_frame(_PING, _ACK, 0, payload))
                self._police_ping()
        elif ftype == _RST:
            call = self._calls.pop(sid, None)
            if call is not None and call.task is not None:
                call.task.cancel()
        elif ftype == _GOAWAY:
            self._goaway = True
            if not self._calls and self.transport is not None:
                self._flush()
                self.transport.close()
        # PRIORITY, PUSH_PROMISE (never sent by clients) and unknown types are ignored

    def _police_ping(self) -> None:
        """grpc-go's keepalive enforcement as etcd 3.4 configures it (MinTime 5 s, no pings
        without a call): a ping sooner than that after the previous one is a strike, unless the
        server has sent headers or data since; the third strike is GOAWAY too_many_pings."""
        now = self._loop.time()
        last, self._last_ping = self._last_ping, now
        if self._sent_since_ping:
            self._sent_since_ping = False
            self._ping_strikes = 0
            return
        min_gap = _PING_MIN_TIME if self._calls else _PING_IDLE_MIN_TIME
        if now - last < min_gap:
            self._ping_strikes += 1
        if self._ping_strikes > _MAX_PING_STRIKES:
            log.info("grpc_too_many_pings")
            goaway = struct.pack(">II", self._last_sid, _ENHANCE_YOUR_CALM) + b"too_many_pings"
            self._write(_frame(_GOAWAY, 0, 0, goaway))
            self._flush()
            if self.transport is not None:
                self.transport.close()

    def _settings(self, payload: bytes) -> None:
        for i in range(0, len(payload) - 5, 6):
            key, value = struct.unpack_from(">HI", payload, i)
            if key == _S_INITIAL_WINDOW:
                if value > _MAX_WINDOW:
                    raise _ConnectionError(_FLOW_CONTROL_ERROR, "window too large")
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for call in self._calls.values():
                    call.send_window += delta
                    call.window_opened()
            elif key == _S_MAX_FRAME:
                self.peer_max_frame = value
        self._write(_SETTINGS_ACK)

    def _window_update(self, sid: int, inc: int) -> None:
        if sid == 0:
            self._conn_send_window += inc
            for c in list(self._window_waiters):
                c.window_opened()
        else:
            call = self._calls.get(sid)
            if call is not None:
                call.send_window += inc
                call.window_opened()

    def _headers(self, sid: int, flags: int, block: bytes) -> None:
        call = self._calls.get(sid)
        if call is not None:  # trailers from the client: the end of its requests
            self._decode_headers(block)  # (keeps the peer's dynamic table in step)
            if flags & _END_STREAM:
                self._remote_end(call)
            return
        if sid <= self._last_sid or not sid & 1:
            raise _ConnectionError(_PROTOCOL_ERROR, "bad stream id")
        self._last_sid = sid
        path, encoding, metadata = self._decode_headers(block)
        method = self.methods.get(path)
        if method is None:
            self._reject(sid, GrpcCode.UNIMPLEMENTED, self._unknown(path))
            return
        call = Call(self, sid, method, metadata)
        self._calls[sid] = call
        if encoding and encoding != "identity":
            why = f'grpc: Decompressor is not installed for grpc-encoding "{encoding}"'
            self._reject(sid, GrpcCode.UNIMPLEMENTED, why)
            return
        if method.client_streaming:
            call.task = asyncio.ensure_future(self._run(call, None))
        if flags & _END_STREAM:
            self._remote_end(call)

    def _decode_headers(self, block: bytes) -> tuple[str, str, list[tuple[str, str]]]:
        """(:path, grpc-encoding, metadata) of a request's header block. A client repeating a
        call sends a block of indexed fields only (their table entries added by earlier
        blocks), which changes nothing in the table: its meaning is cached until a block that
        may change the table arrives."""
        indexed_only = not block.translate(None, _ONE_BYTE_INDEXED)
        if indexed_only:
            got = self._header_cache.get(block)
            if got is not None:
                return got
        else:
            self._header_cache.clear()
        try:
            headers = self._decoder.decode(block)
        except hpack.HPACKError as e:
            raise _ConnectionError(0x9, f"hpack: {e}") from e  # COMPRESSION_ERROR
        path = ""
        encoding = ""
        metadata = []
        for name, value in headers:
            if name == ":path":
                path = value
            elif name == "grpc-encoding":
                encoding = value
            elif name[0] != ":":
                metadata.append((name, value))
        got = (path, encoding, metadata)
        if indexed_only and len(self._header_cache) < 64:
            self._header_cache[block] = got
        return got

    def _data(self, flags: int, sid: int, payload: bytes) -> None:
        size = len(payload)
        if flags & _PADDED:
            payload = payload[1 : len(payload) - payload[0]]
        self._recv_unacked += size
        if self._recv_unacked >= _REFILL:
            self._write(_frame(_WINDOW, 0, 0, struct.pack(">I", self._recv_unacked)))
            self._recv_unacked = 0
        call = self._calls.get(sid)
        if call is None:
            return  # a call already finished or reset
        if size > len(payload) and call.method.client_streaming:
            self.credit(sid, size - len(payload))  # padding is never read
        try:
            msgs = call.data(payload, self.max_message)
        except GrpcAbort as e:
            self._end_call(call, e)
            return
        for raw in msgs:
            if call.method.client_streaming:
                call.deliver(raw)
            elif call.task is None:
                call.task = asyncio.ensure_future(self._run(call, raw))
        if flags & _END_STREAM:
            self._remote_end(call)

    def _remote_end(self, call: Call) -> None:
        call.remote_done = True
        if call.method.client_streaming:
            call.end_of_requests()
        elif call.task is None:  # a unary request must carry one message
            self._end_call(call, GrpcAbort(GrpcCode.INTERNAL, "grpc: no request message"))

    # --- calls ---------------------------------------------------------------------------------

    async def _run(self, call: Call, raw: bytes | None) -> None:
        m = call.method
        try:
            req = None
            if raw is not None:
                try:
                    req = m.deserialize(raw)
                except Exception as e:
                    raise _unmarshal_error(e) from e
            resp = await m.handler(req, call)
            if not m.server_streaming:
                data = m.serialize(resp)
                if not call.headers_sent and self._can_send(call, len(data) + 5):
                    # the whole answer in one write
                    self._spend(call, len(data) + 5)
                    call.headers_sent = True
                    self._write(
                        self._headers_frame(call.sid, _RESPONSE_HEADERS, 0)
                        + _frame(_DATA, 0, call.sid, struct.pack(">BI", 0, len(data)) + data)
                        + self._headers_frame(call.sid, _OK_TRAILERS, _END_STREAM)
                    )
                    self._forget(call)
                    return
                await call.write(resp)
            self._end_call(call, None)
        except GrpcAbort as e:
            self._end_call(call, e)
        except asyncio.CancelledError:
            self._forget(call)
            raise
        except Exception as e:
            log.error("grpc_handler_failed", exc_info=e)
            self._end_call(call, GrpcAbort(GrpcCode.UNKNOWN, str(e) or type(e).__name__))

    def credit(self, sid: int, n: int) -> None:
        """Give ``n`` bytes of stream ``sid``'s receive window back to the client."""
        if n and sid in self._calls:
            self._write(_frame(_WINDOW, 0, sid, struct.pack(">I", n)))

    def _forget(self, call: Call) -> None:
        self._calls.pop(call.sid, None)
        self._window_waiters.discard(call)
        if self._goaway and not self._calls and self.transport is not None:
            self._flush()
            self.transport.close()

    def _end_call(self, call: Call, err: GrpcAbort | None) -> None:
        """Trailers (or a trailers-only response) with the call's status; the stream ends."""
        if err is None:
            block = _OK_TRAILERS
        else:
            block = _literal(b"grpc-status", b"%d" % int(err.code)) + _literal(
                b"grpc-message", _grpc_message(err.details)
            )
        if not call.headers_sent:
            block = _RESPONSE_HEADERS + block
            call.headers_sent = True
        self._write(self._headers_frame(call.sid, block, _END_STREAM))
        if not call.remote_done:  # the client may still be sending: it has nothing to say
            self._write(_frame(_RST, 0, call.sid, struct.pack(">I", 0)))  # NO_ERROR
        if call.task is not None and call.task is not asyncio.current_task():
            call.task.cancel()
        self._forget(call)

    def _unknown(self, path: str) -> str:
        """grpc-go's words for a path it has no handler for."""
        service, _, method = path.lstrip("/").partition("/")
        if not method:
            return f"malformed method name: {path!r}"
        if any(p.startswith(f"/{service}/") for p in self.methods):
            return f"unknown method {method} for service {service}"
        return f"unknown service {service}"

    def _reject(self, sid: int, code: GrpcCode, details: str) -> None:
        block = (
            _RESPONSE_HEADERS
            + _literal(b"grpc-status", b"%d" % int(code))
            + _literal(b"grpc-message", _grpc_message(details))
        )
        self._write(self._headers_frame(sid, block, _END_STREAM))
        self._calls.pop(sid, None)

    def _headers_frame(self, sid: int, block: bytes, flags: int) -> bytes:
        self._sent_since_ping = True
        limit = self.peer_max_frame
        if len(block) <= limit:
            return _frame(_HEADERS, flags | _END_HEADERS, sid, block)
        out = [_frame(_HEADERS, flags, sid, block[:limit])]
        rest = block[limit:]
        while rest:
            chunk, rest = rest[:limit], rest[limit:]
            out.append(_frame(_CONT, 0 if rest else _END_HEADERS, sid, chunk))
        return b"".join(out)

    # --- sending -------------------------------------------------------------------------------

    def _can_send(self, call: Call, n: int) -> bool:
        return (
            n <= self._conn_send_window
            and n <= call.send_window
            and n <= self.peer_max_frame
            and not self._paused
        )

    def _spend(self, call: Call, n: int) -> None:
        self._conn_send_window -= n
        call.send_window -= n

    async def send_message(self, call: Call, payload: bytes) -> None:
        """One length-prefixed message as DATA frames, within the peer's windows."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("client connection closed")
        if not call.headers_sent:
            call.headers_sent = True
            self._write(self._headers_frame(call.sid, _RESPONSE_HEADERS, 0))
        view = memoryview(payload)
        while view:
            n = min(len(view), self._conn_send_window, call.send_window, self.peer_max_frame)
            if n <= 0:
                await self._wait_window(call)
                continue
            self._spend(call, n)
            self._sent_since_ping = True
            self._write(_frame(_DATA, 0, call.sid, bytes(view[:n])))
            view = view[n:]
        if self._paused:
            await self._wait_writable()

    async def _wait_window(self, call: Call) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("client connection closed")
        call._need_window = ev = asyncio.Event()
        self._window_waiters.add(call)
        try:
            await ev.wait()
        finally:
            self._window_waiters.discard(call)
            call._need_window = None

    async def _wait_writable(self) -> None:
        if self._writable is None:
            self._writable = asyncio.Event()
        while self._paused and self.transport is not None and not self.transport.is_closing():
            self._writable.clear()
            await self._writable.wait()

    def _write(self, data: bytes) -> None:
        """Queue frames; they leave together once this loop iteration is done (one writev for
        every answer ready at once, as grpc-go's writer batches)."""
        out = self._out
        out.append(data)
        if len(out) == 1:
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.writelines(out)

    def _close_with(self, code: int, why: str) -> None:
        log.info("grpc_connection_error", error=why)
        self._write(_frame(_GOAWAY, 0, 0, struct.pack(">II", self._last_sid, code)))
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def shutdown(self) -> None:
        """GOAWAY (no new calls), then close."""
        self._write(_frame(_GOAWAY, 0, 0, struct.pack(">II", self._last_sid, 0)))
        self._flush()
        if self.transport is not None:
            self.transport.close()


class _ConnectionError(Exception):
    def __init__(self, code: int, why: str) -> None:
        super().__init__(why)
        self.code = code
