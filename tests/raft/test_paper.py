"""Rule-by-rule tests of the Raft paper (Ongaro & Ousterhout, "In Search of an Understandable
Consensus Algorithm"), in the style of etcd-io/raft's raft_paper_test.go. Each test cites the
section whose rule it checks."""

from __future__ import annotations

import random

import pytest

from raftkv.raft import Entry, HardState, Message, MessageType, StateType
from raftkv.raft.state import NONE
from tests.raft.helpers import (
    Driver,
    Network,
    app,
    elect,
    new_node,
    raft_with_log,
    rawnode_of,
    take,
)

MT = MessageType


# --- §5.1 terms -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_higher_term_message_makes_any_role_a_follower(role: str) -> None:
    """§5.1: a server that sees a larger term updates its term and reverts to follower."""
    r = new_node(1, pre_vote=False).raft
    if role == "candidate":
        r.become_candidate()
    elif role == "leader":
        elect(r)
    r.step(app(2, 1, term=r.term + 5, prev=(0, 0)))
    assert r.state == StateType.FOLLOWER
    assert r.term == 6 if role != "follower" else r.term == 5
    assert r.lead == 2


def test_stale_term_message_is_ignored() -> None:
    """§5.1: a request with a stale term is rejected (it changes nothing)."""
    r = raft_with_log(1, [1, 2, 3], term=3)
    r.step(app(2, 1, term=2, prev=(0, 0), ents=[(1, 2)]))
    assert r.term == 3 and r.raft_log.last_index() == 0 and r.lead == NONE
    # ... and the stale leader is told the newer term (needed with pre-vote/check-quorum)
    [resp] = take(r)
    assert resp.type == MT.APP_RESP and resp.term == 3 and resp.to == 2


# --- §5.2 leader election --------------------------------------------------------------------


def test_members_start_as_followers() -> None:
    """§5.2: when servers start up, they begin as followers."""
    r = new_node(1).raft
    assert r.state == StateType.FOLLOWER and r.term == 0 and r.lead == NONE


def test_leader_sends_heartbeats_every_heartbeat_tick() -> None:
    """§5.2: leaders send periodic heartbeats to all followers to maintain their authority."""
    r = new_node(1, heartbeat_tick=2).raft
    elect(r)
    r.tick()
    assert take(r) == []
    r.tick()
    hbs = take(r)
    assert sorted(m.to for m in hbs) == [2, 3]
    assert all(m.type == MT.HEARTBEAT and m.term == r.term for m in hbs)


def test_follower_starts_election_after_election_timeout() -> None:
    """§5.2: a follower that hears nothing for an election timeout becomes candidate, increments
    its term, votes for itself and requests votes from every other server."""
    r = new_node(1, pre_vote=False, election_tick=10).raft
    for _ in range(2 * 10):
        r.tick()
    assert r.state == StateType.CANDIDATE and r.term == 1 and r.vote == 1
    reqs = take(r)
    assert sorted(m.to for m in reqs) == [2, 3]
    assert all(m.type == MT.VOTE and m.term == 1 for m in reqs)


def test_pre_candidate_does_not_raise_its_term() -> None:
    """§9.6 (thesis): with pre-vote a timed-out follower first asks whether it could win,
    at term+1, without changing its own term or vote."""
    r = new_node(1, pre_vote=True).raft
    for _ in range(20):
        r.tick()
    assert r.state == StateType.PRE_CANDIDATE and r.term == 0 and r.vote == NONE
    reqs = take(r)
    assert all(m.type == MT.PRE_VOTE and m.term == 1 for m in reqs)


