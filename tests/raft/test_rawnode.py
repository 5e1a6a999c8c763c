"""The RawNode / Ready contract the server drives (see raftkv/raft/rawnode.py)."""

from __future__ import annotations

import pytest

from raftkv.raft import (
    Config,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProgressState,
    ProposalDroppedError,
    RawNode,
    SoftState,
    StateType,
    StepLocalMessageError,
)
from tests.raft.helpers import Driver, Network, new_node

MT = MessageType


def _single() -> RawNode:
    rn = RawNode(Config(id=1), MemoryStorage())
    rn.bootstrap([1])
    d = Driver(rn)
    d.handle_ready()
    rn.campaign()
    d.handle_ready()
    assert rn.raft.state == StateType.LEADER
    return rn


@pytest.mark.parametrize(
    "t",
    [
        MT.HUP,
        MT.BEAT,
        MT.CHECK_QUORUM,
        MT.UNREACHABLE,
        MT.SNAP_STATUS,
        MT.STORAGE_APPEND_RESP,
        MT.STORAGE_APPLY_RESP,
    ],
)
def test_step_rejects_local_message_types(t: MessageType) -> None:
    rn = new_node(1)
    with pytest.raises(StepLocalMessageError):
        rn.step(Message(t, 1, 2, term=1))


def test_step_ignores_responses_from_non_members() -> None:
    rn = new_node(1)
    rn.step(Message(MT.APP_RESP, 1, 99, term=1, index=5))
    assert not rn.raft.msgs


def test_propose_without_leader_raises() -> None:
    rn = new_node(1)
    with pytest.raises(ProposalDroppedError, match="no leader"):
        rn.propose(b"x")


def test_follower_forwards_proposals_to_the_leader() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.node(2).propose(b"fwd")
    rd = net.node(2).ready()
    [m] = rd.messages
    assert (m.type, m.to, m.entries[0].data) == (MT.PROP, 1, b"fwd")
    net.node(2).advance(rd)


def test_leader_counts_its_own_entry_only_after_advance() -> None:
    """The leader's durable copy is acknowledged by STORAGE_APPEND_RESP / its own append
    response, stepped in by advance(): before that, a single member cannot commit."""
    rn = _single()
    rn.propose(b"x")
    rd = rn.ready()
    assert [e.data for e in rd.entries] == [b"x"]
    assert rd.committed_entries == [] and rd.must_sync
    rn.storage.append(rd.entries)
    rn.advance(rd)
    rd = rn.ready()
    assert [e.data for e in rd.committed_entries] == [b"x"]
    assert rd.hard_state is not None and rd.hard_state.commit == rd.committed_entries[-1].index
    assert not rd.must_sync  # only the commit index changed
    rn.advance(rd)
    assert rn.status().applied == rd.committed_entries[-1].index
    assert not rn.has_ready()


def test_messages_are_never_self_addressed() -> None:
    net = Network.of(3)
    seen = []
    for d in net.drivers.values():
        orig = d.handle_ready

        def spy(orig=orig, d=d):
            out = orig()
            seen.extend((d.id, m) for m in out)
            return out

        d.handle_ready = spy  # type: ignore[method-assign]
    net.campaign(1)
    net.propose(2, b"x")
    net.node(1).read_index(b"r")
    net.tick_all(5)
    assert seen and all(m.to != i for i, m in seen)


def test_append_and_vote_responses_wait_for_persistence() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.node(1).propose(b"x")
    net.drivers[1].handle_ready()  # leader sends the append
    rd = net.node(2).ready()
    assert rd.messages == []
    rn2 = net.node(2)
    rn2.advance(rd)
    rn2.step(
        Message(
            MT.APP,
            2,
            1,
            term=net.raft(1).term,
            index=1,
            log_term=net.raft(1).term,
            entries=(Entry(net.raft(1).term, 2, data=b"y"),),
        )
    )
    rd = rn2.ready()
    assert [m.type for m in rd.messages_after_append] == [MT.APP_RESP]
    assert rd.entries and rd.must_sync


