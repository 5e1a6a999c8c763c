"""The Raft state machine: roles, elections, replication, commit, ReadIndex, leader transfer,
snapshots and membership — pure and synchronous (etcd-io/raft's ``raft.go``).

Every input is a ``Message`` passed to ``step`` (ticks arrive as local HUP/BEAT/CHECK_QUORUM
messages); every output is appended to ``msgs`` (may be sent at once) or ``msgs_after_append``
(only after the log/hard state of the current Ready is durable — append and vote responses,
including the ones a node addresses to itself, which RawNode steps back in on ``advance``).

``step`` = one shared prologue (term comparison, stale messages, votes) + the role's step
function (``step_leader`` / ``step_candidate`` / ``step_follower``).

Invariants:
- ``term`` never decreases; ``vote`` changes only together with a term change or from 0.
- at most one leader per term: a node becomes leader only with a majority of votes in its term.
- the leader commits only entries of its own term by counting (§5.4.2).
- entries at or below ``committed`` are never truncated.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from raftkv.raft.errors import (
    CompactedError,
    SnapshotTemporarilyUnavailableError,
    UnavailableError,
)
from raftkv.raft.log import RaftLog
from raftkv.raft.messages import (
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
)
from raftkv.raft.quorum import VoteResult
from raftkv.raft.read_only import ReadOnly, ReadState
from raftkv.raft.roles import step_candidate, step_follower, step_leader
from raftkv.raft.state import CAMPAIGN_TRANSFER, NONE, StateType
from raftkv.raft.storage import MemoryStorage
from raftkv.raft.tracker import ProgressState, ProgressTracker
from raftkv.raft.util import NO_LIMIT, ents_size, payloads_size

__all__ = ["Config", "Raft"]

MT = MessageType


@dataclass(slots=True)
class Config:
    """Parameters of one Raft node (etcd's raft.Config)."""

    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0
    max_size_per_msg: int = 1 << 20
    max_committed_size_per_ready: int = 1 << 26
    max_inflight_msgs: int = 256
    max_inflight_bytes: int = 0  # 0 = unlimited
    max_uncommitted_entries_size: int = 0  # 0 = unlimited
    check_quorum: bool = True
    pre_vote: bool = True
    rng: random.Random | None = None

    def validate(self) -> None:
        if self.id == NONE:
            raise ValueError("cannot use none as id")
        if self.heartbeat_tick <= 0:
            raise ValueError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ValueError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise ValueError("max inflight messages must be greater than 0")
        if self.max_inflight_bytes < 0 or self.max_uncommitted_entries_size < 0:
            raise ValueError("size limits must not be negative")
        if self.max_committed_size_per_ready <= 0:
            raise ValueError("max committed size per ready must be greater than 0")


_VOTE_RESP = {MT.VOTE: MT.VOTE_RESP, MT.PRE_VOTE: MT.PRE_VOTE_RESP}
_AFTER_APPEND = frozenset({MT.APP_RESP, MT.VOTE_RESP, MT.PRE_VOTE_RESP})
_TERMLESS = frozenset({MT.PROP, MT.READ_INDEX})


class Raft:
    def __init__(self, c: Config, storage: MemoryStorage) -> None:
        c.validate()
        self.id = c.id
        self.rng = c.rng if c.rng is not None else random.Random()
        self.raft_log = RaftLog(storage, c.max_committed_size_per_ready)
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size or NO_LIMIT
        self.trk = ProgressTracker(c.max_inflight_msgs, c.max_inflight_bytes)
        self.election_timeout = c.election_tick
        self.heartbeat_timeout = c.heartbeat_tick
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.msgs_after_append: list[Message] = []
        self.read_states: list[ReadState] = []
        self.read_only = ReadOnly()
        self.pending_read_index_messages: list[Message] = []
        self.lead_transferee = NONE
        # Index of the newest conf change proposed by this leader; a new one is refused while
        # this is above ``applied``.
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        # proposals were appended since the last broadcast (flushed by flush_appends)
        self.pending_bcast = False
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0

        hs, cs = storage.initial_state()
        self.trk.restore(cs, self.raft_log.last_index())
        self._after_config_change()
        if not hs.is_empty():
            self.load_state(hs)
        if c.applied > 0:
            self.raft_log.applied_to(c.applied, 0)
        self.become_follower(self.term, NONE)

    # --- state snapshots ---------------------------------------------------------------------

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.raft_log.committed)

    def load_state(self, hs: HardState) -> None:
        assert self.raft_log.committed <= hs.commit <= self.raft_log.last_index(), (
            f"{self.id:x} state.commit {hs.commit} is out of range "
            f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
        )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    def promotable(self) -> bool:
        pr = self.trk.progress.get(self.id)
        return (
            pr is not None
            and not pr.is_learner
            and not self.raft_log.has_next_or_in_progress_snapshot()
        )

    # --- sending -----------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        """Queue ``m``; stamps ``from_`` and (except for PROP/READ_INDEX and votes, which carry
        their own) the current term."""
        if m.type in (MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE, MT.PRE_VOTE_RESP):
            assert m.term != 0, f"term should be set when sending {m.type.name}"
        else:
            assert m.term == 0, f"term should not be set when sending {m.type.name} ({m.term})"
            if m.type not in _TERMLESS:
                m = _stamped(m, self.term, m.from_ or self.id)
        if m.from_ == NONE:
            m = _stamped(m, m.term, self.id)
        if m.type in _AFTER_APPEND:
            self.msgs_after_append.append(m)
        else:
            assert m.to != self.id, f"message should not be self-addressed: {m.type.name}"
            self.msgs.append(m)

    def send_append(self, to: int) -> None:
        self.maybe_send_append(to, send_if_empty=True)

    def maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        """Send the entries ``to`` needs next (or a snapshot if they are compacted)."""
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        prev_index = pr.next - 1
        try:
            prev_term = self.raft_log.term(prev_index)
        except (CompactedError, UnavailableError):
            return self.maybe_send_snapshot(to)
        ents: list[Entry] = []
        if pr.state != ProgressState.REPLICATE or not pr.inflights.full():
            try:
                ents = self.raft_log.entries(pr.next, self.max_msg_size)
            except CompactedError:
                return self.maybe_send_snapshot(to)
        if not ents and not send_if_empty:
            return False
        commit = self.raft_log.committed
        self.send(
            Message(
                MT.APP,
                to,
                NONE,
                index=prev_index,
                log_term=prev_term,
                entries=tuple(ents),
                commit=commit,
            )
        )
        pr.sent_entries(len(ents), payloads_size(ents))
        pr.sent_commit = commit
        return True

    def maybe_send_snapshot(self, to: int) -> bool:
        pr = self.trk.progress[to]
        if not pr.recent_active:
            return False
        try:
            snap = self.raft_log.snapshot()
        except SnapshotTemporarilyUnavailableError:
            return False
        assert not snap.is_empty(), "need non-empty snapshot"
        pr.become_snapshot(snap.metadata.index)
        self.send(Message(MT.SNAP, to, NONE, snapshot=snap))
        return True

    def send_heartbeat(self, to: int, ctx: bytes) -> None:
        pr = self.trk.progress[to]
        commit = min(pr.match, self.raft_log.committed)
        self.send(Message(MT.HEARTBEAT, to, NONE, commit=commit, context=ctx))
        pr.sent_commit = max(pr.sent_commit, commit)

    def bcast_append(self) -> None:
        for i in self.trk.ids():
            if i != self.id:
                self.send_append(i)

    def flush_appends(self) -> None:
        """Send the appends owed for proposals accepted since the last Ready."""
        if self.pending_bcast:
            self.pending_bcast = False
            if self.state == StateType.LEADER:
                self.bcast_append()

    def bcast_heartbeat(self, ctx: bytes | None = None) -> None:
        if ctx is None:
            ctx = self.read_only.last_pending_request_ctx()
        for i in self.trk.ids():
            if i != self.id:
                self.send_heartbeat(i, ctx)

    # --- local bookkeeping -------------------------------------------------------------------

    def applied_to(self, index: int, size: int) -> None:
        self.raft_log.applied_to(max(index, self.raft_log.applied), size)

    def applied_snap(self, snap: Snapshot) -> None:
        index = snap.metadata.index
        self.raft_log.stable_snap_to(index)
        self.applied_to(index, 0)

    def maybe_commit(self) -> bool:
        return self.raft_log.maybe_commit(self.trk.committed(), self.term)

    def reset(self, term: int) -> None:
        if self.term != term:
            assert term > self.term, f"term must not decrease ({self.term} -> {term})"
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.reset_randomized_election_timeout()
        self.abort_leader_transfer()
        self.trk.reset_votes()
        last = self.raft_log.last_index()
        for i, pr in self.trk.progress.items():
            pr.match = last if i == self.id else 0
            pr.next = last + 1
            pr.sent_commit = 0
            pr.recent_active = False
            pr.state = ProgressState.PROBE
            pr.pending_snapshot = 0
            pr.msg_app_flow_paused = False
            pr.inflights.reset()
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.pending_bcast = False
        self.read_only = ReadOnly()
        self.pending_read_index_messages = []

    def append_entry(self, ents: list[Entry]) -> bool:
        """Leader: append proposals at the end of the log in the current term."""
        li = self.raft_log.last_index()
        ents = [Entry(self.term, li + 1 + i, e.type, e.data) for i, e in enumerate(ents)]
        s = payloads_size(ents)
        if (
            self.uncommitted_size > 0
            and s > 0
            and self.uncommitted_size + s > self.max_uncommitted_size
        ):
            return False
        self.uncommitted_size += s
        li = self.raft_log.append(ents)
        # The leader acknowledges its own entries once they are durable (stepped on advance).
        self.send(Message(MT.APP_RESP, self.id, NONE, index=li))
        return True

    def reset_randomized_election_timeout(self) -> None:
        et = self.election_timeout
        self.randomized_election_timeout = et + self.rng.randrange(et)

    def past_election_timeout(self) -> bool:
        return self.election_elapsed >= self.randomized_election_timeout

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    def committed_entry_in_current_term(self) -> bool:
        return self.raft_log.term_or_zero(self.raft_log.committed) == self.term

    # --- time ----------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.state == StateType.LEADER:
            self._tick_heartbeat()
        else:
            self._tick_election()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self.promotable() and self.past_election_timeout():
            self.election_elapsed = 0
            self.step(Message(MT.HUP, self.id, self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(MT.CHECK_QUORUM, self.id, self.id))
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(MT.BEAT, self.id, self.id))

    # --- role transitions ----------------------------------------------------------------------

    def become_follower(self, term: int, lead: int) -> None:
        self.reset(term)
        self.lead = lead
        self.state = StateType.FOLLOWER

    def become_candidate(self) -> None:
        assert self.state != StateType.LEADER, "invalid transition [leader -> candidate]"
        self.reset(self.term + 1)
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def become_pre_candidate(self) -> None:
        assert self.state != StateType.LEADER, "invalid transition [leader -> pre-candidate]"
        # Pre-vote changes neither term nor vote.
        self.trk.reset_votes()
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE

    def become_leader(self) -> None:
        assert self.state != StateType.FOLLOWER, "invalid transition [follower -> leader]"
        self.reset(self.term)
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.trk.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # Conservatively assume an unapplied conf change may sit in the log.
        self.pending_conf_index = self.raft_log.last_index()
        # §5.4.2 / §8: an empty entry of the new term lets earlier entries commit.
        ok = self.append_entry([Entry(0, 0)])
        assert ok, "empty entry was dropped"

    def hup(self, transfer: bool = False) -> None:
        if self.state == StateType.LEADER or not self.promotable():
            return
        if self._has_unapplied_conf_changes():
            return
        if transfer:
            self.campaign(MT.VOTE, transfer=True)
        elif self.pre_vote:
            self.campaign(MT.PRE_VOTE)
        else:
            self.campaign(MT.VOTE)

    def _has_unapplied_conf_changes(self) -> bool:
        log = self.raft_log
        if log.applied >= log.committed:
            return False
        for ents in log.scan(log.applied + 1, log.committed + 1, log.max_applying_ents_size):
            if any(e.type == EntryType.CONF_CHANGE for e in ents):
                return True
        return False

    def campaign(self, vote_type: MessageType, transfer: bool = False) -> None:
        if vote_type == MT.PRE_VOTE:
            self.become_pre_candidate()
            term = self.term + 1  # the term we would campaign at; not adopted yet
        else:
            self.become_candidate()
            term = self.term
        last_index = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        for i in sorted(self.trk.voters):
            if i == self.id:
                # Our own vote counts once it is durable (stepped back in on advance).
                self.send(Message(_VOTE_RESP[vote_type], i, NONE, term=term))
                continue
            self.send(
                Message(
                    vote_type, i, NONE, term=term, index=last_index, log_term=last_term, context=ctx
                )
            )

    def poll(self, node_id: int, granted: bool) -> VoteResult:
        self.trk.record_vote(node_id, granted)
        return self.trk.tally_votes()[2]

    # --- step: shared prologue ---------------------------------------------------------------

    def step(self, m: Message) -> None:
        """Process one message. Raises ProposalDroppedError for refused proposals."""
        if m.term == 0:
            pass  # local message (or a PROP/READ_INDEX, which carry no term)
        elif m.term > self.term:
            if m.type in (MT.VOTE, MT.PRE_VOTE):
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.lead != NONE
                    and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # §6 (thesis 4.2.3): a live leader was heard recently; ignore disruptive
                    # candidates without raising our term.
                    return
            if m.type == MT.PRE_VOTE or (m.type == MT.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes never change our term
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A stale leader (e.g. after a partition) would otherwise never learn of the
                # new term, since pre-vote keeps our term from reaching it via votes.
                self.send(Message(MT.APP_RESP, m.from_, NONE))
            elif m.type == MT.PRE_VOTE:
                self.send(Message(MT.PRE_VOTE_RESP, m.from_, NONE, term=self.term, reject=True))
            elif m.type == MT.STORAGE_APPEND_RESP and m.snapshot is not None:
                self.applied_snap(m.snapshot)
            return

        t = m.type
        if t == MT.HUP:
            self.hup()
        elif t == MT.STORAGE_APPEND_RESP:
            if m.index != 0:
                self.raft_log.stable_to(m.index, m.log_term)
            if m.snapshot is not None:
                self.applied_snap(m.snapshot)
        elif t == MT.STORAGE_APPLY_RESP:
            if m.entries:
                self.applied_to(m.entries[-1].index, ents_size(m.entries))
                self.uncommitted_size = max(0, self.uncommitted_size - payloads_size(m.entries))
        elif t in (MT.VOTE, MT.PRE_VOTE):
            self._handle_vote_request(m)
        elif self.state == StateType.LEADER:
            step_leader(self, m)
        elif self.state in (StateType.CANDIDATE, StateType.PRE_CANDIDATE):
            step_candidate(self, m)
        else:
            step_follower(self, m)

    def _handle_vote_request(self, m: Message) -> None:
        # §5.2: one vote per term; §5.4.1: only for a candidate whose log is up to date.
        can_vote = (
            self.vote == m.from_
            or (self.vote == NONE and self.lead == NONE)
            or (m.type == MT.PRE_VOTE and m.term > self.term)
        )
        if can_vote and self.raft_log.is_up_to_date(m.index, m.log_term):
            self.send(Message(_VOTE_RESP[m.type], m.from_, NONE, term=m.term))
            if m.type == MT.VOTE:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self.send(Message(_VOTE_RESP[m.type], m.from_, NONE, term=self.term, reject=True))

    # --- receiving a snapshot ---------------------------------------------------------------

    def restore(self, s: Snapshot) -> bool:
        """Install a leader's snapshot; False if it is stale or only fast-forwards commit."""
        meta = s.metadata
        if meta.index <= self.raft_log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Should never happen: only a follower receives snapshots.
            self.become_follower(self.term + 1, NONE)
            return False
        cs = meta.conf_state
        if self.id not in cs.voters and self.id not in cs.learners:
            return False
        if self.raft_log.match_term(meta.index, meta.term):
            # We already have the snapshot's last entry: just commit up to it.
            self.raft_log.commit_to(meta.index)
            return False
        self.raft_log.restore(s)
        self.trk.restore(cs, self.raft_log.last_index())
        got = self._after_config_change()
        assert got == ConfState(tuple(sorted(cs.voters)), tuple(sorted(cs.learners))), (
            f"restored conf state {got} differs from snapshot's {cs}"
        )
        return True

    # --- membership ----------------------------------------------------------------------------

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        self.trk.apply_conf_change(cc, self.raft_log.last_index())
        return self._after_config_change()

    def _after_config_change(self) -> ConfState:
        cs = self.trk.conf_state()
        pr = self.trk.progress.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if (pr is None or self.is_learner) and self.state == StateType.LEADER:
            # A leader removed from (or demoted in) the configuration steps down.
            self.become_follower(self.term, NONE)
            return cs
        if self.state != StateType.LEADER or not cs.voters:
            return cs
        if self.maybe_commit():
            self.bcast_append()
        else:
            for i in self.trk.ids():
                if i != self.id:
                    self.maybe_send_append(i, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in self.trk.voters:
            self.abort_leader_transfer()
        return cs

    # --- ReadIndex -----------------------------------------------------------------------------

    def response_to_read_index_req(self, req: Message, read_index: int) -> None:
        if req.from_ in (NONE, self.id):
            self.read_states.append(ReadState(read_index, req.entries[0].data))
            return
        self.send(
            Message(MT.READ_INDEX_RESP, req.from_, NONE, index=read_index, entries=req.entries)
        )

    def send_read_index_response(self, m: Message) -> None:
        self.read_only.add_request(self.raft_log.committed, m)
        self.read_only.recv_ack(self.id, m.entries[0].data)
        self.bcast_heartbeat(m.entries[0].data)

    def release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages:
            return
        assert self.committed_entry_in_current_term(), "pending read index released too early"
        msgs, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in msgs:
            self.send_read_index_response(m)


def _stamped(m: Message, term: int, from_: int) -> Message:
    # positional construction: several times faster than dataclasses.replace on the hot path
    return Message(
        m.type,
        m.to,
        from_,
        term,
        m.log_term,
        m.index,
        m.entries,
        m.commit,
        m.snapshot,
        m.reject,
        m.reject_hint,
        m.context,
    )