@pytest.mark.parametrize(
    ("size", "votes", "state"),
    [
        (1, {}, StateType.LEADER),
        (3, {2: True, 3: True}, StateType.LEADER),
        (3, {2: True}, StateType.LEADER),
        (5, {2: True, 3: True, 4: True, 5: True}, StateType.LEADER),
        (5, {2: True, 3: True}, StateType.LEADER),
        (3, {2: False, 3: False}, StateType.FOLLOWER),
        (5, {2: False, 3: False, 4: False}, StateType.FOLLOWER),
        (3, {}, StateType.CANDIDATE),
        (5, {2: True}, StateType.CANDIDATE),
        (5, {2: False, 3: False}, StateType.CANDIDATE),
    ],
)
def test_candidate_wins_with_majority_and_loses_with_majority_rejection(
    size: int, votes: dict[int, bool], state: StateType
) -> None:
    """§5.2: a candidate wins if it receives votes from a majority of the servers for the same
    term; it returns to follower once a majority rejects it."""
    r = new_node(1, list(range(1, size + 1)), pre_vote=False).raft
    r.step(Message(MT.HUP, 1, 1))
    r.step(Message(MT.VOTE_RESP, 1, 1, term=1))  # own vote (durable)
    for frm, granted in votes.items():
        r.step(Message(MT.VOTE_RESP, 1, frm, term=1, reject=not granted))
    assert r.state == state
    assert r.term == 1


@pytest.mark.parametrize(
    ("vote", "frm", "granted"),
    [(NONE, 2, True), (NONE, 3, True), (2, 2, True), (3, 3, True), (2, 3, False), (3, 2, False)],
)
def test_follower_votes_once_per_term_first_come_first_served(
    vote: int, frm: int, granted: bool
) -> None:
    """§5.2: each server votes for at most one candidate in a term, first-come-first-served."""
    r = raft_with_log(1, [1, 2, 3], term=1)
    r.vote = vote
    r.step(Message(MT.VOTE, 1, frm, term=1))
    [resp] = take(r)
    assert resp.type == MT.VOTE_RESP and resp.reject is not granted


def test_vote_response_waits_for_persistence() -> None:
    """§5.2 / Figure 2: term and vote are persisted before answering a vote request: the
    response travels in messages_after_append, and the Ready's hard state carries the vote."""
    rn = new_node(1, pre_vote=False)
    rn.step(Message(MT.VOTE, 1, 2, term=1))
    rd = rn.ready()
    assert rd.messages == []
    assert [m.type for m in rd.messages_after_append] == [MT.VOTE_RESP]
    assert rd.hard_state == HardState(1, 2, 0) and rd.must_sync


@pytest.mark.parametrize("msg_type", [MT.APP, MT.HEARTBEAT])
def test_candidate_falls_back_to_follower_on_leader_message(msg_type: MessageType) -> None:
    """§5.2: a candidate that receives AppendEntries from a leader whose term is at least its own
    recognizes the leader and returns to follower."""
    r = new_node(1, pre_vote=False).raft
    r.step(Message(MT.HUP, 1, 1))
    assert r.state == StateType.CANDIDATE
    r.step(Message(msg_type, 1, 2, term=r.term))
    assert r.state == StateType.FOLLOWER and r.lead == 2 and r.term == 1


def test_election_timeout_is_randomized_in_one_to_two_timeouts() -> None:
    """§5.2: election timeouts are chosen randomly from a fixed interval [et, 2et)."""
    seen = set()
    for seed in range(60):
        r = new_node(1, pre_vote=False, election_tick=10, rng=random.Random(seed)).raft
        ticks = 0
        while r.state == StateType.FOLLOWER:
            r.tick()
            ticks += 1
        assert 10 <= ticks < 20
        seen.add(ticks)
    assert len(seen) > 5


def test_randomized_timeouts_usually_avoid_split_votes() -> None:
    """§5.2: randomization makes it likely that only one follower times out first."""
    conflicts = 0
    for seed in range(100):
        rs = [new_node(i, pre_vote=False, rng=random.Random(seed * 10 + i)).raft for i in (1, 2, 3)]
        for _ in range(30):
            for r in rs:
                r.tick()
            started = [r for r in rs if r.state == StateType.CANDIDATE]
            if started:
                conflicts += len(started) > 1
                break
    assert conflicts < 30


# --- §5.3 log replication --------------------------------------------------------------------


