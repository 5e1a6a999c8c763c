"""Membership changes through Raft (etcd 3.4's AddMember / RemoveMember / UpdateMember /
PromoteMember, ``configure`` and ``applyConfChange``).

Proposing (any member; promote is decided by the leader, a follower forwards it through
``forward.py``):

    add     URLs valid? (ErrMemberBadURLs) -> strict reconfig check -> ADD_NODE / ADD_LEARNER_NODE
    remove  strict reconfig check -> REMOVE_NODE
    update  UPDATE_NODE (no checks before Raft, as in etcd)
    promote learner caught up (match >= 90% of the leader's)? -> strict check -> ADD_NODE promote

The strict reconfiguration check (``--strict-reconfig-check``, on by default as in etcd; off,
only the learner's catch-up is checked before a promote) uses what this member sees *now*:
"started" members (ones that published their name), and peers whose stream has been up for
the last ``HEALTH_INTERVAL`` (etcd's isConnectedFullySince). A change that would leave fewer
started or connected voters than a quorum is refused before it reaches Raft
(ErrMemberNotEnoughStarted, ErrUnhealthy).

Applying (every member, in log order): the change is validated against the member table as
applied so far (removed ids, duplicate id or peer URL, learner limit, promote of a non-learner),
exactly as etcd's ValidateConfigurationChange; an invalid change is applied to Raft as a no-op
and its error goes to the proposer. The index of every rejected change is kept in the backend
bucket ``conf_rejected`` (in the same batch as the consistent index), so replaying the log after
a restart gives Raft the same configuration without re-validating against a later table.

The ConfChange context is the member as JSON (``{"id","name","peerURLs","clientURLs",
"isLearner","promote"}``); the bootstrap entries of a new cluster carry none (the table was
written from ``--initial-cluster`` already). A removed member stops itself once its removal is
applied (etcd: "the member has been permanently removed from the cluster").

One change at a time per member (a lock); Raft itself also refuses a second change while one is
pending (it becomes an empty entry, and its proposer times out, as in etcd).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

import structlog

from raftkv import errors
from raftkv.backend import Backend
from raftkv.errors import EtcdError
from raftkv.pb import rpc
from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    ProgressStatus,
    ProposalDroppedError,
    decode_conf_change,
)
from raftkv.server.forward import LeaderOnly
from raftkv.server.membership import Member, RaftCluster, compute_member_id
from raftkv.server.tasks import spawn
from raftkv.server.wait import TIMED_OUT, IdGenerator, Wait
from raftkv.transport.peer import REMOVED_TEXT as REMOVED

__all__ = ["HEALTH_INTERVAL", "MemberOps", "MemberRemovedError", "check_urls"]

log = structlog.get_logger("raftkv.server")

HEALTH_INTERVAL = 5.0  # etcd's HealthInterval
MAX_LEARNERS = 1  # etcd 3.4's maxLearners
READY_PERCENT = 0.9  # a learner is ready once its match is 90% of the leader's
REJECTED_BUCKET = b"conf_rejected"
PROMOTE_PATH = "/members/promote"


class MemberRemovedError(Exception):
    """This member was removed from the cluster: it stops."""


def check_urls(urls: list[str]) -> list[str]:
    """etcd's types.NewURLs: non-empty; http(s) with host:port, or unix(s); no path. Sorted."""
    if not urls:
        raise errors.ErrMemberBadURLs
    for u in urls:
        try:
            p = urlsplit(u)
            port = p.port
        except ValueError:
            raise errors.ErrMemberBadURLs from None
        if p.scheme not in ("http", "https", "unix", "unixs") or p.path not in ("",):
            raise errors.ErrMemberBadURLs
        if p.scheme in ("http", "https") and (not p.hostname or port is None):
            raise errors.ErrMemberBadURLs
    return sorted(urls)


def _context(
    member_id: int, peer_urls: list[str], is_learner: bool = False, promote: bool = False
) -> bytes:
    d = {"id": member_id, "peerURLs": peer_urls, "isLearner": is_learner, "promote": promote}
    return json.dumps(d, separators=(",", ":")).encode()


