"""The outgoing half of one peer link: a long-lived streaming POST /raft/stream.

``send_many`` writes a batch at once, framed as one chunk, when the link is up and nothing is
queued before it: the messages leave in the caller's turn of the loop, not a turn later in the
stream task (on a 3-member cluster under one client, that hop was a fifth of a put's
latency). Otherwise messages are queued and the stream task writes everything queued in one
chunk per wake-up, so a busy leader puts many messages (and many entries) in one write. While
the link is down, messages are dropped (Raft retransmits) and the core is told the peer is
unreachable; the link is retried with exponential backoff. A peer that answers with anything
but 200 (e.g. 412 for a cluster id mismatch) has refused the stream: the connection is closed
and retried later.

Liveness (etcd's rafthttp: dial timeout, write deadline, read timeout, link heartbeats). A
path can die without a trace on the socket: a partition that drops packets, a proxy that
swallows them, a member moved to a new address, a peer stopped by SIGSTOP. TCP reports
nothing for many minutes, and a follower's few small acks never fill the send buffer, so
without timeouts such a link stays "connected" while everything sent on it is lost: the
member falls behind until it restarts. So every blocking step has a deadline:

- connect: ``CONNECT_TIMEOUT``;
- the peer's answer head (it answers 200 at once, ``H_KEEPALIVE``): ``READ_TIMEOUT``;
- after that the peer writes a keep-alive chunk every ``HEARTBEAT_INTERVAL``: a stream on
  which nothing arrives for ``READ_TIMEOUT`` is dead; it is dropped and redialled;
- writes: a peer that leaves ``STALL_BYTES`` unread for ``WRITE_TIMEOUT`` is dropped;
- this side writes a link heartbeat (an empty MsgHeartbeat addressed to no one, which the
  receiver skips) when it had nothing to send for ``HEARTBEAT_INTERVAL``, so the receiver
  can apply the same read timeout to its end (``Transport._handle_stream``).

Dead links are aborted, not closed: ``close`` keeps a socket until its buffer is flushed,
which on a dead path is never.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import structlog

from raftkv.raft.messages import Message, MessageType
from raftkv.transport.framing import encode_frames
from raftkv.transport.http import Dialer, open_post, read_body, read_head

__all__ = ["LINK_HEARTBEAT", "PeerStream"]

log = structlog.get_logger("raftkv.transport")

MAX_PENDING = 4096  # messages queued for one peer before new ones are dropped (etcd's 4096)
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
CONNECT_TIMEOUT = 1.0
READ_TIMEOUT = 5.0  # silence after which a stream is dead (etcd's ConnReadTimeout)
WRITE_TIMEOUT = 5.0  # how long a peer may not read before the link is dropped
HEARTBEAT_INTERVAL = READ_TIMEOUT / 3  # link heartbeats and keep-alives (etcd: the same)
STALL_BYTES = 1 << 20  # unsent bytes buffered for a peer before the writer waits for it
STUCK_AFTER = 10.0  # a down link that made no connection attempt for this long is restarted
# a member's answer to a stream from a member that was removed from the cluster (etcd: 410)
REMOVED_STATUS = 410
REMOVED_TEXT = "the member has been permanently removed from the cluster"
# asks the receiver to answer 200 at once and keep the answer alive (a chunk every
# HEARTBEAT_INTERVAL); a receiver that does so echoes it
H_KEEPALIVE = "X-Raftkv-Stream-Keepalive"
# etcd's linkHeartbeatMessage: no sender, no recipient, so receivers (which deliver only
# messages from the stream's sender to themselves) skip it
LINK_HEARTBEAT = Message(MessageType.HEARTBEAT, 0, 0)


class StreamDead(Exception):
    """Nothing came back on a stream for too long: the path is dead."""


class PeerStream:
    def __init__(
        self,
        local_id: int,
        peer_id: int,
        urls: list[str],
        headers: dict[str, str],
        dialer: Dialer,
        report_unreachable: Callable[[int], None],
    ) -> None:
        self.local_id = local_id
        self.peer_id = peer_id
        self.urls = list(urls)
        self._headers = {**headers, H_KEEPALIVE: "1"}
        self._dialer = dialer
        self._report_unreachable = report_unreachable
        self._pending: list[Message] = []
        self._wake = asyncio.Event()
        self._redial = asyncio.Event()  # set: end a backoff wait now (``redial_now``)
        self._task: asyncio.Task[None] | None = None
        self.last_attempt = 0.0  # monotonic time of the last connection attempt
        self._closed = False
        self.connected = False
        self.active_since: float | None = None  # monotonic time the peer accepted the stream
        self.sent_bytes = 0  # etcd_network_peer_sent_bytes_total
        self.on_removed: Callable[[], None] | None = None  # the peer says we were removed
        self._url_index = 0
        self._written_at = 0.0  # monotonic time of the last write on the current stream
        self._writer: asyncio.StreamWriter | None = None  # the current stream's, while it is up

    # --- public --------------------------------------------------------------------------------

    def start(self) -> None:
        self.last_attempt = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._run())

    def check_alive(self) -> None:
        """Called every second by the transport: a link that is down and has not even tried
        to connect for ``STUCK_AFTER`` seconds is stuck somewhere unexpected: restart it."""
        if self._closed or self.connected or self._task is None:
            return
        stuck = time.monotonic() - self.last_attempt
        if stuck < STUCK_AFTER and not self._task.done():
            return
        log.error("peer_link_restarted", peer=f"{self.peer_id:x}", stuck_s=round(stuck, 1))
        self._task.cancel()
        self.start()

    async def stop(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def send(self, m: Message) -> None:
        if not self.connected:
            if m.type == MessageType.APP:
                self._report_unreachable(self.peer_id)
            return
        if len(self._pending) >= MAX_PENDING:
            if m.type == MessageType.APP:
                self._report_unreachable(self.peer_id)
            return
        self._pending.append(m)
        if len(self._pending) == 1:
            self._wake.set()

    def redial_now(self) -> None:
        """The peer is back (it just opened its own stream to this member): a link waiting
        out its backoff dials at once. A restarted member thus hears from the leader within
        a heartbeat, not after up to ``BACKOFF_MAX`` of a backoff grown while it was down."""
        if not self.connected:
            self._redial.set()

    async def _backoff(self, seconds: float) -> None:
        self._redial.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._redial.wait(), seconds)

    def send_many(self, msgs: list[Message]) -> None:
        """``send`` each of ``msgs``, written now in one chunk when nothing waits before them
        and the peer keeps up with what was written (else the stream task handles them)."""
        w = self._writer
        if (
            w is not None
            and not self._pending
            and not w.transport.is_closing()
            and w.transport.get_write_buffer_size() <= STALL_BYTES
        ):
            self._write(w, msgs)
            return
        for m in msgs:
            self.send(m)

    def _write(self, writer: asyncio.StreamWriter, batch: list[Message]) -> None:
        data = encode_frames(batch)
        self.sent_bytes += len(data)
        self._written_at = time.monotonic()
        writer.writelines((b"%x\r\n" % len(data), data, b"\r\n"))

    # --- the link ------------------------------------------------------------------------------

    async def _run(self) -> None:
        """The link's life: connect, stream, reconnect — forever. Nothing may end it but
        ``stop``: an unexpected error is logged and the link starts over (a silently dead
        link would leave the peer deaf to this member until a restart)."""
        while not self._closed:
            try:
                await self._connect_loop()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                self.connected = False
                log.error(
                    "peer_link_failed", peer=f"{self.peer_id:x}", error=repr(e), exc_info=True
                )
                await asyncio.sleep(BACKOFF_MAX)

    async def _connect_loop(self) -> None:
        backoff = BACKOFF_MIN
        failures = 0
        while not self._closed:
            url = self.urls[self._url_index % len(self.urls)]
            self.last_attempt = time.monotonic()
            try:
                reader, writer = await open_post(
                    url, "/raft/stream", self._headers, self._dialer, CONNECT_TIMEOUT
                )
            except (TimeoutError, OSError) as e:
                failures += 1
                if failures == 1:
                    log.warning("peer_unreachable", peer=f"{self.peer_id:x}", url=url, error=str(e))
                self._url_index += 1
                self._report_unreachable(self.peer_id)
                await self._backoff(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            failures = 0
            accepted = await self._stream(url, reader, writer)
            if self._closed:
                return
            self._report_unreachable(self.peer_id)
            # back off again only from a stream the peer accepted: a proxy or a listener that
            # takes connections and drops them at once must not be redialled in a tight loop
            backoff = BACKOFF_MIN if accepted else min(backoff * 2, BACKOFF_MAX)
            await self._backoff(backoff)

    async def _stream(
        self, url: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Write queued messages until the stream ends; whether the peer accepted it."""
        accepted = asyncio.get_running_loop().create_future()
        answered = asyncio.get_running_loop().create_task(self._watch_answer(reader, accepted))
        answered.add_done_callback(lambda _t: self._wake.set())
        heartbeats = asyncio.get_running_loop().create_task(self._heartbeats())
        self.connected = True
        self._writer = writer
        self._written_at = time.monotonic()
        log.info("peer_connected", peer=f"{self.peer_id:x}", url=url)
        reason = "closed"
        try:
            while not self._closed:
                # checked before every wait: a wake-up consumed by an earlier pass (the answer
                # may end while a write waits) would otherwise leave this loop asleep
                if answered.done():
                    reason = _refusal(answered)
                    if _status(answered) == REMOVED_STATUS and self.on_removed is not None:
                        self.on_removed()
                    break
                if not self._pending:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, self._pending = self._pending, []
                self._write(writer, batch)
                if writer.transport.get_write_buffer_size() > STALL_BYTES:
                    # The peer does not read (paused, or the path is cut without a reset):
                    # wait a while, then drop the link and start over.
                    try:
                        await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
                    except TimeoutError:
                        reason = f"peer stopped reading for {WRITE_TIMEOUT}s"
                        break
        except (OSError, ConnectionError) as e:
            reason = str(e) or type(e).__name__
        finally:
            self.connected = False
            self._writer = None
            self.active_since = None
            self.last_attempt = time.monotonic()  # the watchdog counts from the link's end
            self._pending = []
            answered.cancel()
            heartbeats.cancel()
            writer.transport.abort()
            if not self._closed:
                log.warning("peer_disconnected", peer=f"{self.peer_id:x}", reason=reason)
        return accepted.done() and accepted.result()

    async def _watch_answer(
        self, reader: asyncio.StreamReader, accepted: asyncio.Future
    ) -> tuple[int, bytes]:
        """Read the peer's answer: a refusal ends the task with (status, body); an accepted
        stream (200 with keep-alives) keeps it reading until the stream dies or ends."""
        try:
            status, headers = await asyncio.wait_for(read_head(reader), READ_TIMEOUT)
        except TimeoutError:
            raise StreamDead(f"no answer from the peer in {READ_TIMEOUT}s") from None
        if status != 200 or H_KEEPALIVE.lower() not in headers:
            accepted.set_result(False)
            body = await asyncio.wait_for(read_body(reader, headers), READ_TIMEOUT)
            return status, body
        accepted.set_result(True)
        self.active_since = time.monotonic()  # etcd's ActiveSince: the peer took the stream
        while True:
            try:
                data = await asyncio.wait_for(reader.read(4096), READ_TIMEOUT)
            except TimeoutError:
                raise StreamDead(f"nothing from the peer for {READ_TIMEOUT}s") from None
            if not data:
                raise ConnectionResetError("the peer ended the stream")

    async def _heartbeats(self) -> None:
        """Queue a link heartbeat whenever nothing was written for HEARTBEAT_INTERVAL."""
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            if time.monotonic() - self._written_at >= HEARTBEAT_INTERVAL and not self._pending:
                self._pending.append(LINK_HEARTBEAT)
                self._wake.set()


def _status(task: asyncio.Task) -> int:
    if task.cancelled() or task.exception() is not None:
        return 0
    return task.result()[0]


def _refusal(task: asyncio.Task) -> str:
    if task.cancelled():
        return "cancelled"
    e = task.exception()
    if e is not None:
        return str(e) or type(e).__name__
    status, body = task.result()
    return f"peer answered HTTP {status}: {body.decode('utf-8', 'replace')[:200]}"