def test_leader_replicates_a_proposal_to_every_follower() -> None:
    """§5.3: the leader appends the command to its log and issues AppendEntries in parallel to
    each follower, carrying the preceding entry's index and term."""
    r = new_node(1, pre_vote=False).raft
    elect(r)
    for pr in r.trk.progress.values():  # followers acknowledged the empty entry
        pr.maybe_update(1)
        pr.become_replicate()
    r.step(Message(MT.PROP, 1, 1, entries=(Entry(0, 0, data=b"x"),)))
    apps = take(r)
    assert sorted(m.to for m in apps) == [2, 3]
    for m in apps:
        assert m.type == MT.APP and (m.index, m.log_term) == (1, 1)
        assert m.entries == (Entry(1, 2, data=b"x"),)
    assert r.raft_log.last_index() == 2


def test_leader_commits_once_a_majority_stored_the_entry() -> None:
    """§5.3: an entry is committed once the leader has replicated it on a majority; the
    leader's commit index then travels in later AppendEntries."""
    net = Network.of(3, pre_vote=False)
    net.campaign(1)
    net.cut.add((1, 3))
    net.propose(1, b"x")
    r = net.raft(1)
    assert r.raft_log.committed == 2
    assert net.raft(2).raft_log.committed == 2  # learned through the next append/heartbeat
    assert net.raft(3).raft_log.last_index() == 1


@pytest.mark.parametrize(
    ("size", "acks", "committed"),
    [(1, [], True), (3, [], False), (3, [2], True), (5, [2], False), (5, [2, 3], True)],
)
def test_leader_commit_needs_a_majority_of_acks(
    size: int, acks: list[int], committed: bool
) -> None:
    """§5.3: the leader commits when a majority (itself included) has stored the entry."""
    net = Network.of(size, pre_vote=False)
    net.campaign(1)
    for j in range(2, size + 1):
        if j not in acks:
            net.cut.add((1, j))
    net.propose(1, b"x")
    assert (net.raft(1).raft_log.committed >= 2) is committed


def test_follower_commits_what_the_leader_committed() -> None:
    """§5.3: once a follower learns that an entry is committed, it applies it (in order)."""
    r = raft_with_log(1, [1, 2, 3], term=1)
    r.step(app(2, 1, term=1, prev=(0, 0), ents=[(1, 1), (2, 1)], commit=1))
    assert r.raft_log.committed == 1
    r.step(Message(MT.HEARTBEAT, 1, 2, term=1, commit=2))
    assert r.raft_log.committed == 2


@pytest.mark.parametrize(
    ("prev", "accept", "hint"),
    [
        ((0, 0), True, 0),
        ((2, 2), True, 0),
        ((2, 1), False, 1),  # term mismatch at prev index
        ((3, 3), False, 2),  # prev index past our last
        ((4, 3), False, 2),
    ],
)
def test_follower_rejects_append_with_mismatched_prev(
    prev: tuple[int, int], accept: bool, hint: int
) -> None:
    """§5.3: if the follower has no entry with the prev index and term, it refuses the new
    entries; the rejection hints where the logs may match (fast backtracking)."""
    r = raft_with_log(1, [1, 2, 3], [(1, 1), (2, 2)], term=3)
    r.step(app(2, 1, term=3, prev=prev))
    [resp] = take(r)
    assert resp.type == MT.APP_RESP and resp.reject is not accept
    if not accept:
        assert resp.reject_hint == hint and resp.index == prev[0]


@pytest.mark.parametrize(
    ("prev", "ents", "want"),
    [
        ((2, 2), [(3, 3)], [1, 2, 3]),
        ((1, 1), [(2, 3), (3, 4)], [1, 3, 4]),  # conflict at 2: truncate and replace
        ((0, 0), [(1, 1)], [1, 2]),  # already present: keep the rest
        ((0, 0), [(1, 1), (2, 2), (3, 3)], [1, 2, 3]),
    ],
)
def test_follower_truncates_conflicting_entries(
    prev: tuple[int, int], ents: list[tuple[int, int]], want: list[int]
) -> None:
    """§5.3: if an existing entry conflicts with a new one (same index, different term), the
    follower deletes it and all that follow; entries already present are kept."""
    r = raft_with_log(1, [1, 2, 3], [(1, 1), (2, 2)], term=2)
    r.step(app(2, 1, term=4, prev=prev, ents=ents))
    assert [e.term for e in r.raft_log.all_entries()] == want


