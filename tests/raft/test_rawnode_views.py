"""RawNode's read-only views and the two "while the fsync runs" helpers a driver uses between
``ready()`` and ``advance()``: ``take_messages`` (send early what needs no persistence) and
``committed_entries_to_apply`` (apply early what a quorum already holds)."""

from __future__ import annotations

import contextlib
import random

from raftkv.raft import (
    NONE,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ProgressState,
    ProposalDroppedError,
    Ready,
    Snapshot,
    SnapshotMetadata,
    StateType,
    decode_conf_change,
)
from tests.raft.helpers import Driver, Network, new_node

MT = MessageType
MUST_WAIT_FOR_PERSISTENCE = {MT.APP_RESP, MT.VOTE_RESP, MT.PRE_VOTE_RESP}


def _persist_apply_advance(d: Driver, rd: Ready) -> list[Message]:
    """The rest of the driver loop after ``ready()``: persist, apply, advance; returns what may
    be sent only now."""
    if rd.snapshot is not None:
        d.storage.apply_snapshot(rd.snapshot)
    if rd.hard_state is not None:
        d.storage.set_hard_state(rd.hard_state)
    d.storage.append(rd.entries)
    for e in rd.committed_entries:
        if e.type == EntryType.CONF_CHANGE:
            d.rn.apply_conf_change(decode_conf_change(e.data))
        d.applied.append(e)
    d.rn.advance(rd)
    return rd.messages_after_append


# --- read-only views ---------------------------------------------------------------------------


def test_views_report_role_term_leader_and_log_positions() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.propose(1, b"x")
    leader, follower = net.node(1), net.node(2)
    assert (leader.id, leader.is_leader, leader.raft_state, leader.lead) == (
        1,
        True,
        StateType.LEADER,
        1,
    )
    assert (follower.is_leader, follower.raft_state, follower.lead) == (
        False,
        StateType.FOLLOWER,
        1,
    )
    st = leader.status()
    assert (leader.term, leader.committed, leader.applied) == (st.term, st.commit, st.applied)
    assert leader.applied == leader.committed == 2  # the leader's empty entry, then x


def test_views_follow_the_core_ahead_of_the_ready() -> None:
    """A node that hears from a new leader already reports its term and leader, before the
    Ready that says so."""
    net = Network.of(3)
    net.campaign(1)
    rn = net.node(2)
    term = rn.term
    rn.step(Message(MT.HEARTBEAT, 2, 3, term=term + 1))
    assert (rn.term, rn.lead, rn.raft_state) == (term + 1, 3, StateType.FOLLOWER)
    rd = rn.ready()
    assert rd.soft_state is not None and rd.soft_state.lead == 3
    assert rd.hard_state is not None and rd.hard_state.term == term + 1
    rn.campaign()
    assert (rn.lead, rn.raft_state) == (NONE, StateType.PRE_CANDIDATE)


# --- take_messages -----------------------------------------------------------------------------


def test_take_messages_leaves_append_and_vote_responses_for_after_persistence() -> None:
    rn = new_node(2)
    rn.step(Message(MT.PRE_VOTE, 2, 3, term=1))
    rn.step(Message(MT.VOTE, 2, 3, term=1))
    rn.step(Message(MT.APP, 2, 3, term=1, entries=(Entry(1, 1, data=b"x"),)))
    assert rn.take_messages() == []
    rd = rn.ready()
    assert rd.messages == []
    assert [m.type for m in rd.messages_after_append] == [
        MT.PRE_VOTE_RESP,
        MT.VOTE_RESP,
        MT.APP_RESP,
    ]
    assert all(not m.reject for m in rd.messages_after_append)


def test_take_messages_sends_heartbeats_during_an_fsync_and_not_again() -> None:
    net = Network.of(3)
    net.campaign(1)
    rn = net.node(1)
    rn.propose(b"x")
    rd = rn.ready()  # its entries are being persisted ...
    for _ in range(net.raft(1).heartbeat_timeout):
        rn.tick()  # ... while the heartbeat timeout fires
    early = rn.take_messages()
    assert sorted((m.type, m.to) for m in early) == [(MT.HEARTBEAT, 2), (MT.HEARTBEAT, 3)]
    assert rn.take_messages() == []
    _persist_apply_advance(net.drivers[1], rd)
    assert all(m.type != MT.HEARTBEAT for m in rn.ready().messages)