def test_soft_and_hard_state_only_when_changed() -> None:
    rn = new_node(1, [1])
    rn.campaign()
    rd = rn.ready()
    assert rd.soft_state == SoftState(0, StateType.PRE_CANDIDATE)
    rn.advance(rd)
    rd = rn.ready()
    assert rd.soft_state == SoftState(0, StateType.CANDIDATE)
    assert rd.hard_state == HardState(1, 1, 0) and rd.must_sync
    rn.advance(rd)
    rd = rn.ready()
    assert rd.soft_state == SoftState(1, StateType.LEADER)
    rn.storage.append(rd.entries)
    rn.advance(rd)
    rd = rn.ready()
    assert rd.soft_state is None


def test_committed_entries_are_bounded_per_ready() -> None:
    rn = RawNode(Config(id=1, max_committed_size_per_ready=100), MemoryStorage())
    rn.bootstrap([1])
    d = Driver(rn)
    d.handle_ready()
    rn.campaign()
    d.handle_ready()
    for _ in range(10):
        rn.propose(b"x" * 40)
    rd = rn.ready()
    rn.storage.append(rd.entries)
    rn.advance(rd)
    batches = []
    while rn.has_ready():
        rd = rn.ready()
        batches.append(rd.committed_entries)
        rn.advance(rd)
    assert sum(len(b) for b in batches) == 10
    assert all(len(b) == 1 or sum(len(e.data) + 12 for e in b) <= 100 for b in batches)
    assert len(batches) > 1


def test_ready_twice_without_advance_is_an_error() -> None:
    rn = new_node(1, [1])
    rn.campaign()
    rn.ready()
    with pytest.raises(AssertionError):
        rn.ready()


def test_status_reports_progress_on_the_leader() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.propose(1, b"x")
    st = net.node(1).status()
    assert st.raft_state == StateType.LEADER and st.lead == 1 and st.commit == 2
    assert {i: (p.match, p.next, p.state) for i, p in st.progress.items()} == {
        1: (2, 3, ProgressState.REPLICATE),
        2: (2, 3, ProgressState.REPLICATE),
        3: (2, 3, ProgressState.REPLICATE),
    }
    assert net.node(2).status().progress == {}


def test_restart_from_persisted_state_keeps_term_vote_and_log() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.propose(1, b"x")
    old = net.drivers[2].storage
    st = MemoryStorage()
    st._snapshot = old.snapshot()
    st.set_hard_state(old.hard_state)
    st.append(old.entries(old.first_index(), old.last_index() + 1, 1 << 30))
    rn = RawNode(Config(id=2), st)
    assert (rn.raft.term, rn.raft.vote) == (old.hard_state.term, old.hard_state.vote)
    assert rn.raft.raft_log.committed == old.hard_state.commit
    assert rn.raft.raft_log.last_index() == old.last_index()


def test_read_index_needs_a_context() -> None:
    rn = _single()
    with pytest.raises(ValueError):
        rn.read_index(b"")


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        Config(id=0).validate()
    with pytest.raises(ValueError):
        Config(id=1, election_tick=1, heartbeat_tick=1).validate()


def test_propose_many_replicates_a_batch_in_one_append_per_follower() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.node(1).propose_many([b"a", b"b", b"c"])
    rd = net.node(1).ready()
    apps = [m for m in rd.messages if m.type == MT.APP]
    assert sorted(m.to for m in apps) == [2, 3]
    assert all([e.data for e in m.entries] == [b"a", b"b", b"c"] for m in apps)
    net.drivers[1].storage.append(rd.entries)
    net.node(1).advance(rd)
    net.send(apps)
    net.stabilize()
    assert net.applied_data(3) == [b"a", b"b", b"c"]


def test_uncommitted_size_limit_drops_proposals() -> None:
    """max_uncommitted_entries_size bounds the payload bytes the leader holds uncommitted."""
    net = Network.of(3, max_uncommitted_entries_size=100)
    net.campaign(1)
    net.isolate(1)
    rn = net.node(1)
    rn.propose(b"x" * 60)
    rn.propose(b"x" * 30)
    with pytest.raises(ProposalDroppedError, match="uncommitted"):
        rn.propose(b"x" * 30)
    net.heal()
    net.stabilize()
    net.tick_all(2)
    rn.propose(b"x" * 30)  # committed and applied entries release the budget


def test_advance_without_persisting_entries_is_caught() -> None:
    rn = _single()
    rn.propose(b"x")
    rd = rn.ready()
    with pytest.raises(AssertionError, match=r"append Ready\.entries"):
        rn.advance(rd)
