"""Pre-vote, check-quorum and the leader lease (Raft thesis §6.4, §9.6; etcd's raft_test.go)."""

from __future__ import annotations

from raftkv.raft import Message, MessageType, StateType
from raftkv.raft.state import CAMPAIGN_TRANSFER, NONE
from tests.raft.helpers import Network, new_node, take

MT = MessageType


def test_rejoining_member_does_not_raise_terms_with_pre_vote() -> None:
    """Thesis §9.6: a member rejoining after a partition does not disrupt a healthy leader:
    its pre-votes fail, so neither its term nor the cluster's moves."""
    net = Network.of(3)
    net.campaign(1)
    term = net.raft(1).term
    net.isolate(3)
    for _ in range(50):
        net.tick(3)
        net.stabilize()
    assert net.raft(3).term == term  # pre-candidate forever, term unchanged
    assert net.raft(3).state == StateType.PRE_CANDIDATE
    net.heal()
    net.tick_all(3)
    assert net.raft(1).state == StateType.LEADER and net.raft(1).term == term
    assert net.raft(3).lead == 1


def test_without_pre_vote_a_rejoining_member_forces_a_new_term() -> None:
    """§5.2 contrast: without pre-vote the isolated member raises its term, and on rejoining
    its higher term deposes the leader (which is exactly what pre-vote prevents)."""
    net = Network.of(3, pre_vote=False, check_quorum=False)
    net.campaign(1)
    net.isolate(3)
    for _ in range(50):
        net.tick(3)
        net.stabilize()
    assert net.raft(3).term > net.raft(1).term
    net.heal()
    term = net.raft(1).term
    net.tick_all(30)
    assert net.raft(1).term > term  # the old leader was deposed by the higher term


def test_leader_steps_down_without_quorum() -> None:
    """Thesis §6.2 check-quorum: a leader that hears from no majority for an election timeout
    steps down."""
    net = Network.of(3)
    net.campaign(1)
    net.isolate(1)
    for _ in range(10):
        net.tick(1)
    assert net.raft(1).state == StateType.LEADER
    for _ in range(10):
        net.tick(1)
    assert net.raft(1).state == StateType.FOLLOWER and net.raft(1).lead == NONE


def test_leader_with_active_quorum_keeps_leading() -> None:
    """Check-quorum: heartbeat responses keep a connected leader in place indefinitely."""
    net = Network.of(3)
    net.campaign(1)
    term = net.raft(1).term
    net.tick_all(100)
    assert net.raft(1).state == StateType.LEADER and net.raft(1).term == term


def test_votes_refused_while_a_live_leader_is_heard() -> None:
    """Thesis §4.2.3 (leader lease): a follower that heard from its leader within the election
    timeout ignores a vote request at a higher term (and keeps its term)."""
    r = new_node(2, check_quorum=True).raft
    r.step(Message(MT.HEARTBEAT, 2, 1, term=1))
    assert r.lead == 1
    take(r)
    r.step(Message(MT.VOTE, 2, 3, term=2, index=5, log_term=1))
    assert take(r) == [] and r.term == 1 and r.vote == NONE


def test_leader_transfer_vote_overrides_the_lease() -> None:
    """Leader transfer: a vote request carrying the transfer context is granted despite the
    lease (the old leader asked for it)."""
    r = new_node(2, check_quorum=True).raft
    r.step(Message(MT.HEARTBEAT, 2, 1, term=1))
    take(r)
    r.step(Message(MT.VOTE, 2, 3, term=2, context=CAMPAIGN_TRANSFER))
    [resp] = take(r)
    assert resp.type == MT.VOTE_RESP and not resp.reject and r.vote == 3


def test_vote_granted_after_the_lease_expires() -> None:
    """Leader lease: once an election timeout passed without the leader, votes are granted."""
    r = new_node(2, check_quorum=True, election_tick=10).raft
    r.step(Message(MT.HEARTBEAT, 2, 1, term=1))
    take(r)
    r.election_elapsed = 10
    r.step(Message(MT.VOTE, 2, 3, term=2))
    [resp] = take(r)
    assert not resp.reject and r.term == 2


def test_pre_vote_response_does_not_change_the_voters_term_or_vote() -> None:
    """Thesis §9.6: granting a pre-vote changes nothing on the voter."""
    r = new_node(2).raft
    r.step(Message(MT.PRE_VOTE, 2, 3, term=1))
    [resp] = take(r)
    assert resp.type == MT.PRE_VOTE_RESP and not resp.reject and resp.term == 1
    assert r.term == 0 and r.vote == NONE


def test_stale_pre_vote_is_rejected_with_the_current_term() -> None:
    """A pre-vote at a term below ours is rejected and tells the candidate our term."""
    r = new_node(2).raft
    r.step(Message(MT.HEARTBEAT, 2, 1, term=5))
    take(r)
    r.step(Message(MT.PRE_VOTE, 2, 3, term=3))
    [resp] = take(r)
    assert resp.reject and resp.term == 5


def test_partitioned_minority_leader_is_replaced_and_rejoins_as_follower() -> None:
    """§5.2/§5.3: the majority elects a new leader; the old one, once healed, learns the newer
    term from the responses to its stale messages and follows."""
    net = Network.of(5)
    net.campaign(1)
    net.isolate(1)
    for _ in range(30):
        net.tick_all(1)
    new = net.leader()
    assert new not in (0, 1)
    net.heal()
    net.tick_all(20)
    assert net.leader() == new
    assert net.raft(1).state == StateType.FOLLOWER and net.raft(1).lead == new