def test_leader_brings_divergent_followers_to_its_log() -> None:
    """§5.3 Figure 7: the leader forces the followers' logs to duplicate its own, deleting
    conflicting entries and filling gaps, using the rejection hints."""
    leader_log = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    followers = [
        [1, 1, 1, 4, 4, 5, 5, 6, 6],
        [1, 1, 1, 4],
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
        [1, 1, 1, 4, 4, 4, 4],
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
    ]
    for f in followers:
        lead = raft_with_log(1, [1, 2, 3], list(enumerate(leader_log, 1)), term=8, pre_vote=False)
        fol = raft_with_log(2, [1, 2, 3], list(enumerate(f, 1)), term=7, pre_vote=False)
        third = raft_with_log(3, [1, 2, 3], list(enumerate(leader_log, 1)), term=7)
        net = Network()
        for r in (lead, fol, third):
            net.drivers[r.id] = Driver(rawnode_of(r))
        net.campaign(1)
        assert lead.state == StateType.LEADER
        net.propose(1, b"x")
        assert [e.term for e in fol.raft_log.all_entries()] == [
            e.term for e in lead.raft_log.all_entries()
        ]


# --- §5.4 safety ------------------------------------------------------------------------------


def test_vote_request_carries_last_log_index_and_term() -> None:
    """§5.4.1: RequestVote includes the candidate's last log index and term."""
    r = raft_with_log(1, [1, 2, 3], [(1, 1), (2, 2)], term=2, pre_vote=False)
    r.step(Message(MT.HUP, 1, 1))
    for m in take(r):
        assert (m.index, m.log_term, m.term) == (2, 2, 3)


@pytest.mark.parametrize(
    ("last", "granted"),
    [
        ((2, 2), True),  # same last term, same length
        ((3, 2), True),  # same last term, longer
        ((1, 2), False),  # same last term, shorter
        ((1, 3), True),  # higher last term wins regardless of length
        ((5, 1), False),  # lower last term loses regardless of length
    ],
)
def test_voter_grants_only_to_up_to_date_candidates(last: tuple[int, int], granted: bool) -> None:
    """§5.4.1: a voter denies its vote if its own log is more up-to-date than the candidate's."""
    r = raft_with_log(1, [1, 2, 3], [(1, 1), (2, 2)], term=2)
    r.step(Message(MT.VOTE, 1, 2, term=3, index=last[0], log_term=last[1]))
    [resp] = take(r)
    assert resp.reject is not granted


def test_leader_only_commits_entries_from_its_current_term_by_counting() -> None:
    """§5.4.2: a leader never commits an entry from a previous term by counting replicas; it
    commits it indirectly with the first entry of its own term (Figure 8)."""
    r = raft_with_log(1, [1, 2, 3], [(1, 1), (2, 2)], term=2, pre_vote=False)
    d = Driver(rawnode_of(r))
    r.become_candidate()
    r.become_leader()  # term 3, appends the empty entry 3
    d.handle_ready()  # persisted: the leader now counts its own copy of entry 3
    r.step(Message(MT.APP_RESP, 1, 2, term=3, index=2))  # a majority holds entry 2 (term 2)
    assert r.raft_log.committed == 0
    r.step(Message(MT.APP_RESP, 1, 2, term=3, index=3))
    assert r.raft_log.committed == 3


def test_new_leader_appends_an_empty_entry_of_its_term() -> None:
    """§8: a new leader commits a no-op entry at the start of its term."""
    r = raft_with_log(1, [1, 2, 3], [(1, 1)], term=1, pre_vote=False)
    r.become_candidate()
    r.become_leader()
    last = r.raft_log.all_entries()[-1]
    assert (last.index, last.term, last.data) == (2, 2, b"")
