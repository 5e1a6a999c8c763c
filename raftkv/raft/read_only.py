"""ReadIndex bookkeeping on the leader (etcd's ReadOnlySafe mode), and ReadState.

A read request (identified by its unique, non-empty ``ctx``) is recorded with the commit index
at the time it arrived; the leader then sends a heartbeat round carrying the ctx of the newest
pending request. Once a majority of voters acknowledged a heartbeat with ctx ``c``, every request
queued up to and including ``c`` is safe to answer: the leader was still the leader after they
arrived, so their recorded commit index is a linearizable read point.

Invariant: ``queue`` and ``pending`` hold the same ctxs, ``queue`` in arrival order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from raftkv.raft.messages import Message

__all__ = ["ReadOnly", "ReadState"]


@dataclass(frozen=True, slots=True)
class ReadState:
    """The answer to ``read_index(ctx)``: reads issued before the request may be served once
    the local state machine has applied ``index``."""

    index: int
    request_ctx: bytes


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    def __init__(self) -> None:
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []

    def add_request(self, index: int, req: Message) -> None:
        ctx = req.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req, index)
        self.queue.append(ctx)

    def recv_ack(self, node_id: int, ctx: bytes) -> set[int] | None:
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks.add(node_id)
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Pop and return every request queued up to and including ``ctx``."""
        if ctx not in self.pending:
            return []
        i = self.queue.index(ctx) + 1
        done, self.queue = self.queue[:i], self.queue[i:]
        return [self.pending.pop(c) for c in done]

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
