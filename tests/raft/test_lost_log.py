"""A member that lost its log: its data dir was wiped and it came back with the same id and an
empty (``--initial-cluster-state existing``) or bootstrap-only (``new``) log, while the leader
still remembers it as matching far ahead. etcd panics in the follower ("tocommit out of
range"); here the follower clamps the heartbeat's commit and the leader, on a fresh refusal
hinting below ``match``, forgets that match and probes back down (to a snapshot if needed)."""

from __future__ import annotations

import random

import pytest

from raftkv.raft import Config, Entry, MemoryStorage, Message, MessageType, ProgressState, RawNode
from raftkv.raft.tracker import Inflights, Progress
from tests.raft.helpers import Driver, Network, new_node, take

MT = MessageType
VOTERS = [1, 2, 3]


def _member(i: int, state: str) -> RawNode:
    """A member as the server starts it with no data dir: bootstrapped for a new cluster, empty
    (waiting to be contacted) when joining an existing one."""
    rn = RawNode(Config(id=i, rng=random.Random(i)), MemoryStorage())
    if state == "new":
        rn.bootstrap(VOTERS)
    return rn


def _cluster_with_history(n: int = 8) -> Network:
    net = Network(*(_member(i, "new") for i in VOTERS))
    net.stabilize()  # apply the bootstrap entries
    net.campaign(1)
    for k in range(n):
        net.propose(1, b"v%d" % k)
    assert net.raft(1).trk.progress[3].match == net.raft(1).raft_log.last_index()
    return net


def _wipe(net: Network, i: int, state: str) -> None:
    net.drivers[i] = Driver(_member(i, state))
    net.drivers[i].handle_ready()  # persist the bootstrap, as the server does before serving


def _compact(net: Network, i: int) -> None:
    d = net.drivers[i]
    applied = net.raft(i).raft_log.applied
    d.storage.create_snapshot(applied, net.raft(i).trk.conf_state(), b"state")
    d.storage.compact(applied)


# --- follower: the heartbeat ------------------------------------------------------------------


@pytest.mark.parametrize("state,last", [("existing", 0), ("new", 3)])
def test_follower_that_lost_its_log_clamps_a_heartbeat_commit_to_its_last_index(
    state: str, last: int
) -> None:
    rn = _member(2, state)
    Driver(rn).handle_ready()
    r = rn.raft
    assert r.raft_log.last_index() == last
    r.step(Message(MT.HEARTBEAT, 2, 1, term=7, commit=120, context=b"rd"))
    assert r.raft_log.committed == last
    assert r.term == 7 and r.lead == 1
    [resp] = take(r)
    assert resp.type == MT.HEARTBEAT_RESP and resp.to == 1 and resp.context == b"rd"


def test_follower_commits_a_heartbeat_commit_within_its_log() -> None:
    r = new_node(2).raft
    r.step(Message(MT.APP, 2, 1, term=1, index=0, log_term=0, entries=(Entry(1, 1), Entry(1, 2))))
    r.step(Message(MT.HEARTBEAT, 2, 1, term=1, commit=2))
    assert r.raft_log.committed == 2


# --- leader: Progress ---------------------------------------------------------------------------


def test_progress_forget_match_lowers_match_and_probes_from_the_given_index() -> None:
    pr = Progress(10, 11, Inflights(4))
    pr.become_replicate()
    pr.sent_entries(3, 0)
    pr.sent_commit = 12
    pr.forget_match(3, 4)
    assert (pr.match, pr.next, pr.state) == (3, 4, ProgressState.PROBE)
    assert pr.sent_commit == 3 and not pr.is_paused()
    pr.forget_match(0, 2)  # nothing known to match; probing still starts past the hint
    assert (pr.match, pr.next) == (0, 2)
    with pytest.raises(AssertionError):
        pr.forget_match(0, 1)  # only ever lowers match


def test_progress_stale_rejection_rule_is_etcds() -> None:
    pr = Progress(5, 6, Inflights(4))
    assert not pr.is_stale_rejection(5)  # probing: refuses the probe in flight (next - 1)
    assert pr.is_stale_rejection(7)
    pr.become_replicate()
    pr.sent_entries(3, 0)
    assert pr.is_stale_rejection(5) and pr.is_stale_rejection(4)  # replicating: <= match
    assert not pr.is_stale_rejection(6)


# --- leader: the refusal --------------------------------------------------------------------------


def _refusal(ld_term: int, index: int, hint: int, hint_term: int) -> Message:
    return Message(
        MT.APP_RESP,
        1,
        3,
        term=ld_term,
        index=index,
        reject=True,
        reject_hint=hint,
        log_term=hint_term,
    )


