"""Proposing through Raft and waiting for the apply result, with etcd's timeouts and errors.

- Raft refused the proposal (no leader known; leader transfer): nothing entered the log, so
  wait for a leader and try again — until the request timeout, then etcd's
  "context deadline exceeded" (what a follower without a leader answers in etcd 3.4).
- Accepted, but no result by the request timeout: "request timed out", or a variant, as
  etcd's parseProposeCtxErr chooses: "previous leader failure" when a leader was elected
  after the request started (and within two election timeouts of its start); else
  "connection lost" when the leader (this member) has not been connected to a quorum since
  the request started, or a follower not to its leader.
- Too many committed-but-unapplied entries: "too many requests".

A client's request carries its caller (``raftkv.auth.caller.CALLER``) in its header.

A request's size is decided before it gets here, once, for every client codec
(``raftkv.api.unary``: etcd's receive limit and "request is too large").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from raftkv import errors
from raftkv.auth.caller import CALLER
from raftkv.errors import EtcdError
from raftkv.pb.rpc import InternalRaftRequest, RequestHeader
from raftkv.raft import NONE
from raftkv.server.codec import encode_request
from raftkv.server.wait import DROPPED, TIMED_OUT, IdGenerator, Wait

__all__ = ["MAX_GAP_BETWEEN_APPLY_AND_COMMIT", "ProposalTarget", "Proposer"]

MAX_GAP_BETWEEN_APPLY_AND_COMMIT = 5000


class ProposalTarget(Protocol):
    """What proposing needs of the Raft driver."""

    lead: int
    committed: int

    def propose(self, req_id: int, data: bytes) -> None: ...


class Proposer:
    def __init__(
        self,
        *,
        node: ProposalTarget,
        wait: Wait,
        idgen: IdGenerator,
        applied_index: Callable[[], int],
        member_id: int,
        members: Callable[[], Collection[int]],
        active_since: Callable[[int], float | None],
        request_timeout: float,
        election_timeout: float,
        on_error: Callable[[EtcdError], None] = lambda _e: None,
    ) -> None:
        self._node = node
        self._on_error = on_error
        self._wait = wait
        self._idgen = idgen
        self._applied_index = applied_index
        self._member_id = member_id
        self._members = members
        self._active_since = active_since
        self._request_timeout = request_timeout
        self._election_timeout = election_timeout
        self.leader_changed = asyncio.Event()  # set and replaced on every leader change
        self.lead_elected_at = 0.0

    def on_leader_change(self, lead: int) -> None:
        self.leader_changed.set()
        self.leader_changed = asyncio.Event()
        if lead != NONE:
            self.lead_elected_at = asyncio.get_running_loop().time()

    async def wait_leader(self, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        while self._node.lead == NONE:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.leader_changed.wait(), left)
            except TimeoutError:
                return False
        return True

    async def propose(self, **fields: Any) -> Any:
        """Propose an ``InternalRaftRequest`` of ``fields`` and return what applying it
        answered; raises EtcdError (the apply's own error, or a timeout; ``on_error`` sees
        it first)."""
        req = InternalRaftRequest(**fields)
        caller = CALLER.get()
        if caller is not None:
            req.header = RequestHeader(username=caller.username, auth_revision=caller.revision)
        try:
            return await self._propose(req)
        except EtcdError as e:
            self._on_error(e)
            raise

    async def _propose(self, req: InternalRaftRequest) -> Any:
        node = self._node
        if node.committed - self._applied_index() > MAX_GAP_BETWEEN_APPLY_AND_COMMIT:
            raise errors.ErrTooManyRequests
        req.ID = self._idgen.next()
        data = encode_request(req)
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self._request_timeout
        wait = self._wait
        while True:
            if node.lead == NONE and not await self.wait_leader(deadline):
                raise errors.ErrContextDeadline
            fut = wait.register(req.ID, deadline)
            node.propose(req.ID, data)
            try:
                result = await fut
            except asyncio.CancelledError:
                wait.cancel(req.ID)
                raise
            if result is TIMED_OUT:
                raise self._timeout_error(start)
            if result is DROPPED:
                # Raft refused it: not in the log. Give the cluster a moment, then retry.
                if loop.time() >= deadline:
                    raise errors.ErrContextDeadline
                if node.lead != NONE:
                    await asyncio.sleep(min(0.05, max(deadline - loop.time(), 0)))
                continue
            if isinstance(result, EtcdError):
                raise result
            return result

    def _timeout_error(self, start: float) -> EtcdError:
        elected = self.lead_elected_at
        prev_lead_lost = elected - 2 * self._election_timeout
        if prev_lead_lost < start < elected:
            return errors.ErrTimeoutDueToLeaderFail
        lead = self._node.lead
        if lead == NONE:
            return errors.ErrTimeout  # etcd: no leader now, nothing more to say (a TODO there)
        # the request's start on the transport's clock (time.monotonic)
        since = time.monotonic() - (asyncio.get_running_loop().time() - start)

        def connected_since(member_id: int) -> bool:
            t = self._active_since(member_id)
            return t is not None and t <= since

        me = self._member_id
        if lead == me:
            members = self._members()
            up = sum(1 for mid in members if mid == me or connected_since(mid))
            if up < len(members) // 2 + 1:
                return errors.ErrTimeoutDueToConnectionLost
        elif not connected_since(lead):
            return errors.ErrTimeoutDueToConnectionLost
        return errors.ErrTimeout
