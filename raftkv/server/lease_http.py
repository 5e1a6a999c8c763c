"""Lease requests that only the leader can answer, forwarded over the peer listener (etcd's
leasehttp): a follower POSTs the msgpack-encoded request to the leader's ``/leases`` (renew)
or ``/leases/internal`` (time-to-live) and relays the answer.

Answers: 200 + msgpack response; 404 lease not found; 503 not the leader (retry elsewhere).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from raftkv import errors
from raftkv.errors import EtcdError
from raftkv.lease import ErrNotPrimary
from raftkv.pb import decode, encode
from raftkv.pb.rpc import (
    LeaseKeepAliveRequest,
    LeaseKeepAliveResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
)
from raftkv.transport.http import HttpError
from raftkv.transport.transport import NoPeerURL

if TYPE_CHECKING:
    from raftkv.server.etcdserver import EtcdServer

__all__ = ["LEASE_PATH", "LEASE_TTL_PATH", "forward", "routes"]

LEASE_PATH = "/leases"
LEASE_TTL_PATH = "/leases/internal"


def routes(server: EtcdServer) -> list[web.RouteDef]:
    return [
        web.post(LEASE_PATH, _handler(server, LeaseKeepAliveRequest, server.lease_renew_local)),
        web.post(
            LEASE_TTL_PATH,
            _handler(server, LeaseTimeToLiveRequest, server.lease_time_to_live_local),
        ),
    ]


def _handler(server: EtcdServer, req_cls: type, answer: Callable[[Any], Awaitable[Any]]):
    """A route that answers a forwarded request with the leader's own ``answer``."""

    async def handle(request: web.Request) -> web.Response:
        _frm, refusal = server.transport.check_headers(request)
        if refusal is not None:
            return refusal
        req = decode(req_cls, await request.read())
        try:
            resp = await answer(req)
        except EtcdError as e:
            return _error(e)
        return web.Response(body=encode(resp))

    return handle


def _error(e: EtcdError) -> web.Response:
    if e is errors.ErrLeaseNotFound or e.message == errors.ErrLeaseNotFound.message:
        return web.Response(status=404, text=e.message)
    if e is ErrNotPrimary:
        return web.Response(status=503, text=e.message)
    return web.Response(status=500, text=e.message)


async def forward(server: EtcdServer, leader: int, path: str, req: object, timeout: float):
    """Send ``req`` to the leader; returns its decoded response. Raises ErrLeaseNotFound,
    ErrNotPrimary (leader changed: retry), or OSError/HttpError."""
    try:
        body = await server.transport.post_to(leader, path, encode(req), timeout)
    except NoPeerURL:
        raise ErrNotPrimary from None
    except HttpError as e:
        if e.status == 404:
            raise errors.ErrLeaseNotFound from None
        raise ErrNotPrimary from None
    cls = LeaseKeepAliveResponse if path == LEASE_PATH else LeaseTimeToLiveResponse
    return decode(cls, body)
