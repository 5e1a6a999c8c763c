"""The client listener: etcd's JSON gateway and its gRPC API on the same port, as etcd's cmux.

Every ``--listen-client-urls`` address accepts both. The first bytes of a connection decide:
HTTP/2's client preface (``PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n``, which every gRPC client
sends first) hands the connection to the gRPC server (``raftkv.api.h2grpc`` over
``raftkv.api.grpc_server``), anything else to the gateway's HTTP/1.1 fast path
(``raftkv.api.http1``), which hands what it does not serve itself on to aiohttp. Either way
the connection's transport is given to the chosen protocol (``transport.set_protocol``) and
the peeked bytes replayed into it: no copy, no extra hop (aiohttp's RequestHandler comes from
the app runner's server factory).

Invariant: a connection is classified once, from at most the preface's 24 bytes, and nothing
it sent is lost or reordered.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from typing import Any

from aiohttp import web

from raftkv.api.app import create_app
from raftkv.api.grpc_server import GrpcApi
from raftkv.api.h2grpc import H2Protocol
from raftkv.api.http1 import GatewayHTTP1
from raftkv.api.ops import ClientOps
from raftkv.tls import TLSListener, for_url
from raftkv.transport.http import split_url

__all__ = ["ClientListener", "serve_clients"]

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class _Sniffer(asyncio.Protocol):
    """A new client connection until its first bytes say which server it is for."""

    def __init__(self, listener: ClientListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.buf = b""

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buf += data
        n = min(len(self.buf), len(H2_PREFACE))
        if self.buf[:n] != H2_PREFACE[:n]:
            self._hand_over(self.listener.http1_protocol())
        elif n == len(H2_PREFACE):
            self._hand_over(self.listener.grpc_protocol())

    def eof_received(self) -> bool:
        return False

    def _hand_over(self, proto: asyncio.Protocol) -> None:
        t = self.transport
        assert t is not None
        t.set_protocol(proto)
        proto.connection_made(t)
        proto.data_received(self.buf)


class ClientListener:
    """The listening sockets of ``--listen-client-urls`` and the two servers behind them."""

    def __init__(self, ops: ClientOps, runner: web.AppRunner, api: GrpcApi) -> None:
        self.ops = ops
        self.runner = runner
        self.api = api
        self.methods = api.methods()
        self.servers: list[asyncio.Server] = []
        self.tls_listeners: list[TLSListener] = []
        self._grpc_conns: weakref.WeakSet[H2Protocol] = weakref.WeakSet()
        self._http1_conns: weakref.WeakSet[GatewayHTTP1] = weakref.WeakSet()

    def http1_protocol(self) -> asyncio.Protocol:
        proto = GatewayHTTP1(self.ops, self.http_protocol)
        self._http1_conns.add(proto)
        return proto

    def http_protocol(self) -> asyncio.Protocol:
        factory = self.runner.server
        assert factory is not None
        return factory()

    def grpc_protocol(self) -> asyncio.Protocol:
        proto = H2Protocol(self.methods, self.api.max_message)
        self._grpc_conns.add(proto)
        return proto

    async def start(self, urls: list[str], tls: ssl.SSLContext | None) -> None:
        await self.runner.setup()
        loop = asyncio.get_running_loop()
        for url in urls:
            host, port = split_url(url)
            ctx = for_url(url, tls)
            if ctx is not None:  # handshakes done by hand, so that refusals are logged
                t = TLSListener(lambda: _Sniffer(self), ctx)
                await t.listen(host, port)
                self.tls_listeners.append(t)
                continue
            srv = await loop.create_server(
                lambda: _Sniffer(self), host, port, reuse_address=True, backlog=1024
            )
            self.servers.append(srv)

    async def cleanup(self) -> None:
        for srv in self.servers:
            srv.close()
        for t in self.tls_listeners:
            await t.close()
        self.api.close()
        for conn in list(self._grpc_conns):
            conn.shutdown()
        for http1 in list(self._http1_conns):
            http1.close()
        await self.runner.cleanup()


async def serve_clients(
    ops: ClientOps, urls: list[str], tls: ssl.SSLContext | None = None
) -> ClientListener:
    """Serve the JSON gateway and etcd's gRPC API over ``ops`` on every URL of ``urls`` (over
    TLS with ``tls`` for the https ones; the protocol is told apart after the handshake); the
    listener's ``cleanup`` stops both."""
    runner = web.AppRunner(
        create_app(ops), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    listener = ClientListener(ops, runner, GrpcApi(ops))
    await listener.start(urls, tls)
    return listener