def test_take_messages_never_returns_a_message_that_must_wait_for_persistence() -> None:
    """A seeded busy cluster whose nodes, during every fsync, step in half of their incoming
    messages and send what ``take_messages`` gives them: nothing taken early is a response that
    acknowledges unpersisted state or is self-addressed, and the applied logs never diverge."""
    rng = random.Random(20261121)
    net = Network.of(3)
    net.campaign(1)
    in_flight: list[Message] = []
    taken = 0
    for n in range(600):
        for i, d in net.drivers.items():
            rn = d.rn
            if rng.random() < 0.3:
                with contextlib.suppress(ProposalDroppedError):
                    rn.propose(b"p%d" % n)
            if rng.random() < 0.2:
                rn.tick()
            if not rn.has_ready():
                continue
            rd = rn.ready()
            in_flight.extend(rd.messages)
            mine = [m for m in in_flight if m.to == i and rng.random() < 0.5]
            for m in mine:  # the fsync is running: messages keep arriving
                in_flight.remove(m)
                rn.step(m)
            early = rn.take_messages()
            assert all(m.type not in MUST_WAIT_FOR_PERSISTENCE and m.to != i for m in early)
            taken += len(early)
            in_flight.extend(early)
            in_flight.extend(_persist_apply_advance(d, rd))
        # deliver the rest, losing some
        rest, in_flight = in_flight, []
        net.send([m for m in rest if rng.random() < 0.9])
    net.stabilize()
    net.tick_all(net.raft(1).election_timeout * 3)
    assert taken > 100
    logs = [{e.index: (e.term, e.data) for e in d.applied} for d in net.drivers.values()]
    for a in logs:
        for b in logs:
            assert all(b[i] == v for i, v in a.items() if i in b)
    assert max(len(x) for x in logs) > 50


# --- committed_entries_to_apply ------------------------------------------------------------


def test_committed_entries_to_apply_hands_out_entries_a_quorum_holds_before_the_ready() -> None:
    """The leader's own fsync is running; the followers' acks commit the entry: it can be
    applied now, and it still comes out of the next Ready (applied moves only then)."""
    net = Network.of(3)
    net.campaign(1)
    rn = net.node(1)
    rn.propose(b"x")
    rd = rn.ready()
    applied = rn.applied
    assert rn.committed_entries_to_apply(applied + 1) == []  # not committed yet
    net.send(rd.messages)
    for i in (2, 3):
        net.send(net.drivers[i].handle_ready())  # the acks reach the leader mid-fsync
    [e] = rn.committed_entries_to_apply(applied + 1)
    assert (e.index, e.data, rn.committed, rn.applied) == (applied + 1, b"x", e.index, applied)
    _persist_apply_advance(net.drivers[1], rd)
    rd = rn.ready()
    assert [x.data for x in rd.committed_entries] == [b"x"]
    _persist_apply_advance(net.drivers[1], rd)
    assert rn.applied == e.index


def test_committed_entries_to_apply_respects_bounds_and_size() -> None:
    net = Network.of(3)
    net.campaign(1)
    for d in (b"a", b"b", b"c"):
        net.propose(1, d)
    rn = net.node(1)
    c = rn.committed
    assert [e.data for e in rn.committed_entries_to_apply(c - 2)] == [b"a", b"b", b"c"]
    assert [e.data for e in rn.committed_entries_to_apply(c - 2, max_size=1)] == [b"a"]
    assert rn.committed_entries_to_apply(c + 1) == []
    net.drivers[1].storage.compact(c - 1)
    assert rn.committed_entries_to_apply(c - 2) == []  # compacted away
    assert [e.data for e in rn.committed_entries_to_apply(c)] == [b"c"]


def test_committed_entries_to_apply_reads_past_overwritten_stored_entries() -> None:
    """MemoryStorage still holds an entry that a conflicting append replaced in the unstable
    tail (until the next Ready is persisted): the committed entry is the new one."""
    rn = new_node(2)
    d = Driver(rn)
    rn.step(Message(MT.APP, 2, 1, term=1, entries=(Entry(1, 1, data=b"old"),)))
    d.handle_ready()
    rn.step(Message(MT.APP, 2, 3, term=2, entries=(Entry(2, 1, data=b"new"),), commit=1))
    assert [e.data for e in d.storage.entries(1, 2, 1 << 20)] == [b"old"]
    assert [(e.term, e.data) for e in rn.committed_entries_to_apply(1)] == [(2, b"new")]


def test_committed_entries_to_apply_waits_for_a_pending_snapshot() -> None:
    """Entries after a snapshot build on the state it installs: none is handed out early until
    the snapshot is persisted (advance)."""
    rn = new_node(2)
    d = Driver(rn)
    snap = Snapshot(SnapshotMetadata(ConfState((1, 2, 3)), 5, 1), b"")
    rn.step(Message(MT.SNAP, 2, 1, term=1, snapshot=snap))
    ents = (Entry(1, 6, data=b"f"), Entry(1, 7, data=b"g"))
    rn.step(Message(MT.APP, 2, 1, term=1, index=5, log_term=1, entries=ents, commit=7))
    assert rn.committed == 7
    assert rn.committed_entries_to_apply(6) == []
    d.handle_ready()
    assert [e.data for e in rn.committed_entries_to_apply(6)] == [b"f", b"g"]


# --- progress ----------------------------------------------------------------------------------


def test_progress_is_the_leaders_view_of_each_member() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.isolate(3)
    net.propose(1, b"x")
    net.propose(1, b"y")
    rn = net.node(1)
    pr = rn.progress()
    assert sorted(pr) == [1, 2, 3]
    assert pr[1].match == pr[2].match == rn.committed > pr[3].match
    assert pr[2].state == ProgressState.REPLICATE and not pr[3].is_learner
    assert pr[3].recent_active
    net.tick_all(net.raft(1).election_timeout)  # a check-quorum round without member 3
    assert rn.is_leader and [i for i, p in rn.progress().items() if not p.recent_active] == [3]
    assert net.node(2).progress() == {}
