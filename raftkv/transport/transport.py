"""Peer transport: outgoing streams to every peer, and the aiohttp routes peers talk to.

Routes (mounted on the member's peer listener):
- ``POST /raft/stream``: a long-lived chunked body of length-prefixed msgpack frames
  (``framing``), each one Raft message for this member. A refusal is answered at once. A
  sender that asks for keep-alives (``H_KEEPALIVE``, see ``peer``) gets 200 at once and then
  a one-byte chunk every ``HEARTBEAT_INTERVAL``, so it can tell a live stream from a dead
  path; such a stream is dropped when nothing (not even a link heartbeat) arrives on it for
  ``READ_TIMEOUT``. Other senders get their answer when the stream ends.
- ``POST /raft/snapshot``: one frame holding a SNAP message, then the backend db bytes; a
  sender that stops sending for ``SNAPSHOT_READ_TIMEOUT`` fails the transfer.

Every connection carries ``X-Raftkv-Cluster-ID``, ``X-Raftkv-From`` and ``X-Raftkv-To`` (hex);
a connection from another cluster, to another member, or from an unknown member is refused
with 412/403 and never reaches Raft.

What arrives goes to the member's ``PeerInbox``, given at ``start``; until then the routes
answer 503 (the sender retries, as after any refusal).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from typing import Protocol

import structlog
from aiohttp import web

from raftkv.raft.messages import Message, MessageType, decode_message, encode_message
from raftkv.transport.framing import FrameDecoder, FrameError, encode_frame
from raftkv.transport.http import Dialer, post, source_addr
from raftkv.transport.peer import (
    H_KEEPALIVE,
    HEARTBEAT_INTERVAL,
    READ_TIMEOUT,
    REMOVED_STATUS,
    REMOVED_TEXT,
    WRITE_TIMEOUT,
    PeerStream,
)

__all__ = ["NoPeerURL", "PeerInbox", "Transport"]

log = structlog.get_logger("raftkv.transport")

H_CLUSTER = "X-Raftkv-Cluster-ID"
H_FROM = "X-Raftkv-From"
H_TO = "X-Raftkv-To"


class PeerInbox(Protocol):
    """Where the transport delivers what it hears, and whom it asks about membership."""

    def on_message(self, m: Message) -> None: ...
    def report_unreachable(self, peer_id: int) -> None: ...
    async def on_snapshot(self, m: Message, body: AsyncIterator[bytes]) -> None: ...
    def is_removed(self, peer_id: int) -> bool:
        """Whether ``peer_id`` was removed from the cluster (its connections are refused)."""
        ...

    def on_removed(self) -> None:
        """A peer refused this member as removed from the cluster."""
        ...


class NoPeerURL(ConnectionError):
    """The peer asked for is not known to this transport (no URL to reach it at)."""


SNAPSHOT_READ_TIMEOUT = 30.0  # a snapshot sender silent this long has gone away
KEEPALIVE_CHUNK = b"\n"


class _Inbound:
    """What the keep-alive task of one inbound stream watches."""

    __slots__ = ("received",)

    def __init__(self) -> None:
        self.received = 0


class Transport:
    def __init__(
        self,
        member_id: int,
        cluster_id: int,
        listen_peer_url: str | None = None,
        request_timeout: float = 5.0,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.member_id = member_id
        self.cluster_id = cluster_id
        self._inbox: PeerInbox | None = None
        self.dialer = Dialer(source_addr(listen_peer_url), client_ssl)
        self.request_timeout = request_timeout
        self.peers: dict[int, PeerStream] = {}
        self._inbound: dict[int, asyncio.Task] = {}  # peer id -> its current inbound stream
        self.received_bytes: dict[int, int] = {}  # etcd_network_peer_received_bytes_total
        self._started = False
        self._watchdog: asyncio.Task[None] | None = None

    # --- peers ---------------------------------------------------------------------------------

    def headers_to(self, peer_id: int) -> dict[str, str]:
        return {
            H_CLUSTER: f"{self.cluster_id:x}",
            H_FROM: f"{self.member_id:x}",
            H_TO: f"{peer_id:x}",
        }

    def add_peer(self, peer_id: int, urls: list[str]) -> None:
        if peer_id == self.member_id or peer_id in self.peers:
            return
        p = PeerStream(
            self.member_id,
            peer_id,
            urls,
            self.headers_to(peer_id),
            self.dialer,
            self._report_unreachable,
        )
        p.on_removed = self._told_removed
        self.peers[peer_id] = p
        if self._started:
            p.start()

    def _report_unreachable(self, peer_id: int) -> None:
        if self._inbox is not None:
            self._inbox.report_unreachable(peer_id)

    def _told_removed(self) -> None:
        if self._inbox is not None:
            self._inbox.on_removed()

    def update_peer(self, peer_id: int, urls: list[str]) -> None:
        p = self.peers.get(peer_id)
        if p is not None:
            p.urls = list(urls)

    async def remove_peer(self, peer_id: int) -> None:
        p = self.peers.pop(peer_id, None)
        if p is not None:
            await p.stop()

    def start(self, inbox: PeerInbox) -> None:
        self._inbox = inbox
        self._started = True
        for p in self.peers.values():
            p.start()
        self._watchdog = asyncio.get_running_loop().create_task(self._watch_links())

    async def _watch_links(self) -> None:
        while self._started:
            await asyncio.sleep(1.0)
            for p in list(self.peers.values()):
                p.check_alive()

    async def stop(self) -> None:
        self._started = False
        if self._watchdog is not None:
            self._watchdog.cancel()
        await asyncio.gather(*(p.stop() for p in self.peers.values()), return_exceptions=True)
        # inbound streams never end by themselves: end them, or the listener waits for them
        for t in list(self._inbound.values()):
            t.cancel()
        self._inbound.clear()

    def peer_urls(self, peer_id: int) -> list[str]:
        p = self.peers.get(peer_id)
        return list(p.urls) if p is not None else []

    def active_since(self, peer_id: int) -> float | None:
        p = self.peers.get(peer_id)
        return None if p is None else p.active_since

    # --- sending -------------------------------------------------------------------------------

    def send(self, msgs: list[Message]) -> None:
        """Hand each peer its messages of ``msgs`` as one batch (in order)."""
        by_peer: dict[int, list[Message]] = {}
        for m in msgs:
            batch = by_peer.get(m.to)
            if batch is None:
                by_peer[m.to] = [m]
            else:
                batch.append(m)
        peers = self.peers
        for to, batch in by_peer.items():
            p = peers.get(to)
            if p is not None:
                p.send_many(batch)

    async def post_to(self, peer_id: int, path: str, body: bytes, timeout: float) -> bytes:
        """One request/answer POST to ``path`` on the peer's first URL, with this link's
        headers (the peer's routes refuse anything else); returns the 2xx body. Raises
        NoPeerURL, HttpError for any other status, or OSError/TimeoutError."""
        urls = self.peer_urls(peer_id)
        if not urls:
            raise NoPeerURL(f"no URL for peer {peer_id:x}")
        return await post(urls[0], path, self.headers_to(peer_id), body, self.dialer, timeout)

    async def send_snapshot(self, m: Message, body: AsyncIterator[bytes]) -> None:
        """POST the SNAP message and the db bytes to ``m.to``; raises on any failure."""
        p = self.peers.get(m.to)
        if p is None:
            raise ConnectionError(f"unknown peer {m.to:x}")

        async def chunks() -> AsyncIterator[bytes]:
            yield encode_frame(encode_message(m))
            async for c in body:
                yield c

        last: Exception | None = None
        for url in p.urls:
            try:
                await post(
                    url,
                    "/raft/snapshot",
                    self.headers_to(m.to),
                    chunks(),
                    self.dialer,
                    timeout=max(self.request_timeout, 30.0),
                )
                return
            except Exception as e:
                last = e
        raise ConnectionError(f"snapshot to {m.to:x} failed: {last}")

    # --- receiving -----------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/raft/stream", self._handle_stream),
            web.post("/raft/snapshot", self._handle_snapshot),
        ]

    def check_headers(self, request: web.Request) -> tuple[int, web.Response | None]:
        """The sender's id, or a refusal when the request is not from a member of this cluster
        addressed to this member."""
        try:
            cid = int(request.headers.get(H_CLUSTER, ""), 16)
            frm = int(request.headers.get(H_FROM, ""), 16)
            to = int(request.headers.get(H_TO, ""), 16)
        except ValueError:
            return 0, web.Response(status=400, text="missing or malformed raftkv peer headers")
        if cid != self.cluster_id:
            log.warning("peer_refused", reason="cluster id mismatch", remote_cluster=f"{cid:x}")
            return frm, web.Response(
                status=412,
                text=f"cluster ID mismatch: local={self.cluster_id:x} remote={cid:x}",
            )
        if to != self.member_id:
            return frm, web.Response(
                status=412, text=f"to ID mismatch: local={self.member_id:x} remote={to:x}"
            )
        if self._inbox is None:
            return frm, web.Response(status=503, text="member not started")
        if self._inbox.is_removed(frm):
            log.warning("peer_refused", reason="removed member", remote=f"{frm:x}")
            return frm, web.Response(status=REMOVED_STATUS, text=REMOVED_TEXT)
        if frm not in self.peers:
            log.warning("peer_refused", reason="unknown member", remote=f"{frm:x}")
            return frm, web.Response(status=403, text=f"unknown member {frm:x}")
        return frm, None

    async def _handle_stream(self, request: web.Request) -> web.StreamResponse:
        frm, refusal = self.check_headers(request)
        if refusal is not None:
            return refusal
        # A new stream from a peer replaces its old one (which may be dead without a reset,
        # after a partition).
        old = self._inbound.get(frm)
        if old is not None and not old.done():
            old.cancel()
        me = asyncio.current_task()
        assert me is not None
        self._inbound[frm] = me
        log.info("peer_stream_accepted", peer=f"{frm:x}")
        link = self.peers.get(frm)
        if link is not None:
            link.redial_now()
        resp: web.StreamResponse | None = None
        keepalive: asyncio.Task[None] | None = None
        st = _Inbound()
        dec = FrameDecoder()
        on_message = self._inbox.on_message  # (check_headers refused it before start)
        try:
            if H_KEEPALIVE in request.headers:
                resp = web.StreamResponse(status=200, headers={H_KEEPALIVE: "1"})
                resp.force_close()  # the connection ends with the stream
                await resp.prepare(request)
                keepalive = asyncio.get_running_loop().create_task(
                    self._keep_alive(frm, request, resp, st)
                )
            async for chunk in request.content.iter_any():
                st.received += len(chunk)
                self.received_bytes[frm] = self.received_bytes.get(frm, 0) + len(chunk)
                for m in dec.feed_messages(chunk):
                    if m.from_ == frm and m.to == self.member_id:
                        on_message(m)
        except FrameError as e:
            log.warning("peer_stream_corrupt", peer=f"{frm:x}", error=str(e))
            if resp is None:
                return web.Response(status=400, text=str(e))
            _abort(request)  # the answer has begun: all that is left is to hang up
        except ConnectionError:
            pass  # the peer went away (crash, restart, cut link): it will reconnect
        finally:
            if keepalive is not None:
                keepalive.cancel()
            if self._inbound.get(frm) is me:
                del self._inbound[frm]
            log.info("peer_stream_closed", peer=f"{frm:x}")
        return resp if resp is not None else web.Response(status=200)

    async def _keep_alive(
        self, frm: int, request: web.Request, resp: web.StreamResponse, st: _Inbound
    ) -> None:
        """Write a keep-alive chunk every HEARTBEAT_INTERVAL; hang up on a stream on which
        nothing arrived for READ_TIMEOUT (the sender heartbeats an idle link), or whose
        keep-alives the sender does not take."""
        loop = asyncio.get_running_loop()
        seen, seen_at = st.received, loop.time()
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            now = loop.time()
            if st.received != seen:
                seen, seen_at = st.received, now
            elif now - seen_at >= READ_TIMEOUT:
                log.warning("peer_stream_timed_out", peer=f"{frm:x}", silent_s=READ_TIMEOUT)
                _abort(request)
                return
            try:
                await asyncio.wait_for(resp.write(KEEPALIVE_CHUNK), WRITE_TIMEOUT)
            except (TimeoutError, ConnectionError, RuntimeError):
                _abort(request)
                return

    async def _handle_snapshot(self, request: web.Request) -> web.StreamResponse:
        frm, refusal = self.check_headers(request)
        if refusal is not None:
            return refusal
        start = time.monotonic()
        content = request.content
        try:
            head = await asyncio.wait_for(content.readexactly(4), SNAPSHOT_READ_TIMEOUT)
            size = int.from_bytes(head, "big")
            m = decode_message(
                await asyncio.wait_for(content.readexactly(size), SNAPSHOT_READ_TIMEOUT)
            )
        except Exception as e:
            return web.Response(status=400, text=f"bad snapshot message: {e}")
        if m.type != MessageType.SNAP or m.snapshot is None or m.from_ != frm:
            return web.Response(status=400, text="not a snapshot message")

        async def body() -> AsyncIterator[bytes]:
            while True:
                try:
                    chunk = await asyncio.wait_for(content.read(1 << 20), SNAPSHOT_READ_TIMEOUT)
                except TimeoutError:
                    raise ConnectionError(
                        f"the sender sent nothing for {SNAPSHOT_READ_TIMEOUT}s"
                    ) from None
                if not chunk:
                    return
                yield chunk

        try:
            await self._inbox.on_snapshot(m, body())  # (refused before start)
        except Exception as e:
            log.error("snapshot_receive_failed", peer=f"{frm:x}", error=str(e))
            return web.Response(status=500, text=f"snapshot not applied: {e}")
        log.info(
            "snapshot_received",
            peer=f"{frm:x}",
            index=m.snapshot.metadata.index,
            took_ms=round((time.monotonic() - start) * 1000),
        )
        return web.Response(status=204)


def _abort(request: web.Request) -> None:
    """Drop the connection at once (``close`` would wait to flush onto a dead path)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