class ConfChangeNode(Protocol):
    """What membership needs of the Raft driver."""

    id: int

    @property
    def is_leader(self) -> bool: ...
    def propose_conf_change(self, cc: ConfChange) -> None: ...
    def apply_conf_change(self, cc: ConfChange) -> ConfState: ...
    def progress(self) -> dict[int, ProgressStatus]: ...


class PeerTable(Protocol):
    """The transport's peer list and link health."""

    def add_peer(self, peer_id: int, urls: list[str]) -> None: ...
    def update_peer(self, peer_id: int, urls: list[str]) -> None: ...
    async def remove_peer(self, peer_id: int) -> None: ...
    def active_since(self, peer_id: int) -> float | None: ...


class MemberOps:
    def __init__(
        self,
        *,
        node: ConfChangeNode,
        cluster: RaftCluster,
        peers: PeerTable,
        backend: Backend,
        wait: Wait,
        idgen: IdGenerator,
        header: Callable[[], rpc.ResponseHeader],
        to_leader: Callable[[LeaderOnly, Any], Awaitable[Any]],
        request_timeout: float,
        on_removed: Callable[[BaseException], None],
        strict_reconfig_check: bool = True,
    ) -> None:
        self._node = node
        self._strict = strict_reconfig_check
        self._cluster = cluster
        self._peers = peers
        self._backend = backend
        self._wait = wait
        self._idgen = idgen
        self._header = header
        self._to_leader = to_leader
        self._request_timeout = request_timeout
        self._on_removed = on_removed
        self._lock = asyncio.Lock()
        self._stopping = False
        self.promote_op = LeaderOnly(
            PROMOTE_PATH, rpc.MemberPromoteRequest, rpc.MemberPromoteResponse, self._promote_local
        )

    # --- client calls -------------------------------------------------------------------------

    async def add(self, req: rpc.MemberAddRequest) -> rpc.MemberAddResponse:
        urls = check_urls(list(req.peerURLs))
        mid = compute_member_id(urls, str(int(time.time())))
        if mid in self._cluster.members:
            raise errors.ErrMemberExist
        if self._strict:
            if not req.isLearner and not self._ready_to_add_voter():
                raise errors.ErrMemberNotEnoughStarted
            if not self._connected_to_all_voters():
                raise errors.ErrUnhealthy
        t = ConfChangeType.ADD_LEARNER_NODE if req.isLearner else ConfChangeType.ADD_NODE
        members = await self._configure(t, mid, _context(mid, urls, req.isLearner))
        member = rpc.Member(ID=mid, peerURLs=urls, isLearner=req.isLearner)
        return rpc.MemberAddResponse(header=self._header(), member=member, members=members)

    async def remove(self, req: rpc.MemberRemoveRequest) -> rpc.MemberRemoveResponse:
        if self._strict:
            self._may_remove(req.ID)
        members = await self._configure(ConfChangeType.REMOVE_NODE, req.ID, b"")
        return rpc.MemberRemoveResponse(header=self._header(), members=members)

    async def update(self, req: rpc.MemberUpdateRequest) -> rpc.MemberUpdateResponse:
        urls = list(req.peerURLs)
        ctx = _context(req.ID, urls)
        members = await self._configure(ConfChangeType.UPDATE_NODE, req.ID, ctx)
        return rpc.MemberUpdateResponse(header=self._header(), members=members)

    async def promote(self, req: rpc.MemberPromoteRequest) -> rpc.MemberPromoteResponse:
        resp = await self._to_leader(self.promote_op, req)
        resp.header = self._header()
        return resp

    async def _promote_local(self, req: rpc.MemberPromoteRequest) -> rpc.MemberPromoteResponse:
        if not self._node.is_leader:
            raise errors.ErrNotLeader
        self._check_learner_ready(req.ID)
        if self._strict and not self._ready_to_promote():
            raise errors.ErrMemberNotEnoughStarted
        ctx = _context(req.ID, [], promote=True)
        members = await self._configure(ConfChangeType.ADD_NODE, req.ID, ctx)
        return rpc.MemberPromoteResponse(header=self._header(), members=members)

    # --- strict reconfiguration checks (this member's view) -----------------------------------

    def _voters(self) -> list[Member]:
        return [m for m in self._cluster.members.values() if not m.is_learner]

    def _ready_to_add_voter(self) -> bool:
        voters = self._voters()
        started = sum(1 for m in voters if m.name)
        n = len(voters) + 1
        if started == 1 and n == 2:
            return True
        return started >= n // 2 + 1

    def _ready_to_remove_voter(self, member_id: int) -> bool:
        rest = [m for m in self._voters() if m.id != member_id]
        started = sum(1 for m in rest if m.name)
        return started >= len(rest) // 2 + 1

    def _ready_to_promote(self) -> bool:
        voters = self._voters()
        return 1 + sum(1 for m in voters if m.name) >= (len(voters) + 1) // 2 + 1

    def _connected_since(self, member_id: int, since: float) -> bool:
        t = self._peers.active_since(member_id)
        return t is not None and t <= since

    def _connected_to_all_voters(self) -> bool:
        since = time.monotonic() - HEALTH_INTERVAL
        me = self._node.id
        return all(self._connected_since(m.id, since) for m in self._voters() if m.id != me)

    def _may_remove(self, member_id: int) -> None:
        me = self._node.id
        m = self._cluster.members.get(member_id)
        if m is not None and m.is_learner:
            return
        if not self._ready_to_remove_voter(member_id):
            raise errors.ErrMemberNotEnoughStarted
        if member_id != me and self._peers.active_since(member_id) is None:
            return  # a member that is down is not part of the active quorum
        voters = self._voters()
        since = time.monotonic() - HEALTH_INTERVAL
        active = 1 + sum(1 for v in voters if v.id != me and self._connected_since(v.id, since))
        if active - 1 < 1 + (len(voters) - 1) // 2:
            raise errors.ErrUnhealthy

    def _check_learner_ready(self, member_id: int) -> None:
        progress = self._node.progress()  # the caller is the leader
        pr = progress.get(member_id)
        if pr is None:
            return  # not found / not a learner: the apply-time validation says so
        lead = progress[self._node.id]
        if pr.match < lead.match * READY_PERCENT:
            raise errors.ErrLearnerNotReady

    # --- proposing ----------------------------------------------------------------------------

    async def _configure(self, t: ConfChangeType, member_id: int, ctx: bytes) -> list[rpc.Member]:
        wait = self._wait
        async with self._lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._request_timeout
            cc_id = self._idgen.next()
            cc = ConfChange(t, member_id, ctx, cc_id)
            fut = wait.register(cc_id, deadline)
            while True:
                try:
                    self._node.propose_conf_change(cc)
                    break
                except ProposalDroppedError:
                    if loop.time() >= deadline:
                        wait.cancel(cc_id)
                        raise errors.ErrTimeout from None
                    await asyncio.sleep(0.1)
            try:
                result = await fut
            except asyncio.CancelledError:
                wait.cancel(cc_id)
                raise
        if result is TIMED_OUT:
            raise errors.ErrTimeout
        if isinstance(result, EtcdError):
            raise result
        return result

    # --- applying (from the applier, in log order) --------------------------------------------

    def apply(self, e: Entry, fresh: bool, conf_state: ConfState) -> ConfState:
        """Apply the conf change entry ``e``; the new ConfState. ``fresh``: above the
        consistent index (the member table and the rejected bucket are updated)."""
        cc = decode_conf_change(e.data)
        backend = self._backend
        backend.create_bucket(REJECTED_BUCKET)
        key = e.index.to_bytes(8, "big")
        if not fresh:
            if backend.get(REJECTED_BUCKET, key) is not None:
                return conf_state
            return self._node.apply_conf_change(cc)
        ctx = json.loads(cc.context) if cc.context else None
        err = self._validate(cc, ctx)
        if err is not None:
            backend.put(REJECTED_BUCKET, key, b"")
            result: Any = err
            new_state = conf_state
        else:
            new_state = self._node.apply_conf_change(cc)
            self._change_table(cc, ctx)
            result = self._cluster.to_pb()
        if cc.id and self._wait.is_registered(cc.id):
            self._wait.trigger(cc.id, result)
        return new_state

    def _validate(self, cc: ConfChange, ctx: dict | None) -> EtcdError | None:
        """etcd's ValidateConfigurationChange over the table as applied so far."""
        cluster = self._cluster
        members = cluster.members
        mid = cc.node_id
        if mid in cluster.removed:
            return errors.ErrMemberNotFound  # ErrIDRemoved, shown as "member not found"
        if cc.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
            if ctx is None:
                return None  # a bootstrap entry: the table has the member already
            if ctx.get("promote"):
                if mid not in members:
                    return errors.ErrMemberNotFound
                if not members[mid].is_learner:
                    return errors.ErrMemberNotLearner
                return None
            if mid in members:
                # Known already: a table written ahead of the log (from --initial-cluster, or
                # the running members' list when joining). The log decides; the client-side
                # duplicate is refused before proposing (``add``).
                return None
            taken = {u for m in members.values() for u in m.peer_urls}
            if any(u in taken for u in ctx["peerURLs"]):
                return errors.ErrPeerURLExist
            if ctx.get("isLearner"):
                learners = sum(1 for m in members.values() if m.is_learner)
                if learners + 1 > MAX_LEARNERS:
                    return errors.ErrTooManyLearners
            return None
        if mid not in members:
            return errors.ErrMemberNotFound
        if cc.type == ConfChangeType.UPDATE_NODE and ctx is not None:
            taken = {u for m in members.values() if m.id != mid for u in m.peer_urls}
            if any(u in taken for u in ctx["peerURLs"]):
                return errors.ErrPeerURLExist
        return None

    def _change_table(self, cc: ConfChange, ctx: dict | None) -> None:
        cluster = self._cluster
        me = self._node.id
        mid = cc.node_id
        if cc.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
            if ctx is not None and ctx.get("promote"):
                cluster.promote(mid)
                log.info("promoted_member", member=f"{mid:x}")
                return
            urls = ctx["peerURLs"] if ctx is not None else []
            learner = bool(ctx and ctx.get("isLearner"))
            m = cluster.add(mid, urls, is_learner=learner)
            if m.is_learner != learner:  # known from --initial-cluster: the log decides
                m.is_learner = learner
                cluster.save_all()
            if m.peer_urls and mid != me:
                self._peers.add_peer(mid, m.peer_urls)
            if ctx is not None:
                log.info("added_member", member=f"{mid:x}", peer_urls=urls, learner=m.is_learner)
        elif cc.type == ConfChangeType.REMOVE_NODE:
            cluster.remove(mid)
            log.info("removed_member", member=f"{mid:x}")
            if mid == me:
                spawn(self._stop_removed())
            else:
                spawn(self._peers.remove_peer(mid))
        elif cc.type == ConfChangeType.UPDATE_NODE and ctx is not None:
            cluster.update_peer_urls(mid, ctx["peerURLs"])
            if mid != me:
                self._peers.update_peer(mid, ctx["peerURLs"])
            log.info("updated_member", member=f"{mid:x}", peer_urls=ctx["peerURLs"])

    async def _stop_removed(self) -> None:
        # a moment for the answer to the client and the commit index to reach the others
        await asyncio.sleep(1.0)
        self._removed()

    def removed_by_peers(self) -> None:
        """A peer refused this member as removed (it was removed while down, or restarted
        with its old data dir): it stops, as etcd's does."""
        self._removed()

    def _removed(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        log.warning(
            "member_removed",
            reason=REMOVED,
            what="the data dir of this member must be removed before it joins again",
        )
        self._on_removed(MemberRemovedError(REMOVED))
