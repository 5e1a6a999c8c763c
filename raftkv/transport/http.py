"""A minimal HTTP/1.1 client for peer traffic, on asyncio streams.

The peer stream is one long POST whose chunked body never ends while the link is up, and the
snapshot send is one POST of a known length; both want exact control over writes (one write
per batch of frames) and over the socket's source address (the cluster's fault proxy tells
members apart by source IP), so they are written here in a few lines instead of through a
general client. The server side is aiohttp (``raftkv.transport.transport``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl as ssl_module
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "Dialer",
    "HttpError",
    "open_post",
    "post",
    "read_body",
    "read_head",
    "read_response",
    "source_addr",
    "split_url",
]


class HttpError(Exception):
    """A peer answered with a non-2xx status, or not HTTP at all."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status
        self.body = body


def split_url(url: str) -> tuple[str, int]:
    u = urlsplit(url)
    host = u.hostname or "localhost"
    port = u.port or (443 if u.scheme == "https" else 80)
    return host, port


def source_addr(listen_peer_url: str | None) -> tuple[str, int] | None:
    """``(ip, 0)`` when the member's first peer listen URL names a specific IP, else None."""
    if not listen_peer_url:
        return None
    host, _ = split_url(listen_peer_url)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None  # a host name: let the OS choose
    if ip.is_unspecified:
        return None
    return (str(ip), 0)


@dataclass(frozen=True, slots=True)
class Dialer:
    """How a member dials its peers: from its own peer IP (the cluster's fault proxy tells
    members apart by source address), over TLS for ``https`` URLs."""

    local_addr: tuple[str, int] | None = None
    ssl: ssl_module.SSLContext | None = None

    async def open(
        self, url: str, timeout: float
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        host, port = split_url(url)
        tls = self.ssl if urlsplit(url).scheme == "https" else None
        if urlsplit(url).scheme == "https" and tls is None:
            tls = ssl_module.create_default_context()
        return await asyncio.wait_for(
            asyncio.open_connection(
                host,
                port,
                local_addr=self.local_addr,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            ),
            timeout,
        )


def _head(method: str, host: str, port: int, path: str, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def open_post(
    url: str,
    path: str,
    headers: Mapping[str, str],
    dialer: Dialer,
    timeout: float,
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Connect and send the head of a chunked POST; the caller writes the chunks."""
    host, port = split_url(url)
    reader, writer = await dialer.open(url, timeout)
    h = dict(headers)
    h["Transfer-Encoding"] = "chunked"
    h["Content-Type"] = "application/octet-stream"
    writer.write(_head("POST", host, port, path, h))
    return reader, writer


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """The status and the (lower-cased) headers of an answer."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionResetError("peer closed the connection without answering")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise HttpError(0, status_line)
    headers: dict[str, str] = {}
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        headers[k.strip().lower()] = v.strip()
    return int(parts[1]), headers


async def read_body(
    reader: asyncio.StreamReader, headers: Mapping[str, str], limit: int = 1 << 20
) -> bytes:
    """The body of an answer whose head was read (chunked or of a known length)."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            try:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
            except ValueError as e:
                raise HttpError(0, b"malformed chunked body") from e
            if size == 0:
                await reader.readline()
                return b"".join(chunks)
            chunks.append(await reader.readexactly(size))
            await reader.readline()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError as e:
        raise HttpError(0, b"malformed content-length") from e
    return await reader.readexactly(min(length, limit)) if length > 0 else b""


async def read_response(reader: asyncio.StreamReader, limit: int = 1 << 20) -> tuple[int, bytes]:
    status, headers = await read_head(reader)
    return status, await read_body(reader, headers, limit)


async def post(
    url: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes | AsyncIterator[bytes],
    dialer: Dialer,
    timeout: float,
) -> bytes:
    """One POST with a (possibly streamed) body; returns the body of a 2xx answer.

    ``timeout`` bounds every step: the connect, each write (a peer that stops reading, paused
    or behind a silent path, never lets ``drain`` return) and the wait for the answer."""
    reader, writer = await open_post(url, path, headers, dialer, timeout)
    try:
        if isinstance(body, bytes):
            if body:
                writer.write(b"%x\r\n%b\r\n" % (len(body), body))
        else:
            async for chunk in body:
                if chunk:
                    writer.write(b"%x\r\n%b\r\n" % (len(chunk), chunk))
                    await asyncio.wait_for(writer.drain(), timeout)
        writer.write(b"0\r\n\r\n")
        await asyncio.wait_for(writer.drain(), timeout)
        status, data = await asyncio.wait_for(read_response(reader), timeout)
    finally:
        # abort, not close: close() keeps the socket until its buffer is flushed, which on a
        # dead path is never
        writer.transport.abort()
    if not 200 <= status < 300:
        raise HttpError(status, data)
    return data
