"""Two transports joined over loopback HTTP: what one sends the other receives; strangers are
refused; a peer that comes up late is reached once it is there."""

import asyncio
import socket

from aiohttp import web

from raftkv.raft.messages import Entry, Message, MessageType, Snapshot, SnapshotMetadata
from raftkv.transport import Transport


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Member:
    def __init__(self, member_id: int, cluster_id: int, port: int) -> None:
        self.got: list[Message] = []
        self.snaps: list[tuple[Message, bytes]] = []
        self.unreachable: list[int] = []
        self.port = port
        self.tr = Transport(member_id, cluster_id, listen_peer_url=f"http://127.0.0.1:{port}")
        self.runner: web.AppRunner | None = None

    # --- PeerInbox ---
    def on_message(self, m: Message) -> None:
        self.got.append(m)

    def report_unreachable(self, peer_id: int) -> None:
        self.unreachable.append(peer_id)

    async def on_snapshot(self, m, body) -> None:
        data = b"".join([c async for c in body])
        self.snaps.append((m, data))

    def is_removed(self, peer_id: int) -> bool:
        return False

    def on_removed(self) -> None:
        pass

    async def serve(self) -> None:
        app = web.Application()
        app.add_routes(self.tr.routes())
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def close(self) -> None:
        await self.tr.stop()
        if self.runner:
            await self.runner.cleanup()


