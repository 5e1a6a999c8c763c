"""Requests only the leader can answer (lease keep-alive and time-to-live, member promote),
run on the leader: here when this member leads, else forwarded over the peer listener (etcd's
leasehttp and promoteMemberHTTP), and retried across leader changes until the request timeout.

The retry loop is etcd 3.4's (LeaseRenew, PromoteMember): no leader by the deadline ->
``etcdserver: no leader`` (waitLeader); the deadline passes while retrying -> ``request timed
out``; a refusal because the asked member does not lead (``LeaderOnly.local`` raised
ErrNotPrimary or ErrNotLeader, or the peer answered 503) or a broken link -> try again after a
short pause; any other ``EtcdError`` -> the caller's answer.

Peer wire: ``POST <path>`` with the msgpack request and the transport's member headers; the
answer is 200 + the msgpack response, 503 (not the leader: retry), or 409 + JSON
``{"message", "code"}`` (an ``EtcdError`` the leader decided).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from raftkv import errors
from raftkv.errors import EtcdError, GrpcCode
from raftkv.lease import ErrNotPrimary
from raftkv.pb import decode, encode
from raftkv.raft import NONE
from raftkv.transport.http import HttpError

__all__ = ["LeaderForwarder", "LeaderOnly", "PeerPoster"]

RETRY_PAUSE = 0.05  # etcd's throttle between attempts
_NOT_LEADER = (ErrNotPrimary, errors.ErrNotLeader)


@dataclass(frozen=True, slots=True)
class LeaderOnly:
    """One request kind that the leader answers: its peer path, message types, and the
    leader-side handler (raises ErrNotPrimary / ErrNotLeader on a member that does not lead)."""

    path: str
    req_cls: type
    resp_cls: type
    local: Callable[[Any], Awaitable[Any]]


class PeerPoster(Protocol):
    """The transport's request/answer calls to a peer."""

    async def post_to(self, peer_id: int, path: str, body: bytes, timeout: float) -> bytes: ...
    def check_headers(self, request: web.Request) -> tuple[int, web.Response | None]: ...


def _not_leader(e: EtcdError) -> bool:
    return any(e is n or e.message == n.message for n in _NOT_LEADER)


class LeaderForwarder:
    def __init__(
        self,
        *,
        member_id: int,
        leader: Callable[[], int],
        peers: PeerPoster,
        wait_leader: Callable[[float], Awaitable[bool]],
        request_timeout: float,
    ) -> None:
        self._member_id = member_id
        self._leader = leader
        self._peers = peers
        self._wait_leader = wait_leader
        self._timeout = request_timeout

    async def call(self, op: LeaderOnly, req: Any) -> Any:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        while True:
            lead = self._leader()
            try:
                if lead == self._member_id:
                    return await op.local(req)
                if lead != NONE:
                    return await self._forward(lead, op, req, max(deadline - loop.time(), 0.1))
            except EtcdError as e:
                if not _not_leader(e):
                    raise
            except (OSError, TimeoutError, HttpError):
                pass  # (a missing peer URL is a ConnectionError, an OSError)
            if loop.time() >= deadline:
                raise errors.ErrTimeout
            if not await self._wait_leader(deadline):
                raise errors.ErrNoLeader
            await asyncio.sleep(RETRY_PAUSE)

    async def _forward(self, lead: int, op: LeaderOnly, req: Any, timeout: float) -> Any:
        try:
            body = await self._peers.post_to(lead, op.path, encode(req), timeout)
        except HttpError as e:
            if e.status == 409:
                d = json.loads(e.body)
                raise EtcdError(d["message"], GrpcCode(d["code"])) from None
            raise
        return decode(op.resp_cls, body)

    def routes(self, ops: Iterable[LeaderOnly]) -> list[web.RouteDef]:
        """The peer listener's routes answering forwarded ``ops`` (on the leader)."""
        return [web.post(op.path, self._handler(op)) for op in ops]

    def _handler(self, op: LeaderOnly) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            _frm, refusal = self._peers.check_headers(request)
            if refusal is not None:
                return refusal
            req = decode(op.req_cls, await request.read())
            try:
                resp = await op.local(req)
            except EtcdError as e:
                if _not_leader(e):
                    return web.Response(status=503, text=e.message)
                body = json.dumps({"message": e.message, "code": int(e.code)})
                return web.Response(status=409, text=body)
            return web.Response(body=encode(resp))

        return handle
