"""Snapshots for followers behind the compacted log (§7) and one-at-a-time membership changes
(§6 / thesis §4.1)."""

from __future__ import annotations

import pytest

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    EntryType,
    Message,
    MessageType,
    ProgressState,
    ProposalDroppedError,
    Snapshot,
    SnapshotMetadata,
    StateType,
    decode_conf_change,
)
from tests.raft.helpers import Network, new_node, storage_with, take

MT = MessageType
ADD, REMOVE, LEARNER = (
    ConfChangeType.ADD_NODE,
    ConfChangeType.REMOVE_NODE,
    ConfChangeType.ADD_LEARNER_NODE,
)


def _compact(net: Network, i: int) -> None:
    d = net.drivers[i]
    applied = net.raft(i).raft_log.applied
    d.storage.create_snapshot(applied, net.raft(i).trk.conf_state(), b"state")
    d.storage.compact(applied)


def test_leader_sends_a_snapshot_to_a_follower_behind_its_compaction_point() -> None:
    """§7: when a follower needs entries the leader already discarded, the leader sends its
    snapshot; the follower installs it and replication continues from there."""
    net = Network.of(3)
    net.campaign(1)
    net.isolate(3)
    for i in range(5):
        net.propose(1, b"%d" % i)
    _compact(net, 1)
    net.heal()
    net.tick_all(1)
    snaps = [m for m in net.delivered if m.type == MT.SNAP and m.to == 3]
    assert len(snaps) == 1
    net.node(1).report_snapshot(3, True)
    net.propose(1, b"after")
    r3 = net.raft(3)
    assert net.drivers[3].storage.snapshot().metadata.index == snaps[0].snapshot.metadata.index
    assert r3.raft_log.committed == net.raft(1).raft_log.committed
    assert net.applied_data(3) == [b"after"]  # older state came in the snapshot


def test_failed_snapshot_goes_back_to_probe() -> None:
    net = Network.of(3)
    net.campaign(1)
    net.isolate(3)
    for i in range(3):
        net.propose(1, b"%d" % i)
    _compact(net, 1)
    net.heal()
    net.drop_types.add(MT.SNAP)  # the snapshot send fails in the transport
    net.tick_all(1)
    pr = net.raft(1).trk.progress[3]
    assert pr.state == ProgressState.SNAPSHOT
    net.node(1).report_snapshot(3, False)
    assert pr.state == ProgressState.PROBE and pr.pending_snapshot == 0
    net.heal()
    net.tick_all(2)
    # retried and installed: the follower is replicating again
    assert pr.state == ProgressState.REPLICATE
    assert pr.match == net.raft(1).raft_log.last_index()


def test_follower_ignores_a_snapshot_older_than_its_commit() -> None:
    """§7: a snapshot that describes a prefix of what the follower already committed is not
    installed (the follower answers with its commit index)."""
    st = storage_with([1, 2, 3])
    rn = new_node(2, storage=st)
    r = rn.raft
    r.step(Message(MT.APP, 2, 1, term=1, index=0, log_term=0, commit=0, entries=()))
    from raftkv.raft import Entry

    r.step(
        Message(
            MT.APP,
            2,
            1,
            term=1,
            index=0,
            log_term=0,
            commit=3,
            entries=(Entry(1, 1), Entry(1, 2), Entry(1, 3)),
        )
    )
    take(r)
    snap = Snapshot(SnapshotMetadata(ConfState((1, 2, 3)), 2, 1))
    r.step(Message(MT.SNAP, 2, 1, term=1, snapshot=snap))
    [resp] = take(r)
    assert resp.type == MT.APP_RESP and resp.index == 3
    assert r.raft_log.unstable.snapshot is None


def test_snapshot_restore_replaces_the_followers_log_and_configuration() -> None:
    rn = new_node(2, [1, 2])
    snap = Snapshot(SnapshotMetadata(ConfState((1, 2, 3), (4,)), 10, 3), b"x")
    rn.step(Message(MT.SNAP, 2, 1, term=3, snapshot=snap))
    rd = rn.ready()
    assert rd.snapshot == snap and rd.must_sync
    assert rd.hard_state is not None and rd.hard_state.commit == 10
    assert rd.committed_entries == []
    rn.storage.apply_snapshot(rd.snapshot)
    rn.advance(rd)
    r = rn.raft
    assert r.trk.conf_state() == ConfState((1, 2, 3), (4,))
    assert r.raft_log.first_index() == 11 and r.raft_log.applied == 10
    [resp] = rd.messages_after_append
    assert resp.type == MT.APP_RESP and resp.index == 10


def _conf_change(net: Network, cc: ConfChange) -> None:
    net.node(net.leader()).propose_conf_change(cc)
    net.stabilize()