async def _until(pred, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not pred():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


async def _pair(cluster_b: int = 7):
    pa, pb = _free_port(), _free_port()
    a, b = _Member(1, 7, pa), _Member(2, cluster_b, pb)
    a.tr.add_peer(2, [f"http://127.0.0.1:{pb}"])
    b.tr.add_peer(1, [f"http://127.0.0.1:{pa}"])
    await a.serve()
    await b.serve()
    a.tr.start(a)
    b.tr.start(b)
    return a, b


async def test_messages_sent_by_one_member_arrive_in_order_at_the_other():
    a, b = await _pair()
    try:
        await _until(lambda: a.tr.peers[2].connected)
        msgs = [
            Message(MessageType.APP, 2, 1, term=1, index=i, entries=(Entry(1, i + 1, data=b"x"),))
            for i in range(500)
        ]
        for i in range(0, 500, 50):
            a.tr.send(msgs[i : i + 50])
            await asyncio.sleep(0)
        await _until(lambda: len(b.got) == 500)
        assert b.got == msgs
    finally:
        await a.close()
        await b.close()


async def test_a_batch_on_an_idle_link_is_written_in_the_senders_turn():
    """No wait for the stream task's next turn: the bytes are on the socket when send
    returns; a batch sent while others are still queued waits behind them, in order."""
    a, b = await _pair()
    try:
        await _until(lambda: a.tr.peers[2].connected)
        link = a.tr.peers[2]
        before = link.sent_bytes
        first = [Message(MessageType.APP, 2, 1, term=1, index=i) for i in range(3)]
        a.tr.send(first)
        assert link.sent_bytes > before  # written synchronously
        queued = Message(MessageType.APP, 2, 1, term=1, index=3)
        link.send(queued)  # (the stream task's path)
        after = [Message(MessageType.APP, 2, 1, term=1, index=4)]
        a.tr.send(after)  # behind the queued one, not before it
        await _until(lambda: len(b.got) == 5)
        assert b.got == [*first, queued, *after]
    finally:
        await a.close()
        await b.close()


async def test_member_of_another_cluster_is_refused():
    a, b = await _pair(cluster_b=8)
    try:
        await asyncio.sleep(0.5)
        a.tr.send([Message(MessageType.HEARTBEAT, 2, 1, term=1)])
        await asyncio.sleep(0.3)
        assert b.got == []
        assert 2 in a.unreachable
    finally:
        await a.close()
        await b.close()


async def test_snapshot_stream_delivers_message_and_db_bytes():
    a, b = await _pair()
    try:
        snap = Snapshot(SnapshotMetadata(index=10, term=2))
        m = Message(MessageType.SNAP, 2, 1, term=2, snapshot=snap)

        async def body():
            for _ in range(5):
                yield b"d" * 100_000

        await a.tr.send_snapshot(m, body())
        assert len(b.snaps) == 1
        assert b.snaps[0][0] == m
        assert b.snaps[0][1] == b"d" * 500_000
    finally:
        await a.close()
        await b.close()


async def _a_alone():
    """a up and dialling b, which is not started yet (``b.serve``, ``b.tr.start(b)``)."""
    pa, pb = _free_port(), _free_port()
    a, b = _Member(1, 7, pa), _Member(2, 7, pb)
    a.tr.add_peer(2, [f"http://127.0.0.1:{pb}"])
    b.tr.add_peer(1, [f"http://127.0.0.1:{pa}"])
    await a.serve()
    a.tr.start(a)
    return a, b


async def test_peer_that_starts_late_is_reached_after_backoff():
    a, b = await _a_alone()
    try:
        await asyncio.sleep(0.3)
        assert 2 in a.unreachable
        await b.serve()
        b.tr.start(b)
        await _until(lambda: a.tr.peers[2].connected)
        a.tr.send([Message(MessageType.HEARTBEAT, 2, 1, term=1)])
        await _until(lambda: len(b.got) == 1)
    finally:
        await a.close()
        await b.close()


async def test_a_peer_that_comes_back_is_redialled_without_waiting_out_the_backoff(monkeypatch):
    """While b was down a's backoff grew (here to 30 s); b's own stream reaching a makes a
    dial b at once."""
    from raftkv.transport import peer

    monkeypatch.setattr(peer, "BACKOFF_MIN", 30.0)
    a, b = await _a_alone()
    try:
        await _until(lambda: 2 in a.unreachable)  # a's first dial failed: 30 s to wait
        await b.serve()
        b.tr.start(b)
        await _until(lambda: b.tr.peers[1].connected)
        await _until(lambda: a.tr.peers[2].connected, timeout=3.0)
    finally:
        await a.close()
        await b.close()


async def test_a_link_stuck_while_connecting_is_restarted(monkeypatch):
    import raftkv.transport.peer as peer_mod

    real = peer_mod.open_post
    calls = {"n": 0}

    async def hangs_once(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            await asyncio.sleep(3600)  # a connect that never returns
        return await real(*args, **kwargs)

    monkeypatch.setattr(peer_mod, "open_post", hangs_once)
    monkeypatch.setattr(peer_mod, "STUCK_AFTER", 0.5)
    a, b = await _pair()
    try:
        await _until(lambda: a.tr.peers[2].connected, timeout=10)
        a.tr.send([Message(MessageType.HEARTBEAT, 2, 1, term=1)])
        await _until(lambda: len(b.got) == 1)
    finally:
        await a.close()
        await b.close()


# --- liveness: every blocking step has a deadline -----------------------------------------------


def _fast_timeouts(monkeypatch, read: float = 0.6) -> None:
    import raftkv.transport.peer as peer_mod
    import raftkv.transport.transport as tr_mod

    for mod in (peer_mod, tr_mod):
        monkeypatch.setattr(mod, "READ_TIMEOUT", read)
        monkeypatch.setattr(mod, "HEARTBEAT_INTERVAL", read / 3)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.transport.abort()


async def test_a_stream_whose_path_went_silent_is_dropped_and_redialled(monkeypatch):
    # The first connection through this relay goes silent for good (nothing delivered, nothing
    # answered, never closed: a partition TCP says nothing about); later ones are forwarded.
    # Without a read deadline the sender would stay "connected" to it forever.
    _fast_timeouts(monkeypatch)
    a, b = await _pair()
    conns = []

    async def relay(reader, writer):
        conns.append(writer)
        if len(conns) == 1:
            while await reader.read(65536):
                pass
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", b.port)
        await asyncio.gather(_pipe(reader, up_w), _pipe(up_r, writer))

    server = await asyncio.start_server(relay, "127.0.0.1", 0)
    relay_port = server.sockets[0].getsockname()[1]
    try:
        await a.tr.remove_peer(2)
        a.tr.add_peer(2, [f"http://127.0.0.1:{relay_port}"])
        await _until(lambda: len(conns) == 1)
        a.tr.send([Message(MessageType.HEARTBEAT, 2, 1, term=1)])  # lost on the silent path
        await _until(lambda: a.tr.active_since(2) is not None, timeout=3)
        assert len(conns) >= 2
        a.tr.send([Message(MessageType.HEARTBEAT, 2, 1, term=2)])
        await _until(lambda: any(m.term == 2 for m in b.got))
    finally:
        server.close()
        for w in conns:
            w.transport.abort()
        await a.close()
        await b.close()


async def test_receiver_hangs_up_on_a_stream_on_which_nothing_arrives(monkeypatch):
    _fast_timeouts(monkeypatch)
    pb = _free_port()
    b = _Member(2, 7, pb)
    b.tr.add_peer(1, ["http://127.0.0.1:1"])
    await b.serve()
    b.tr.start(b)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", pb)
        writer.write(
            b"POST /raft/stream HTTP/1.1\r\nHost: x\r\nX-Raftkv-Cluster-ID: 7\r\n"
            b"X-Raftkv-From: 1\r\nX-Raftkv-To: 2\r\nX-Raftkv-Stream-Keepalive: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 2)
        assert head.startswith(b"HTTP/1.1 200")
        assert b"x-raftkv-stream-keepalive" in head.lower()
        t0 = asyncio.get_running_loop().time()
        rest = await asyncio.wait_for(reader.read(), 5)  # keep-alives, then the hang-up
        took = asyncio.get_running_loop().time() - t0
        assert rest, "no keep-alive before the hang-up"
        assert took < 2.0
        writer.transport.abort()
    finally:
        await b.close()


async def test_link_heartbeats_keep_an_idle_stream_up_and_are_not_delivered(monkeypatch):
    _fast_timeouts(monkeypatch, read=0.3)
    a, b = await _pair()
    try:
        await _until(lambda: a.tr.active_since(2) is not None)
        since = a.tr.active_since(2)
        await asyncio.sleep(1.5)  # five read timeouts without a Raft message
        assert a.tr.active_since(2) == since
        assert b.got == []
        a.tr.send([Message(MessageType.HEARTBEAT, 2, 1, term=1)])
        await _until(lambda: len(b.got) == 1)
    finally:
        await a.close()
        await b.close()


async def test_a_post_to_a_peer_that_stops_reading_fails_in_bounded_time():
    from raftkv.transport.http import Dialer, post

    held = []

    async def never_reads(reader, writer):
        writer.transport.pause_reading()
        held.append(writer)

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def body():
        for _ in range(256):
            yield b"x" * (1 << 20)

    try:
        t0 = asyncio.get_running_loop().time()
        try:
            await post(f"http://127.0.0.1:{port}", "/raft/snapshot", {}, body(), Dialer(), 0.5)
        except TimeoutError:
            pass
        else:
            raise AssertionError("the POST went through a peer that reads nothing")
        assert asyncio.get_running_loop().time() - t0 < 5.0
    finally:
        server.close()
        for w in held:
            w.transport.abort()
