"""Per-follower replication state on the leader: Progress, its Inflights window, and the
ProgressTracker that holds the configuration (voters, learners) and tallies votes.

Progress state machine (etcd's tracker/progress.go)::

    PROBE ----(append accepted)----> REPLICATE
      ^  \\                              |
      |   (needs compacted entries)      | (reject / unreachable)
      |          v                        v
      +------ SNAPSHOT <------------- PROBE
       (snapshot reported / caught up)

- PROBE: at most one append in flight per heartbeat interval (``msg_app_flow_paused``), used
  to find the match point.
- REPLICATE: entries are pipelined optimistically; ``next`` runs ahead of ``match``; the
  Inflights window bounds the number of messages and bytes in flight.
- SNAPSHOT: nothing is sent until the snapshot is reported applied or failed.

Invariants: ``match < next``; ``match`` only decreases (while the leader keeps its term) in
``forget_match``, when a refusal says the follower's log ends below it, and then only to an
index still known to match; a learner never counts toward a quorum; voters and learners are
disjoint.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum

from raftkv.raft.messages import ConfChange, ConfChangeType, ConfState
from raftkv.raft.quorum import VoteResult, committed_index, vote_result

__all__ = ["Inflights", "Progress", "ProgressState", "ProgressTracker"]


class ProgressState(IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2

    def __str__(self) -> str:
        return self.name


class Inflights:
    """A FIFO window of (last index, bytes) of append messages sent but not yet acknowledged.

    Full when it holds ``size`` messages or (with ``max_bytes`` > 0) ``max_bytes`` bytes."""

    __slots__ = ("_q", "bytes", "max_bytes", "size")

    def __init__(self, size: int, max_bytes: int = 0) -> None:
        assert size > 0, "inflights size must be positive"
        self.size = size
        self.max_bytes = max_bytes
        self.bytes = 0
        self._q: deque[tuple[int, int]] = deque()

    def add(self, index: int, nbytes: int) -> None:
        assert not self.full(), "cannot add into a full inflights window"
        assert not self._q or index > self._q[-1][0], "inflight indexes must increase"
        self._q.append((index, nbytes))
        self.bytes += nbytes

    def free_le(self, to: int) -> None:
        """Free every inflight message whose last index is <= ``to`` (acknowledged)."""
        q = self._q
        while q and q[0][0] <= to:
            self.bytes -= q.popleft()[1]

    def full(self) -> bool:
        return len(self._q) >= self.size or (self.max_bytes > 0 and self.bytes >= self.max_bytes)

    def count(self) -> int:
        return len(self._q)

    def reset(self) -> None:
        self._q.clear()
        self.bytes = 0


class Progress:
    """What the leader knows about one follower's log."""

    __slots__ = (
        "inflights",
        "is_learner",
        "match",
        "msg_app_flow_paused",
        "next",
        "pending_snapshot",
        "recent_active",
        "sent_commit",
        "state",
    )

    def __init__(
        self,
        match: int,
        next_: int,
        inflights: Inflights,
        is_learner: bool = False,
        recent_active: bool = False,
    ) -> None:
        self.match = match  # highest index known replicated on the follower
        self.next = next_  # next index to send; match < next
        self.sent_commit = 0  # highest commit index sent to the follower
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0  # index of the snapshot in flight (SNAPSHOT state)
        self.recent_active = recent_active  # heard from since the last check-quorum round
        self.msg_app_flow_paused = False
        self.inflights = inflights
        self.is_learner = is_learner

    def __repr__(self) -> str:
        return (
            f"Progress(state={self.state}, match={self.match}, next={self.next}, "
            f"learner={self.is_learner}, inflight={self.inflights.count()})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.msg_app_flow_paused = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1
        self.sent_commit = min(self.sent_commit, self.next - 1)

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index
        self.next = snapshot_index + 1
        self.sent_commit = snapshot_index

    def sent_entries(self, entries: int, nbytes: int) -> None:
        """Account for an append message carrying ``entries`` entries just sent."""
        if self.state == ProgressState.REPLICATE:
            if entries > 0:
                self.next += entries
                self.inflights.add(self.next - 1, nbytes)
            self.msg_app_flow_paused = self.inflights.full()
        elif self.state == ProgressState.PROBE:
            if entries > 0:
                self.msg_app_flow_paused = True
        else:
            raise AssertionError(f"sending append in unhandled state {self.state}")

    def can_bump_commit(self, index: int) -> bool:
        return index > self.sent_commit and self.sent_commit < self.next - 1

    def maybe_update(self, n: int) -> bool:
        """An append up to ``n`` was accepted; False if that is stale news."""
        if n <= self.match:
            return False
        self.match = n
        self.next = max(self.next, n + 1)
        self.msg_app_flow_paused = False
        return True

    def is_stale_rejection(self, rejected: int) -> bool:
        """etcd's rule for a refused append with prev index ``rejected``: while replicating,
        one at or below ``match`` is stale; while probing (one append at a time), one that
        does not refuse the probe in flight (prev index ``next - 1``). Best effort: a delayed
        duplicate of the refusal of that same probe still passes."""
        if self.state == ProgressState.REPLICATE:
            return rejected <= self.match
        return self.next - 1 != rejected

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """An append with prev index ``rejected`` was refused; the follower's hint says its log
        may match up to ``match_hint``. False if the rejection is stale."""
        if self.is_stale_rejection(rejected):
            return False
        if self.state == ProgressState.REPLICATE:
            self.next = self.match + 1
            self.sent_commit = min(self.sent_commit, self.next - 1)
            return True
        self.next = max(min(rejected, match_hint + 1), self.match + 1)
        self.sent_commit = min(self.sent_commit, self.next - 1)
        self.msg_app_flow_paused = False
        return True

    def forget_match(self, match: int, next_: int) -> None:
        """A refusal says the follower's log ends below ``match`` (it came back with a wiped
        data dir): lower ``match`` to an index still known to match and probe from ``next_``.
        The only way ``match`` ever decreases."""
        assert match < self.match, f"forget_match({match}) does not lower match {self.match}"
        assert match < next_ <= self.next, f"probe from {next_}: match {match}, next {self.next}"
        self.match = match
        self.become_probe()
        self.next = next_
        self.sent_commit = min(self.sent_commit, self.next - 1)

    def is_paused(self) -> bool:
        if self.state == ProgressState.SNAPSHOT:
            return True
        return self.msg_app_flow_paused


@dataclass(frozen=True, slots=True)
class ProgressStatus:
    """A read-only copy of a Progress, for ``Status``."""

    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    pending_snapshot: int
    inflight: int


class ProgressTracker:
    """The configuration (voters, learners), one Progress per member, and the current vote."""

    def __init__(self, max_inflight: int, max_inflight_bytes: int) -> None:
        self.voters: set[int] = set()
        self.learners: set[int] = set()
        self.progress: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight
        self.max_inflight_bytes = max_inflight_bytes

    def new_inflights(self) -> Inflights:
        return Inflights(self.max_inflight, self.max_inflight_bytes)

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))

    def is_singleton(self) -> bool:
        return len(self.voters) == 1

    def ids(self) -> list[int]:
        return sorted(self.progress)

    def committed(self) -> int:
        """The largest index replicated on a majority of voters."""
        prs = self.progress
        return committed_index(self.voters, lambda i: prs[i].match if i in prs else 0)

    def quorum_active(self) -> bool:
        votes = {i: pr.recent_active for i, pr in self.progress.items() if i in self.voters}
        return vote_result(self.voters, votes) == VoteResult.WON

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, node_id: int, granted: bool) -> None:
        self.votes.setdefault(node_id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        granted = sum(1 for i in self.voters if self.votes.get(i) is True)
        rejected = sum(1 for i in self.voters if self.votes.get(i) is False)
        return granted, rejected, vote_result(self.voters, self.votes)

    # --- configuration changes (one at a time; no joint consensus) ---------------------------

    def _init_progress(self, node_id: int, last_index: int, is_learner: bool) -> None:
        # A new member is probed from the leader's last index and counts as recently active,
        # so that it is not immediately considered to have failed a check-quorum round.
        self.progress[node_id] = Progress(
            0, max(last_index, 1), self.new_inflights(), is_learner, recent_active=True
        )

    def apply_conf_change(self, cc: ConfChange, last_index: int) -> None:
        nid = cc.node_id
        assert nid != 0, f"conf change for node id 0: {cc}"
        if cc.type == ConfChangeType.ADD_NODE:
            if nid in self.voters:
                return
            if nid in self.learners:  # promote the learner
                self.learners.discard(nid)
                self.progress[nid].is_learner = False
            else:
                self._init_progress(nid, last_index, is_learner=False)
            self.voters.add(nid)
        elif cc.type == ConfChangeType.ADD_LEARNER_NODE:
            if nid in self.learners:
                return
            if nid in self.voters:  # demote a voter
                assert len(self.voters) > 1, f"removing the last voter: {cc}"
                self.voters.discard(nid)
                self.progress[nid].is_learner = True
            else:
                self._init_progress(nid, last_index, is_learner=True)
            self.learners.add(nid)
        elif cc.type == ConfChangeType.REMOVE_NODE:
            if nid in self.voters:
                assert len(self.voters) > 1, f"removing the last voter: {cc}"
            self.voters.discard(nid)
            self.learners.discard(nid)
            self.progress.pop(nid, None)
        elif cc.type == ConfChangeType.UPDATE_NODE:
            pass
        else:  # pragma: no cover - enum is closed
            raise AssertionError(f"unknown conf change type {cc.type}")
        assert not (self.voters & self.learners), "voters and learners overlap"

    def restore(self, cs: ConfState, last_index: int) -> None:
        """Reset to exactly the configuration ``cs`` (after a snapshot or at start)."""
        assert not (set(cs.voters) & set(cs.learners)), f"voters and learners overlap in {cs}"
        self.voters = set()
        self.learners = set()
        self.progress = {}
        self.votes = {}
        for v in cs.voters:
            self.apply_conf_change(ConfChange(ConfChangeType.ADD_NODE, v), last_index)
        for lrn in cs.learners:
            self.apply_conf_change(ConfChange(ConfChangeType.ADD_LEARNER_NODE, lrn), last_index)

    def status(self) -> dict[int, ProgressStatus]:
        return {
            i: ProgressStatus(
                pr.match,
                pr.next,
                pr.state,
                pr.is_learner,
                pr.recent_active,
                pr.pending_snapshot,
                pr.inflights.count(),
            )
            for i, pr in sorted(self.progress.items())
        }
