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
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from raftkv import errors
from raftkv.errors import EtcdError
from raftkv.pb.rpc import InternalRaftRequest
from raftkv.raft import NONE
from raftkv.server.codec import encode_request
from raftkv.server.wait import DROPPED, TIMED_OUT

if TYPE_CHECKING:
    from raftkv.server.etcdserver import EtcdServer

__all__ = ["MAX_GAP_BETWEEN_APPLY_AND_COMMIT", "Proposer"]

MAX_GAP_BETWEEN_APPLY_AND_COMMIT = 5000


class Proposer:
    def __init__(self, server: EtcdServer) -> None:
        self.s = server
        self.leader_changed = asyncio.Event()  # set and replaced on every leader change
        self.lead_elected_at = 0.0

    def on_leader_change(self, lead: int) -> None:
        self.leader_changed.set()
        self.leader_changed = asyncio.Event()
        if lead != NONE:
            self.lead_elected_at = asyncio.get_running_loop().time()

    async def wait_leader(self, deadline: float) -> bool:
        loop = asyncio.get_running_loop()
        while self.s.node.lead == NONE:
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self.leader_changed.wait(), left)
            except TimeoutError:
                return False
        return True

    async def propose(self, req: InternalRaftRequest) -> Any:
        """Propose ``req`` (its ID set here) and return the applied response; raises
        EtcdError (the apply's own error, or a timeout)."""
        s = self.s
        node = s.node
        if node.committed - s.applier.applied_index > MAX_GAP_BETWEEN_APPLY_AND_COMMIT:
            raise errors.ErrTooManyRequests
        req.ID = s.idgen.next()
        data = encode_request(req)
        if len(data) > s.max_request_bytes + 4096:
            raise errors.ErrRequestTooLarge
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + s.request_timeout
        wait = s.wait
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
        s = self.s
        elected = self.lead_elected_at
        prev_lead_lost = elected - 2 * s.election_timeout
        if prev_lead_lost < start < elected:
            return errors.ErrTimeoutDueToLeaderFail
        lead = s.node.lead
        if lead == NONE:
            return errors.ErrTimeout  # etcd: no leader now, nothing more to say (a TODO there)
        # the request's start on the transport's clock (time.monotonic)
        since = time.monotonic() - (asyncio.get_running_loop().time() - start)

        def connected_since(member_id: int) -> bool:
            t = s.transport.active_since(member_id)
            return t is not None and t <= since

        if lead == s.member_id:
            members = s.cluster.members
            up = sum(1 for mid in members if mid == s.member_id or connected_since(mid))
            if up < len(members) // 2 + 1:
                return errors.ErrTimeoutDueToConnectionLost
        elif not connected_since(lead):
            return errors.ErrTimeoutDueToConnectionLost
        return errors.ErrTimeout
