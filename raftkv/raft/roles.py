"""The role step functions: what a leader, a (pre-)candidate and a follower do with a message
once the shared prologue in ``Raft.step`` has dealt with terms and votes; and the receiving
side of replication (AppendEntries, heartbeats, snapshots).

Each takes the ``Raft`` and a message whose term equals the node's term (or is 0 for local
messages and PROP/READ_INDEX).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from raftkv.raft.errors import ProposalDroppedError
from raftkv.raft.messages import Entry, EntryType, Message, MessageType
from raftkv.raft.quorum import VoteResult
from raftkv.raft.read_only import ReadState
from raftkv.raft.state import NONE, StateType
from raftkv.raft.tracker import Progress, ProgressState

if TYPE_CHECKING:
    from raftkv.raft.raft import Raft

__all__ = ["step_candidate", "step_follower", "step_leader"]

MT = MessageType


def step_leader(r: Raft, m: Message) -> None:
    t = m.type
    if t == MT.BEAT:
        r.bcast_heartbeat()
        return
    if t == MT.CHECK_QUORUM:
        # Check-quorum: step down unless a majority was heard from during the last election
        # timeout; a partitioned leader then stops serving (and stops ReadIndex).
        if not r.trk.quorum_active():
            r.become_follower(r.term, NONE)
        for i, pr in r.trk.progress.items():
            if i != r.id:
                pr.recent_active = False
        return
    if t == MT.PROP:
        _leader_propose(r, m)
        return
    if t == MT.READ_INDEX:
        if r.trk.is_singleton():
            r.response_to_read_index_req(m, r.raft_log.committed)
        elif not r.committed_entry_in_current_term():
            # Thesis §6.4: until an entry of its own term commits, the leader does not know the
            # commit index of its predecessor; defer the read.
            r.pending_read_index_messages.append(m)
        else:
            r.send_read_index_response(m)
        return
    if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
        raise AssertionError(
            f"{r.id:x} is leader at term {r.term} but got {t.name} from {m.from_:x} "
            "at the same term: two leaders in one term"
        )

    pr = r.trk.progress.get(m.from_)
    if pr is None:
        return  # not (or no longer) a member
    if t == MT.APP_RESP:
        pr.recent_active = True
        if m.reject:
            if (
                m.reject_hint < pr.match
                and pr.state != ProgressState.SNAPSHOT
                and not pr.is_stale_rejection(m.index)
            ):
                _follower_lost_entries(r, pr, m)
                r.send_append(m.from_)
                return
            next_probe = m.reject_hint
            if m.log_term > 0:
                # Skip every entry of ours whose term is above the follower's hint term.
                next_probe, _ = r.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                r.send_append(m.from_)
            return
        if pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE):
            if pr.state == ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state == ProgressState.SNAPSHOT and pr.match + 1 >= r.raft_log.first_index():
                # The follower caught up past our compaction point (e.g. via the snapshot).
                pr.become_probe()
                pr.become_replicate()
            elif pr.state == ProgressState.REPLICATE:
                pr.inflights.free_le(m.index)
            if r.maybe_commit():
                r.release_pending_read_index_messages()
                r.bcast_append()
            elif m.from_ != r.id and pr.can_bump_commit(r.raft_log.committed):
                r.send_append(m.from_)
            if m.from_ != r.id:
                while r.maybe_send_append(m.from_, send_if_empty=False):
                    pass
            if m.from_ == r.lead_transferee and pr.match == r.raft_log.last_index():
                r.send(Message(MT.TIMEOUT_NOW, m.from_, NONE))
        return
    if t == MT.HEARTBEAT_RESP:
        pr.recent_active = True
        pr.msg_app_flow_paused = False
        if pr.match < r.raft_log.last_index() or pr.state == ProgressState.PROBE:
            r.send_append(m.from_)
        if not m.context:
            return
        acks = r.read_only.recv_ack(m.from_, m.context)
        if acks is None or not _majority(r, acks):
            return
        for rs in r.read_only.advance(m.context):
            r.response_to_read_index_req(rs.req, rs.index)
        return
    if t == MT.SNAP_STATUS:
        if pr.state != ProgressState.SNAPSHOT:
            return
        if m.reject:
            pr.pending_snapshot = 0
        pr.become_probe()
        # Wait for a heartbeat response before probing again.
        pr.msg_app_flow_paused = True
        return
    if t == MT.UNREACHABLE:
        if pr.state == ProgressState.REPLICATE:
            pr.become_probe()
        return
    if t == MT.TRANSFER_LEADER:
        if pr.is_learner:
            return
        transferee = m.from_
        if r.lead_transferee != NONE:
            if r.lead_transferee == transferee:
                return
            r.abort_leader_transfer()
        if transferee == r.id:
            return
        # The transfer must finish within one election timeout or it is aborted.
        r.election_elapsed = 0
        r.lead_transferee = transferee
        if pr.match == r.raft_log.last_index():
            r.send(Message(MT.TIMEOUT_NOW, transferee, NONE))
        else:
            r.send_append(transferee)


def _follower_lost_entries(r: Raft, pr: Progress, m: Message) -> None:
    """A refusal, not stale by etcd's rule, whose hint is below ``pr.match``: the follower's
    log ends below entries it acknowledged. It came back with a wiped data dir and the same id
    (etcd panics in the follower on the heartbeat's commit, and without the panic would probe
    at ``match`` forever, since probing never goes below it).

    Keep ``match`` at the hint if our entry there has the hinted term (Log Matching: the logs
    agree up to it; true of a wiped member's bootstrap entries), else at 0, and probe from just
    past the hint: the usual backtracking, or a snapshot if we compacted that part, follows.

    With messages reordered, a refusal sent before the ack that raised ``match`` can arrive
    after it and look the same (etcd's staleness rule is best effort). Lowering ``match`` is
    then only wasted work: it stays an index the logs agree on, so commit is unaffected, and
    the follower re-acks at once. The raft streams deliver in order, so this is rare."""
    hint = m.reject_hint
    keep = hint if r.raft_log.term_or_zero(hint) == m.log_term else 0
    pr.forget_match(keep, hint + 1)


def _majority(r: Raft, acks: set[int]) -> bool:
    return sum(1 for v in r.trk.voters if v in acks) >= len(r.trk.voters) // 2 + 1


def _leader_propose(r: Raft, m: Message) -> None:
    assert m.entries, f"{r.id:x} stepped empty PROP"
    if r.id not in r.trk.progress:
        raise ProposalDroppedError("this member was removed from the cluster")
    if r.lead_transferee != NONE:
        raise ProposalDroppedError(f"leadership transfer to {r.lead_transferee:x} is in progress")
    ents: list[Entry] = list(m.entries)
    for i, e in enumerate(ents):
        if e.type != EntryType.CONF_CHANGE:
            continue
        if r.pending_conf_index > r.raft_log.applied:
            # One membership change at a time: refuse this one (etcd turns it into an empty
            # normal entry so the proposer's wait still resolves when it commits).
            ents[i] = Entry(0, 0, EntryType.NORMAL, b"")
        else:
            r.pending_conf_index = r.raft_log.last_index() + i + 1
    if not r.append_entry(ents):
        raise ProposalDroppedError("too many uncommitted entries (max_uncommitted_entries_size)")
    # Replicate when the next Ready is assembled rather than per proposal: proposals that
    # arrive between two Readies then travel in one append message per follower.
    r.pending_bcast = True


def step_candidate(r: Raft, m: Message) -> None:
    my_resp = MT.PRE_VOTE_RESP if r.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
    t = m.type
    if t == MT.PROP:
        raise ProposalDroppedError(f"no leader at term {r.term} (election in progress)")
    if t == MT.APP:
        r.become_follower(m.term, m.from_)  # m.term == r.term: someone else won
        handle_append_entries(r, m)
    elif t == MT.HEARTBEAT:
        r.become_follower(m.term, m.from_)
        handle_heartbeat(r, m)
    elif t == MT.SNAP:
        r.become_follower(m.term, m.from_)
        handle_snapshot(r, m)
    elif t == my_resp:
        res = r.poll(m.from_, not m.reject)
        if res == VoteResult.WON:
            if r.state == StateType.PRE_CANDIDATE:
                r.campaign(MT.VOTE)
            else:
                r.become_leader()
                r.bcast_append()
        elif res == VoteResult.LOST:
            r.become_follower(r.term, NONE)


def step_follower(r: Raft, m: Message) -> None:
    t = m.type
    if t == MT.PROP:
        if r.lead == NONE:
            raise ProposalDroppedError(f"no leader at term {r.term}")
        r.send(replace(m, to=r.lead))
    elif t == MT.APP:
        r.election_elapsed = 0
        r.lead = m.from_
        handle_append_entries(r, m)
    elif t == MT.HEARTBEAT:
        r.election_elapsed = 0
        r.lead = m.from_
        handle_heartbeat(r, m)
    elif t == MT.SNAP:
        r.election_elapsed = 0
        r.lead = m.from_
        handle_snapshot(r, m)
    elif t == MT.TRANSFER_LEADER:
        if r.lead != NONE:
            r.send(replace(m, to=r.lead))
    elif t == MT.TIMEOUT_NOW:
        r.hup(transfer=True)
    elif t == MT.READ_INDEX:
        if r.lead != NONE:
            r.send(replace(m, to=r.lead))
    elif t == MT.READ_INDEX_RESP and len(m.entries) == 1:
        r.read_states.append(ReadState(m.index, m.entries[0].data))


# --- the receiving side of replication ------------------------------------------------------


def handle_append_entries(r: Raft, m: Message) -> None:
    log = r.raft_log
    if m.index < log.committed:
        r.send(Message(MT.APP_RESP, m.from_, NONE, index=log.committed))
        return
    last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
    if last_new is not None:
        r.send(Message(MT.APP_RESP, m.from_, NONE, index=last_new))
        return
    # §5.3 with etcd's fast backtracking: hint the largest index whose term is <= the
    # leader's prev term, so the leader can skip a whole term per round trip.
    hint_index = min(m.index, log.last_index())
    hint_index, hint_term = log.find_conflict_by_term(hint_index, m.log_term)
    r.send(
        Message(
            MT.APP_RESP,
            m.from_,
            NONE,
            index=m.index,
            reject=True,
            reject_hint=hint_index,
            log_term=hint_term,
        )
    )


def handle_heartbeat(r: Raft, m: Message) -> None:
    """Commit what the leader says is committed, unless that lies beyond our last index.

    The leader sends ``commit = min(match, committed)``, and entries we acknowledged are
    durable, so a commit beyond our last index is only possible when this member lost its
    log: its data dir was wiped and it came back with the same id and an empty or
    bootstrap-only log (etcd panics here: "tocommit out of range"). We then commit nothing
    new — a log cut short may end in entries the leader overwrote (a disk that lied about
    fsync), so no part of it can be trusted as committed — and answer, so the leader probes
    again, sees our short log and walks back (a real wipe's commit already equals its last
    index: the bootstrap entries every member shares)."""
    if m.commit <= r.raft_log.last_index():
        r.raft_log.commit_to(m.commit)
    r.send(Message(MT.HEARTBEAT_RESP, m.from_, NONE, context=m.context))


def handle_snapshot(r: Raft, m: Message) -> None:
    assert m.snapshot is not None, "SNAP message without a snapshot"
    if r.restore(m.snapshot):
        r.send(Message(MT.APP_RESP, m.from_, NONE, index=r.raft_log.last_index()))
    else:
        r.send(Message(MT.APP_RESP, m.from_, NONE, index=r.raft_log.committed))
