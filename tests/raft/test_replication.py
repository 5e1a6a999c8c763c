"""Replication flow control: progress states, inflight window, heartbeats, backtracking."""

from __future__ import annotations

from raftkv.raft import Message, MessageType, ProgressState
from tests.raft.helpers import Network, new_node, take

MT = MessageType


def test_inflight_window_bounds_pipelined_appends() -> None:
    """A follower in REPLICATE gets at most max_inflight_msgs appends before an ack."""
    net = Network.of(3, max_inflight_msgs=3, pre_vote=False)
    net.campaign(1)
    net.cut.add((1, 2))
    net.cut.add((1, 3))
    sent = len(net.delivered)
    for i in range(10):
        net.node(1).propose(b"%d" % i)
        net.drivers[1].handle_ready()
    pr = net.raft(1).trk.progress[2]
    assert pr.state == ProgressState.REPLICATE
    assert pr.inflights.count() == 3 and pr.is_paused()
    assert len(net.delivered) == sent


def test_ack_frees_the_window_and_resumes_sending() -> None:
    """Acknowledging appends frees inflight slots so replication resumes."""
    net = Network.of(3, max_inflight_msgs=2, pre_vote=False)
    net.campaign(1)
    for i in range(10):
        net.node(1).propose(b"%d" % i)
    net.stabilize()
    for i in (1, 2, 3):
        assert net.applied_data(i) == [b"%d" % k for k in range(10)]


def test_heartbeat_commit_is_capped_at_the_followers_match() -> None:
    """A heartbeat carries min(match, commit) so a follower never commits past what it holds."""
    net = Network.of(3, pre_vote=False)
    net.campaign(1)
    net.cut.add((1, 3))
    net.propose(1, b"x")
    r = net.raft(1)
    r.step(Message(MT.BEAT, 1, 1))
    hb = [m for m in take(r) if m.to == 3]
    assert hb and hb[0].commit == r.trk.progress[3].match < r.raft_log.committed


def test_follower_far_behind_is_found_by_fast_backtracking() -> None:
    """§5.3 optimization: the reject hint lets the leader skip a term per round trip instead of
    one index."""
    net = Network.of(3, pre_vote=False)
    net.campaign(1)
    net.isolate(3)
    for i in range(30):
        net.propose(1, b"%d" % i)
    net.heal()
    rejects_before = sum(1 for m in net.delivered if m.type == MT.APP_RESP and m.reject)
    net.propose(1, b"last")
    rejects = sum(1 for m in net.delivered if m.type == MT.APP_RESP and m.reject) - rejects_before
    assert net.applied_data(3)[-1] == b"last"
    assert rejects <= 2


def test_unreachable_report_moves_replicate_to_probe() -> None:
    """A transport failure report sends the follower back to probing."""
    net = Network.of(3, pre_vote=False)
    net.campaign(1)
    net.propose(1, b"x")
    assert net.raft(1).trk.progress[2].state == ProgressState.REPLICATE
    net.node(1).report_unreachable(2)
    assert net.raft(1).trk.progress[2].state == ProgressState.PROBE


def test_messages_are_bounded_by_max_size_per_msg() -> None:
    """An append carries at most max_size_per_msg bytes of entries (but at least one)."""
    net = Network.of(3, max_size_per_msg=100, pre_vote=False)
    net.campaign(1)
    net.isolate(2)
    for _ in range(10):
        net.propose(1, b"x" * 40)
    net.heal()
    net.propose(1, b"y")
    apps = [m for m in net.delivered if m.type == MT.APP and m.to == 2 and m.entries]
    assert all(len(m.entries) == 1 or sum(len(e.data) + 12 for e in m.entries) <= 100 for m in apps)
    assert net.applied_data(2)[-1] == b"y"


def test_stale_append_response_is_ignored() -> None:
    """A rejection for an index already matched does not move progress back."""
    r = new_node(1, pre_vote=False).raft
    r.become_candidate()
    r.become_leader()
    pr = r.trk.progress[2]
    pr.maybe_update(1)
    pr.become_replicate()
    r.step(Message(MT.APP_RESP, 1, 2, term=r.term, index=0, reject=True, reject_hint=0))
    assert pr.match == 1 and pr.state == ProgressState.REPLICATE
