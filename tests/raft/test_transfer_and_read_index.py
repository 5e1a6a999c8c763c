"""Leader transfer (thesis §3.10) and ReadIndex (thesis §6.4)."""

from __future__ import annotations

import pytest

from raftkv.raft import Message, MessageType, ProposalDroppedError, ReadState, StateType
from tests.raft.helpers import Network

MT = MessageType


def test_leader_transfer_to_an_up_to_date_follower() -> None:
    """Thesis §3.10: the leader sends TIMEOUT_NOW to an up-to-date transferee, which campaigns
    at once and wins (its vote request overrides the other members' lease)."""
    net = Network.of(3)
    net.campaign(1)
    net.propose(1, b"x")
    net.node(1).transfer_leader(2)
    net.stabilize()
    assert net.leader() == 2
    assert net.raft(1).state == StateType.FOLLOWER and net.raft(1).lead == 2


def test_leader_transfer_catches_up_a_lagging_transferee_first() -> None:
    """Thesis §3.10: a transferee that lacks entries is brought up to date before TIMEOUT_NOW."""
    net = Network.of(3)
    net.campaign(1)
    net.cut.add((1, 3))
    net.propose(1, b"x")
    net.node(1).transfer_leader(3)
    net.stabilize()
    assert net.leader() == 1  # stuck: cannot reach 3
    net.heal()
    net.tick_all(1)
    assert net.leader() == 3
    assert net.applied_data(3) == [b"x"]


def test_proposals_are_dropped_while_a_transfer_is_in_progress() -> None:
    """Thesis §3.10: the leader stops accepting client requests during a transfer."""
    net = Network.of(3)
    net.campaign(1)
    net.cut.add((1, 3))
    net.node(1).transfer_leader(3)
    net.stabilize()
    with pytest.raises(ProposalDroppedError, match="transfer"):
        net.node(1).propose(b"x")


def test_leader_transfer_aborts_after_an_election_timeout() -> None:
    """Thesis §3.10: if the transfer does not complete within an election timeout, the leader
    aborts it and accepts proposals again."""
    net = Network.of(3, election_tick=10)
    net.campaign(1)
    net.isolate(3)
    net.node(1).transfer_leader(3)
    net.stabilize()
    assert net.raft(1).lead_transferee == 3
    net.tick_all(10)
    assert net.raft(1).lead_transferee == 0
    net.node(1).propose(b"ok")


def test_transfer_requested_on_a_follower_is_forwarded_to_the_leader() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.node(3).transfer_leader(3)
    net.stabilize()
    assert net.leader() == 3


def test_read_index_on_leader_confirms_leadership_with_a_heartbeat_round() -> None:
    """Thesis §6.4: the read index is the commit index, released once a majority answered a
    heartbeat sent after the request arrived."""
    net = Network.of(3)
    net.campaign(1)
    net.propose(1, b"x")
    commit = net.raft(1).raft_log.committed
    net.isolate(1)
    net.node(1).read_index(b"ctx1")
    net.stabilize()
    assert net.drivers[1].read_states == []  # no quorum: no answer
    net.heal()
    net.node(1).read_index(b"ctx2")
    net.stabilize()
    assert net.drivers[1].read_states == [ReadState(commit, b"ctx1"), ReadState(commit, b"ctx2")]


def test_read_index_on_follower_is_forwarded_to_the_leader() -> None:
    """Thesis §6.4: a follower asks the leader for the read index and gets it back."""
    net = Network.of(3)
    net.campaign(1)
    net.propose(1, b"x")
    net.node(2).read_index(b"r")
    net.stabilize()
    assert net.drivers[2].read_states == [ReadState(net.raft(1).raft_log.committed, b"r")]


def test_read_index_without_a_leader_raises() -> None:
    net = Network.of(3)
    with pytest.raises(ProposalDroppedError, match="no leader"):
        net.node(1).read_index(b"r")


def test_new_leader_defers_reads_until_it_commits_an_entry_of_its_term() -> None:
    """Thesis §6.4: a new leader does not know the latest commit index until an entry of its
    own term commits; read requests wait for that."""
    net = Network.of(3, pre_vote=False)
    net.drop_types.add(MT.APP_RESP)
    net.campaign(1)
    r = net.raft(1)
    assert r.state == StateType.LEADER and not r.committed_entry_in_current_term()
    net.node(1).read_index(b"early")
    net.stabilize()
    assert net.drivers[1].read_states == []
    net.heal()
    net.tick_all(1)
    assert [rs.request_ctx for rs in net.drivers[1].read_states] == [b"early"]
    assert net.drivers[1].read_states[0].index == r.raft_log.committed


def test_single_member_answers_reads_at_once() -> None:
    net = Network.of(1)
    net.campaign(1)
    net.node(1).read_index(b"r")
    net.stabilize()
    assert net.drivers[1].read_states == [ReadState(1, b"r")]


def test_stale_leader_cannot_serve_a_read_index() -> None:
    """Thesis §6.4: a deposed leader in a minority never gets a quorum of heartbeat acks."""
    net = Network.of(5)
    net.campaign(1)
    net.cut |= {(a, b) for a in (1, 2) for b in (3, 4, 5)} | {
        (b, a) for a in (1, 2) for b in (3, 4, 5)
    }
    net.node(1).read_index(b"stale")
    net.stabilize()
    assert net.drivers[1].read_states == []
    assert net.raft(1).step(Message(MT.BEAT, 1, 1)) is None