@pytest.mark.parametrize("hint,hint_term,keep", [(3, 1, 3), (0, 0, 0), (5, 1, 0)])
def test_leader_lowers_match_to_where_the_logs_still_agree_and_probes_past_the_hint(
    hint: int, hint_term: int, keep: int
) -> None:
    """Bootstrap entries 1-3 are term 1 everywhere: a hint there keeps match at the hint; a
    hint whose term is not ours at that index (5 is the leader's term-2 entry) keeps 0."""
    net = _cluster_with_history()
    ld = net.raft(1)
    pr = ld.trk.progress[3]
    believed = pr.match
    net.node(1).report_unreachable(3)  # PROBE, next = match + 1
    ld.step(_refusal(ld.term, believed, hint, hint_term))
    assert (pr.match, pr.next, pr.state) == (keep, hint + 1, ProgressState.PROBE)
    [probe] = take(ld)
    assert probe.type == MT.APP and probe.to == 3 and probe.index == hint


def test_leader_ignores_a_stale_refusal_hinting_below_match() -> None:
    """A delayed duplicate of an old refusal (rejected <= match while replicating, or not the
    probe in flight while probing) changes nothing, as in etcd, though its hint is below
    ``match``."""
    net = _cluster_with_history()
    ld = net.raft(1)
    pr = ld.trk.progress[3]
    assert pr.state == ProgressState.REPLICATE
    before = (pr.match, pr.next, pr.state)
    ld.step(_refusal(ld.term, pr.match, 3, 1))
    ld.step(_refusal(ld.term, pr.match - 2, 3, 1))
    assert (pr.match, pr.next, pr.state) == before
    net.node(1).report_unreachable(3)
    before = (pr.match, pr.next, pr.state)
    ld.step(_refusal(ld.term, pr.match - 1, 3, 1))
    assert (pr.match, pr.next, pr.state) == before
    assert take(ld) == []


# --- leader and follower: the whole walk back ---------------------------------------------------


def _refusals_from(net: Network, i: int, since: int) -> list[Message]:
    return [m for m in net.delivered[since:] if m.type == MT.APP_RESP and m.reject and m.from_ == i]


def _appends_to(net: Network, i: int, since: int) -> list[Message]:
    return [m for m in net.delivered[since:] if m.type == MT.APP and m.to == i]


@pytest.mark.parametrize("state", ["existing", "new"])
def test_leader_walks_a_wiped_follower_back_and_it_catches_up(state: str) -> None:
    """After the transport reported the member unreachable (PROBE), its first refusal is of
    the probe at ``match`` itself, with a hint below it: the next probe goes to the hint."""
    net = _cluster_with_history()
    ld = net.raft(1)
    believed = ld.trk.progress[3].match
    _wipe(net, 3, state)
    since = len(net.delivered)
    net.node(1).report_unreachable(3)
    net.tick_all(1)
    [refusal] = _refusals_from(net, 3, since)
    assert refusal.index == believed and refusal.reject_hint == (3 if state == "new" else 0)
    assert [m.index for m in _appends_to(net, 3, since)] == [believed, refusal.reject_hint]
    pr = ld.trk.progress[3]
    assert pr.state == ProgressState.REPLICATE and pr.match == ld.raft_log.last_index()
    net.propose(1, b"after")
    assert net.applied_data(3) == net.applied_data(1)
    assert net.raft(3).raft_log.committed == ld.raft_log.committed


def test_leader_walks_a_wiped_follower_back_while_replicating() -> None:
    """Without an unreachable report the leader is still REPLICATE at ``match``: the refusal of
    the append at ``match`` is stale by etcd's rule and ignored; the refusal of the next
    (pipelined) one is not, and starts the walk back."""
    net = _cluster_with_history()
    ld = net.raft(1)
    believed = ld.trk.progress[3].match
    _wipe(net, 3, "new")
    seen: list[tuple[int, int]] = []  # (refused index, leader's match) as each arrives

    def watch(m: Message) -> bool:
        if m.type == MT.APP_RESP and m.reject and m.from_ == 3:
            seen.append((m.index, ld.trk.progress[3].match))
        return True

    net.intercept = watch
    net.tick_all(1)  # heartbeat: clamped and answered
    net.propose(1, b"a")
    net.propose(1, b"b")
    net.tick_all(2)
    assert seen[:2] == [(believed, believed), (believed + 1, believed)]
    pr = ld.trk.progress[3]
    assert pr.state == ProgressState.REPLICATE and pr.match == ld.raft_log.last_index()
    assert net.applied_data(3) == net.applied_data(1)


@pytest.mark.parametrize("state", ["existing", "new"])
def test_leader_sends_a_snapshot_to_a_wiped_follower_behind_its_compaction_point(
    state: str,
) -> None:
    net = _cluster_with_history()
    ld = net.raft(1)
    _compact(net, 1)
    _wipe(net, 3, state)
    net.node(1).report_unreachable(3)
    net.tick_all(1)
    snaps = [m for m in net.delivered if m.type == MT.SNAP and m.to == 3]
    assert len(snaps) == 1
    net.node(1).report_snapshot(3, True)
    net.propose(1, b"after")
    assert net.raft(3).raft_log.committed == ld.raft_log.committed
    assert net.applied_data(3) == [b"after"]  # the rest came in the snapshot
    assert ld.trk.progress[3].match == ld.raft_log.last_index()
