"""A fault-injecting TCP proxy in front of each member's peer listener (no root needed).

    m1 (127.0.0.11) --dial--> proxy[m2] 127.0.0.12:P2 --> m2's real peer port 127.0.0.12:Q2
    m3 (127.0.0.13) --dial--> proxy[m2] ...

Every member advertises its proxy's address as its peer URL, and binds the source address of
its outgoing peer connections to its own loopback IP. So the proxy in front of `dst` knows from
a connection's source IP which member `src` dialled it, and a fault on the link src->dst touches
only the connections src opened to dst (on which src's messages to dst travel; dst's messages
to src travel on the connections dst opens to src's proxy: the link dst->src).

Faults per directed link (src, dst):
- cut, mode "blackhole" (default): bytes from src are no longer delivered and nothing comes
  back: open connections go silent, new ones are accepted and swallowed. On heal those
  connections are closed (never resumed: the peer stream is framed, so a gap would corrupt it)
  and src redials.
- cut, mode "stale": as blackhole, but on heal the connections it silenced are not closed:
  they stay silent for good (nothing delivered, nothing answered, no reset), as after a
  partition that moved the member to a new address (docker network disconnect + connect),
  where TCP says nothing for many minutes. Only the members' own timeouts end them; new
  connections after the heal work.
- cut, mode "reset": open connections are closed and new ones closed at once.
- latency_ms: every chunk from src is delivered that much later (order kept).
- drop (0..1): the share of Raft messages from src that are lost. The proxy reads the peer
  stream's framing (cluster.peerstream: chunked HTTP body of length-prefixed frames) and drops
  whole frames, so the member receives a valid stream with messages missing. On a connection
  that is not a peer stream (a snapshot POST), that share of the chunks breaks the connection
  instead (closed, never corrupted).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from dataclasses import asdict, dataclass, field

from cluster.peerstream import StreamFilter

__all__ = ["FaultProxy", "Faults", "LinkRule"]

_CHUNK = 65536


def _never() -> bool:
    return False


@dataclass
class LinkRule:
    cut: bool = False
    mode: str = "blackhole"  # or "stale", "reset"
    latency_ms: float = 0.0
    drop: float = 0.0

    def is_clear(self) -> bool:
        return not self.cut and self.latency_ms == 0 and self.drop == 0

    def to_json(self) -> dict:
        return asdict(self)


class _Conn:
    """One proxied connection: client side (from src) and upstream side (to dst's real port)."""

    def __init__(self, link: tuple[str, str], writer: asyncio.StreamWriter) -> None:
        self.link = link
        self.client = writer
        self.upstream: asyncio.StreamWriter | None = None
        self.silenced = False  # blackholed: swallow everything, deliver nothing
        self.stale = False  # silenced for good: a heal leaves it silent (mode "stale")
        self.filter = StreamFilter()  # src->dst bytes, frame by frame
        self.tasks: list[asyncio.Task] = []

    def abort(self) -> None:
        for w in (self.client, self.upstream):
            if w is not None:
                with contextlib.suppress(Exception):
                    w.transport.abort()


@dataclass
class Faults:
    """The fault table shared by all proxies of a cluster, and their live connections."""

    rules: dict[tuple[str, str], LinkRule] = field(default_factory=dict)
    conns: set[_Conn] = field(default_factory=set)
    rng: random.Random = field(default_factory=random.Random)

    def rule(self, src: str, dst: str) -> LinkRule:
        return self.rules.get((src, dst)) or LinkRule()

    def set(self, src: str, dst: str, **changes) -> LinkRule:
        rule = self.rules.get((src, dst)) or LinkRule()
        for k, v in changes.items():
            if v is None:
                continue
            if not hasattr(rule, k):
                raise ValueError(f"unknown fault setting {k!r}")
            setattr(rule, k, type(getattr(rule, k))(v))
        if rule.mode not in ("blackhole", "stale", "reset"):
            raise ValueError(f"unknown cut mode {rule.mode!r}")
        if not 0.0 <= rule.drop <= 1.0:
            raise ValueError("drop is a share between 0 and 1")
        self.rules[(src, dst)] = rule
        if rule.cut:
            for conn in [c for c in self.conns if c.link == (src, dst)]:
                if rule.mode == "reset":
                    conn.abort()
                else:
                    conn.silenced = True
                    conn.stale = rule.mode == "stale"
        return rule

    def heal(self, src: str | None = None, dst: str | None = None) -> None:
        """Clear every fault on the matching links (None matches any member)."""
        for link in list(self.rules):
            if src in (None, link[0]) and dst in (None, link[1]):
                del self.rules[link]
        for conn in list(self.conns):
            if conn.stale:
                continue
            if conn.silenced and src in (None, conn.link[0]) and dst in (None, conn.link[1]):
                conn.abort()

    def snapshot(self) -> dict:
        counts: dict[str, int] = {}
        for c in self.conns:
            key = f"{c.link[0]}->{c.link[1]}"
            counts[key] = counts.get(key, 0) + 1
        return {
            "rules": [
                {"src": s, "dst": d, **r.to_json()}
                for (s, d), r in sorted(self.rules.items())
                if not r.is_clear()
            ],
            "connections": counts,
        }


class FaultProxy:
    """The proxy in front of member `name`: listens on `listen`, forwards to `upstream`."""

    def __init__(
        self,
        name: str,
        listen: tuple[str, int],
        upstream: tuple[str, int],
        sources: dict[str, str],
        faults: Faults,
    ) -> None:
        self.name = name
        self.listen = listen
        self.upstream = upstream
        self.sources = sources  # source IP -> member name
        self.faults = faults
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, self.listen[0], self.listen[1], reuse_address=True
        )

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in [c for c in self.faults.conns if c.link[1] == self.name]:
            conn.abort()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        src = self.sources.get(peer[0] if peer else "", f"?{peer[0] if peer else ''}")
        conn = _Conn((src, self.name), writer)
        faults = self.faults
        rule = faults.rule(src, self.name)
        if rule.cut and rule.mode == "reset":
            conn.abort()
            return
        faults.conns.add(conn)
        try:
            if rule.cut:  # blackhole / stale: accept, swallow, never dial upstream
                conn.silenced = True
                conn.stale = rule.mode == "stale"
                while await reader.read(_CHUNK):
                    pass
                return
            try:
                up_reader, conn.upstream = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), timeout=5
                )
            except (OSError, TimeoutError):
                return
            conn.tasks = [
                asyncio.ensure_future(self._pump(conn, reader, conn.upstream, forward=True)),
                asyncio.ensure_future(self._pump(conn, up_reader, writer, forward=False)),
            ]
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        except asyncio.CancelledError:  # the helper is shutting down
            pass
        finally:
            faults.conns.discard(conn)
            conn.abort()

    async def _pump(
        self,
        conn: _Conn,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        forward: bool,
    ) -> None:
        """Copy one direction; `forward` is src->dst, the direction faults apply to."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue | None = None
        sender: asyncio.Task | None = None
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                if conn.silenced:
                    continue
                delay = 0.0
                if forward:
                    rule = self.faults.rule(*conn.link)
                    rng, share = self.faults.rng, rule.drop
                    if not conn.filter.raw:
                        data = conn.filter.feed(
                            data, (lambda r=rng, p=share: r.random() < p) if share else _never
                        )
                    if conn.filter.raw and share and rng.random() < share:
                        conn.abort()  # not a peer stream: lose it all rather than corrupt it
                        return
                    if not data:
                        continue
                    delay = rule.latency_ms / 1000.0
                if delay > 0 and queue is None:
                    queue = asyncio.Queue()
                    sender = asyncio.ensure_future(self._deliver(conn, queue, writer))
                if queue is not None:
                    queue.put_nowait((loop.time() + delay, data))
                else:
                    writer.write(data)
                    await writer.drain()
            if queue is not None and sender is not None:
                queue.put_nowait(None)
                await sender
            if not conn.silenced and writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            conn.abort()
        finally:
            if sender is not None and not sender.done():
                sender.cancel()

    @staticmethod
    async def _deliver(conn: _Conn, queue: asyncio.Queue, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (item := await queue.get()) is not None:
                at, data = item
                if (wait := at - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if conn.silenced:
                    continue
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            conn.abort()
