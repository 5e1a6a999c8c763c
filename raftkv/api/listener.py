"""The client listener: etcd's JSON gateway and its gRPC API on the same port, as etcd's cmux.

Every ``--listen-client-urls`` address accepts both. The first bytes of a connection decide:
HTTP/2's client preface (``PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n``, which every gRPC client
sends first) hands the connection to the member's grpc.aio server, anything else to aiohttp.

- aiohttp: the connection's transport is given to a RequestHandler made by the app runner's
  server factory (``transport.set_protocol``) and the peeked bytes replayed into it: no copy,
  no extra hop.
- gRPC: grpc.aio can only listen itself, so it listens on a private abstract unix socket and
  the connection is spliced to it at the protocol level (each side's ``data_received`` writes
  to the other's transport). Flow control is kept end to end: a side whose write buffer fills
  pauses reading on the other side.

Invariant: a connection is classified once, from at most the preface's 24 bytes, and nothing
it sent is lost or reordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from typing import Any

import structlog
from aiohttp import web
from grpc import aio

from raftkv.api.grpc_server import GrpcApi
from raftkv.api.ops import ClientOps
from raftkv.transport.http import split_url

__all__ = ["ClientListener", "serve_client"]

log = structlog.get_logger("raftkv.api")

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Pipe(asyncio.Protocol):
    """One direction of a splice: what arrives here is written to ``peer``."""

    def __init__(self, peer: asyncio.Transport | None = None) -> None:
        self.peer = peer
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.write(data)

    def eof_received(self) -> bool:
        if self.peer is not None and self.peer.can_write_eof():
            self.peer.write_eof()
        return True  # HTTP/2 ends by closing; let the other side say when

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None:
            self.peer.close()

    # this side's transport is full: stop taking from the other side
    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None:
            self.peer.resume_reading()


class _Sniffer(asyncio.Protocol):
    """A new client connection until its first bytes say which server it is for."""

    def __init__(self, listener: ClientListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.closed = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = min(len(self.buf), len(H2_PREFACE))
        if self.buf[:n] != H2_PREFACE[:n]:
            self._to_http()
        elif n == len(H2_PREFACE):
            assert self.transport is not None
            self.transport.pause_reading()
            task = asyncio.ensure_future(self._to_grpc())
            self.listener.track(task)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def _to_http(self) -> None:
        t = self.transport
        assert t is not None
        proto = self.listener.http_protocol()
        t.set_protocol(proto)
        proto.connection_made(t)
        proto.data_received(self.buf)

    async def _to_grpc(self) -> None:
        t = self.transport
        assert t is not None
        client_side = _Pipe()
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            # (uvloop cannot connect to an abstract address by name: connect the socket first)
            await loop.sock_connect(sock, self.listener.grpc_path)
            upstream, _ = await loop.create_unix_connection(lambda: _Pipe(t), sock=sock)
        except OSError as e:
            sock.close()
            log.warning("grpc_splice_failed", error=str(e))
            t.close()
            return
        if self.closed:
            upstream.close()
            return
        client_side.peer = upstream
        client_side.transport = t
        t.set_protocol(client_side)
        upstream.write(self.buf)
        t.resume_reading()


class ClientListener:
    """The listening sockets of ``--listen-client-urls`` and the two servers behind them."""

    def __init__(self, runner: web.AppRunner, api: GrpcApi) -> None:
        self.runner = runner
        self.api = api
        self.grpc_server: aio.Server | None = None
        # grpc's name for the socket, and the address to connect to (abstract: no file)
        name = f"raftkv-grpc-{os.getpid()}-{id(self):x}"
        self.grpc_target = f"unix-abstract:{name}"
        self.grpc_path = "\0" + name
        self.servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task] = set()

    def http_protocol(self) -> asyncio.Protocol:
        factory = self.runner.server
        assert factory is not None
        return factory()

    def track(self, task: asyncio.Task) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, urls: list[str]) -> None:
        await self.runner.setup()
        self.grpc_server = self.api.server()
        self.grpc_server.add_insecure_port(self.grpc_target)
        await self.grpc_server.start()
        loop = asyncio.get_running_loop()
        for url in urls:
            host, port = split_url(url)
            srv = await loop.create_server(
                lambda: _Sniffer(self), host, port, reuse_address=True, backlog=1024
            )
            self.servers.append(srv)

    async def cleanup(self) -> None:
        for srv in self.servers:
            srv.close()
        for t in list(self._tasks):
            t.cancel()
        self.api.close()
        if self.grpc_server is not None:
            with contextlib.suppress(Exception):
                await self.grpc_server.stop(0.5)
        await self.runner.cleanup()


async def serve_client(app: web.Application, ops: ClientOps, urls: list[str]) -> ClientListener:
    """Serve ``app`` (the JSON gateway) and etcd's gRPC API over ``ops`` on every URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    listener = ClientListener(runner, GrpcApi(ops))
    await listener.start(urls)
    return listener
