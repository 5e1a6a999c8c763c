"""Request ids and the waiters that pair a proposal with its apply result (etcd's idutil and
wait packages).

An id is ``member_id << 48 | (unix_ms << 8 + counter) & (2**48 - 1)``: unique across members
(the member prefix) and across restarts (the time part), increasing within a member.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from typing import Any

__all__ = ["DROPPED", "TIMED_OUT", "IdGenerator", "Wait"]

_SUFFIX_BITS = 48
_SUFFIX_MASK = (1 << _SUFFIX_BITS) - 1
_MASK64 = (1 << 64) - 1

DROPPED = object()  # a waiter's result when Raft refused the proposal (safe to retry)
TIMED_OUT = object()  # a waiter's result when its deadline passed first


class IdGenerator:
    def __init__(self, member_id: int, now_ms: int | None = None) -> None:
        if now_ms is None:
            now_ms = int(time.time() * 1000)
        self._prefix = (member_id << _SUFFIX_BITS) & _MASK64
        self._suffix = (now_ms & ((1 << 40) - 1)) << 8

    def next(self) -> int:
        self._suffix += 1
        return self._prefix | (self._suffix & _SUFFIX_MASK)


class Wait:
    """id -> future of the apply result (a response, an EtcdError, DROPPED or TIMED_OUT).

    Deadlines are enforced by ``expire`` (called every few ms by a sweeper), not by a timer
    per request: one heap instead of a timer handle and a wrapper future per proposal."""

    def __init__(self) -> None:
        self._futs: dict[int, asyncio.Future[Any]] = {}
        self._deadlines: list[tuple[float, int]] = []

    def register(self, req_id: int, deadline: float | None = None) -> asyncio.Future[Any]:
        fut = asyncio.get_running_loop().create_future()
        self._futs[req_id] = fut
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, req_id))
        return fut

    def expire(self, now: float) -> None:
        dl = self._deadlines
        while dl and dl[0][0] <= now:
            _, req_id = heapq.heappop(dl)
            self.trigger(req_id, TIMED_OUT)
        if not self._futs and dl:
            dl.clear()

    def is_registered(self, req_id: int) -> bool:
        return req_id in self._futs

    def trigger(self, req_id: int, result: Any) -> None:
        fut = self._futs.pop(req_id, None)
        if fut is not None and not fut.done():
            fut.set_result(result)

    def cancel(self, req_id: int) -> None:
        self._futs.pop(req_id, None)

    def fail_all(self, result: Any) -> None:
        futs, self._futs = self._futs, {}
        for fut in futs.values():
            if not fut.done():
                fut.set_result(result)

    def __len__(self) -> int:
        return len(self._futs)
