"""Linearizable reads by ReadIndex, batched (etcd's linearizableReadLoop).

Reads that arrive together share one round = one ``read_index(ctx)`` (one heartbeat round on
the leader, one forwarded request on a follower). When the core answers with
``ReadState(index, ctx)``, every read of that round waits until the local applied index reaches
``index`` and then reads the local MVCC state. A round's request is always issued after all of
its reads arrived, so a read never shares a confirmation that was requested before it; up to
``MAX_ROUNDS`` rounds are in flight at once (the next batch need not wait a whole round trip).

A round that gets no answer is re-sent every ``RETRY`` seconds (a leader change can lose it)
with the same ctx; after the request timeout its reads fail with etcd's "request timed out".
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
from typing import TYPE_CHECKING

from raftkv import errors
from raftkv.raft import ProposalDroppedError, ReadState
from raftkv.server.tasks import spawn

if TYPE_CHECKING:
    from raftkv.server.raft_node import RaftNode

__all__ = ["AppliedWaiters", "ReadIndexer"]

RETRY = 0.5
MAX_ROUNDS = 2  # confirmations in flight at once


class AppliedWaiters:
    """Futures resolved once the applied index reaches a given index."""

    def __init__(self) -> None:
        self.applied = 0
        self._heap: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def wait(self, index: int) -> asyncio.Future[None]:
        fut = asyncio.get_running_loop().create_future()
        if index <= self.applied:
            fut.set_result(None)
        else:
            heapq.heappush(self._heap, (index, next(self._seq), fut))
        return fut

    def applied_to(self, index: int) -> None:
        if index > self.applied:
            self.applied = index
        heap = self._heap
        while heap and heap[0][0] <= self.applied:
            _, _, fut = heapq.heappop(heap)
            if not fut.done():
                fut.set_result(None)


class ReadIndexer:
    def __init__(self, node: RaftNode, applied: AppliedWaiters, timeout: float) -> None:
        self._node = node
        self._applied = applied
        self._timeout = timeout
        self._waiting: list[asyncio.Future[None]] = []  # reads for the next round
        self._have_reads = asyncio.Event()
        self._answers: dict[bytes, asyncio.Future[int]] = {}
        self._leader_changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._prefix = os.urandom(4)
        self._ctr = itertools.count(1)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for f in self._waiting:
            if not f.done():
                f.set_exception(errors.ErrStopped)

    async def wait_linearizable(self) -> None:
        """Return once a read at this moment would be linearizable (or raise ErrTimeout)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiting.append(fut)
        self._have_reads.set()
        await fut

    # --- from the Ready loop ------------------------------------------------------------------

    def on_read_states(self, states: list[ReadState]) -> None:
        for rs in states:
            fut = self._answers.pop(rs.request_ctx, None)
            if fut is not None and not fut.done():
                fut.set_result(rs.index)

    def on_leader_change(self) -> None:
        self._leader_changed.set()

    # --- the loop -----------------------------------------------------------------------------

    async def _loop(self) -> None:
        rounds = asyncio.Semaphore(MAX_ROUNDS)
        while True:
            await self._have_reads.wait()
            self._have_reads.clear()
            if not self._waiting:
                continue
            await rounds.acquire()
            # reads that arrived while waiting for a free round join this one: its request
            # is issued after they arrived
            batch, self._waiting = self._waiting, []
            if not batch:
                rounds.release()
                continue
            spawn(self._round(batch, rounds))

    async def _round(self, batch: list[asyncio.Future[None]], rounds: asyncio.Semaphore) -> None:
        loop = asyncio.get_running_loop()
        ctx = self._prefix + next(self._ctr).to_bytes(8, "big")
        answer: asyncio.Future[int] = loop.create_future()
        self._answers[ctx] = answer
        deadline = loop.time() + self._timeout
        index = None
        try:
            while True:
                with contextlib.suppress(ProposalDroppedError):  # no leader: retry
                    self._node.read_index(ctx)
                left = deadline - loop.time()
                if left <= 0:
                    break
                try:
                    index = await asyncio.wait_for(asyncio.shield(answer), min(RETRY, left))
                    break
                except TimeoutError:
                    continue
        finally:
            self._answers.pop(ctx, None)
            rounds.release()
        if index is None:
            for f in batch:
                if not f.done():
                    f.set_exception(errors.ErrTimeout)
            return
        await self._finish(batch, index)

    async def _finish(self, batch: list[asyncio.Future[None]], index: int) -> None:
        await self._applied.wait(index)
        for f in batch:
            if not f.done():
                f.set_result(None)