def test_add_voter_then_it_counts_toward_quorum() -> None:
    """Thesis §4.1: a member added by a committed conf change joins the quorum."""
    net = Network.of(3)
    net.drivers[4] = Network(new_node(4, [])).drivers[4]  # empty config: waits to be contacted
    net.campaign(1)
    _conf_change(net, ConfChange(ADD, 4))
    assert net.raft(1).trk.voters == {1, 2, 3, 4}
    net.propose(1, b"x")
    assert net.applied_data(4) == [b"x"]
    assert 4 in net.raft(4).trk.voters  # it applied its own addition
    # with 4 voters a quorum is 3: two reachable followers are needed
    net.isolate(2)
    net.isolate(3)
    net.cut -= {(1, 4), (4, 1)}
    before = net.raft(1).raft_log.committed
    net.propose(1, b"y")
    assert net.raft(1).raft_log.committed == before


def test_remove_voter_shrinks_the_quorum() -> None:
    net = Network.of(3)
    net.campaign(1)
    _conf_change(net, ConfChange(REMOVE, 3))
    assert net.raft(1).trk.voters == {1, 2}
    net.isolate(3)
    net.propose(1, b"x")
    assert net.applied_data(2) == [b"x"]


def test_removed_leader_steps_down() -> None:
    """Thesis §4.2.2: a leader removed from the configuration steps down once the change is
    applied; the remaining members elect a new leader."""
    net = Network.of(3)
    net.campaign(1)
    _conf_change(net, ConfChange(REMOVE, 1))
    assert net.raft(1).state == StateType.FOLLOWER
    assert not net.raft(1).promotable()
    net.tick_all(40)
    assert net.leader() in (2, 3)


def test_learner_receives_entries_but_neither_votes_nor_counts() -> None:
    net = Network.of(2)
    net.drivers[3] = Network(new_node(3, [])).drivers[3]
    net.campaign(1)
    _conf_change(net, ConfChange(LEARNER, 3))
    net.propose(1, b"x")
    assert net.applied_data(3) == [b"x"]
    r3 = net.raft(3)
    assert r3.is_learner and not r3.promotable()
    for _ in range(50):
        r3.tick()
    assert r3.state == StateType.FOLLOWER
    # the learner does not count toward the quorum: {1, 2} still needs both
    net.isolate(2)
    before = net.raft(1).raft_log.committed
    net.propose(1, b"y")
    assert net.raft(1).raft_log.committed == before


def test_promote_learner_with_add_node() -> None:
    net = Network.of(2)
    net.drivers[3] = Network(new_node(3, [])).drivers[3]
    net.campaign(1)
    _conf_change(net, ConfChange(LEARNER, 3))
    _conf_change(net, ConfChange(ADD, 3))
    assert net.raft(1).trk.voters == {1, 2, 3} and not net.raft(1).trk.learners
    assert not net.raft(3).is_learner


def test_second_pending_conf_change_is_replaced_by_an_empty_entry() -> None:
    """Thesis §4.1: one membership change at a time; a second proposed before the first is
    applied is turned into an empty normal entry."""
    net = Network.of(3)
    net.campaign(1)
    net.isolate(2)
    net.isolate(3)
    rn = net.node(1)
    rn.propose_conf_change(ConfChange(REMOVE, 3))
    rn.propose_conf_change(ConfChange(REMOVE, 2))
    ents = net.raft(1).raft_log.all_entries()[-2:]
    assert ents[0].type == EntryType.CONF_CHANGE
    assert decode_conf_change(ents[0].data).node_id == 3
    assert ents[1].type == EntryType.NORMAL and ents[1].data == b""


def test_proposal_on_a_removed_member_is_dropped() -> None:
    net = Network.of(3)
    net.campaign(1)
    _conf_change(net, ConfChange(REMOVE, 1))
    # 1 stepped down and, no longer a member, hears from no leader: its proposals fail
    with pytest.raises(ProposalDroppedError, match="no leader"):
        net.node(1).propose(b"x")


def test_bootstrap_commits_one_add_node_per_peer() -> None:
    """etcd's RawNode.Bootstrap: entries 1..n are ADD_NODE conf changes, committed at term 1."""
    from raftkv.raft import Config, MemoryStorage, RawNode

    rn = RawNode(Config(id=1), MemoryStorage())
    rn.bootstrap([1, 2, 3])
    rd = rn.ready()
    assert [decode_conf_change(e.data).node_id for e in rd.entries] == [1, 2, 3]
    assert all(e.term == 1 and e.type == EntryType.CONF_CHANGE for e in rd.entries)
    assert rd.hard_state is not None and rd.hard_state.commit == 3 and rd.hard_state.term == 1
    assert rd.committed_entries == rd.entries
    rn.storage.append(rd.entries)
    rn.storage.set_hard_state(rd.hard_state)
    for e in rd.committed_entries:
        assert rn.apply_conf_change(decode_conf_change(e.data)).voters == (1, 2, 3)
    rn.advance(rd)
    assert rn.status().applied == 3
