"""A tiny raw HTTP/1.1 client for byte-exact comparisons: it keeps what ordinary clients hide
(chunk boundaries, trailers, the exact status line and header names)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Reply:
    status: int
    headers: dict[str, str]  # lower-cased names; last value wins
    body: bytes
    chunked: bool
    chunks: list[bytes] = field(default_factory=list)
    trailers: dict[str, str] = field(default_factory=dict)
    complete: bool = True  # False when the reader stopped at a timeout (open stream)

    def __repr__(self) -> str:
        return f"Reply({self.status}, chunked={self.chunked}, body={self.body[:300]!r})"


class _Buf:
    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.data = b""
        self.deadline = deadline

    def _fill(self) -> None:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        self.sock.settimeout(left)
        try:
            got = self.sock.recv(65536)
        except TimeoutError:
            raise TimeoutError from None
        if not got:
            raise EOFError
        self.data += got

    def line(self) -> bytes:
        while b"\r\n" not in self.data:
            self._fill()
        line, self.data = self.data.split(b"\r\n", 1)
        return line

    def take(self, n: int) -> bytes:
        while len(self.data) < n:
            self._fill()
        out, self.data = self.data[:n], self.data[n:]
        return out


def request(
    url: str,
    path: str,
    body: bytes | str | None = b"",
    *,
    method: str = "POST",
    timeout: float = 10.0,
    stream_for: float | None = None,
    max_chunks: int | None = None,
    headers: dict[str, str] | None = None,
    idle: float | None = None,
    on_quiet: Callable[[], None] | None = None,
) -> Reply:
    """Send one request and read the reply. ``stream_for``: read a never-ending chunked stream
    for that many seconds (or until ``max_chunks`` chunks) and then hang up. ``idle``: also
    hang up once a stream has been quiet that long after its first chunk. ``on_quiet`` runs
    (on this thread) the first time that happens instead, and reading goes on: e.g. to write
    while a watch is open, once it has sent everything it had (created, history)."""
    host, port = url.split("//", 1)[1].split(":")
    if isinstance(body, str):
        body = body.encode()
    hdrs = {"Host": f"{host}:{port}", "User-Agent": "raw/1", "Accept": "*/*"}
    if body is not None and method in ("POST", "PUT"):
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        hdrs["Content-Length"] = str(len(body))
    hdrs.update(headers or {})
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
    sock = socket.create_connection((host, int(port)), timeout=timeout)
    try:
        sock.sendall(head.encode() + b"\r\n" + (body or b""))
        deadline = time.monotonic() + (stream_for if stream_for is not None else timeout)
        buf = _Buf(sock, deadline)
        try:
            status_line = buf.line()
        except TimeoutError:
            return Reply(0, {}, b"", False, complete=False)
        status = int(status_line.split()[1])
        rh: dict[str, str] = {}
        while True:
            line = buf.line()
            if not line:
                break
            k, v = line.decode().split(":", 1)
            rh[k.strip().lower()] = v.strip()
        if method == "HEAD" or status in (204, 304):
            return Reply(status, rh, b"", False)
        if rh.get("transfer-encoding") == "chunked":
            buf.deadline = deadline
            chunks: list[bytes] = []
            trailers: dict[str, str] = {}
            try:
                while True:
                    if idle is not None and chunks:
                        buf.deadline = min(deadline, time.monotonic() + idle)
                    try:
                        size = int(buf.line().split(b";")[0], 16)
                    except TimeoutError:
                        if on_quiet is None or time.monotonic() >= deadline:
                            raise
                        on_quiet()
                        on_quiet = None
                        continue
                    if size == 0:
                        while True:
                            line = buf.line()
                            if not line:
                                break
                            k, v = line.decode().split(":", 1)
                            trailers[k.strip().lower()] = v.strip()
                        break
                    chunks.append(buf.take(size))
                    buf.take(2)
                    if max_chunks is not None and len(chunks) >= max_chunks:
                        return Reply(status, rh, b"".join(chunks), True, chunks, complete=False)
            except (TimeoutError, EOFError):
                return Reply(status, rh, b"".join(chunks), True, chunks, complete=False)
            return Reply(status, rh, b"".join(chunks), True, chunks, trailers)
        n = int(rh.get("content-length", "0"))
        return Reply(status, rh, buf.take(n), False)
    finally:
        sock.close()
