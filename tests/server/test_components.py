"""Each part of a member built alone, with only what its constructor asks for: real storage
(backend, MVCC, lessor, member table) and small stand-ins for the Raft driver and the peers,
which record what the part asked of them. No member is started."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from raftkv import errors
from raftkv.auth import AuthStore
from raftkv.auth.tokens import SimpleTokens
from raftkv.backend import Backend
from raftkv.backend.backend import HELD_PENDING_LIMIT
from raftkv.errors import EtcdError
from raftkv.lease import Lessor
from raftkv.mvcc import KVStore
from raftkv.pb import rpc
from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    ProposalDroppedError,
    encode_conf_change,
)
from raftkv.server.alarms import Alarms
from raftkv.server.applier import BATCH_LIMIT, Applier
from raftkv.server.cindex import ConsistentIndex
from raftkv.server.codec import encode_request
from raftkv.server.forward import LeaderForwarder, LeaderOnly
from raftkv.server.housekeeping import Housekeeping
from raftkv.server.member_ops import REJECTED_BUCKET, MemberOps
from raftkv.server.membership import Member, RaftCluster
from raftkv.server.propose import MAX_GAP_BETWEEN_APPLY_AND_COMMIT, Proposer
from raftkv.server.snapshot import Snapshots
from raftkv.server.storage import open_backend
from raftkv.server.wait import IdGenerator, Wait

ME, PEER = 0xA1, 0xB2


class Store:
    """The state beside the log, on a real page file."""

    def __init__(self, path: str) -> None:
        self.backend = open_backend(path)  # (as a member opens it: commits are the applier's)
        self.lessor = Lessor(self.backend)
        self.kv = KVStore(self.backend, self.lessor)
        self.cindex = ConsistentIndex(self.backend)
        self.alarms = Alarms(self.backend)
        self.auth = AuthStore(self.backend, SimpleTokens(), 4)
        self.cluster = RaftCluster(7, {ME: Member(ME, "me", ["http://127.0.0.1:1"], [])})
        self.cluster.attach(self.backend)
        self.wait = Wait()


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "db"))
    yield s
    s.backend.close()


def _entry(index: int, **fields) -> Entry:
    return Entry(1, index, EntryType.NORMAL, encode_request(rpc.InternalRaftRequest(**fields)))


def _applier(
    store: Store,
    conf_changes: list,
    compactions: list,
    applied: list,
    quota_bytes: int = 1 << 30,
    nospace: list | None = None,
) -> Applier:
    def raise_nospace(then) -> None:
        if nospace is None:
            raise AssertionError("no NOSPACE alarm expected")
        nospace.append(then)

    def apply_cc(e: Entry, fresh: bool, cs: ConfState) -> ConfState:
        conf_changes.append((e.index, fresh))
        return cs

    return Applier(
        kv=store.kv,
        lessor=store.lessor,
        backend=store.backend,
        cindex=store.cindex,
        alarms=store.alarms,
        auth=store.auth,
        cluster=store.cluster,
        wait=store.wait,
        apply_conf_change=apply_cc,
        schedule_compaction=lambda: compactions.append(store.kv.compact_revision),
        on_applied=applied.append,
        quota_bytes=quota_bytes,
        raise_nospace=raise_nospace,
    )


# --- Applier -----------------------------------------------------------------------------------


async def test_applier_answers_each_waiter_and_records_the_consistent_index(store):
    ccs, compactions, applied = [], [], []
    a = _applier(store, ccs, compactions, applied)
    put = rpc.InternalRaftRequest(ID=11, put=rpc.PutRequest(key=b"k", value=b"v"))
    fut = store.wait.register(11)
    bad = store.wait.register(12)
    a.apply_entries(
        [
            Entry(1, 1, EntryType.NORMAL, encode_request(put)),
            _entry(2, ID=12, lease_revoke=rpc.LeaseRevokeRequest(ID=99)),
            Entry(1, 3, EntryType.CONF_CHANGE, encode_conf_change(ConfChange(0, ME))),
            _entry(4, compaction=rpc.CompactionRequest(revision=2)),
        ]
    )
    assert (await fut).header.revision == 2
    assert await bad is errors.ErrLeaseNotFound  # the apply's error goes to the proposer
    assert ccs == [(3, True)]
    assert compactions == [2]
    assert (store.cindex.value, a.applied_index, applied[-1]) == (4, 4, 4)


async def test_applier_skips_what_the_backend_already_holds(store):
    a = _applier(store, ccs := [], [], [])
    store.cindex.set(5)
    a.apply_entries(
        [
            _entry(5, put=rpc.PutRequest(key=b"old", value=b"x")),
            Entry(1, 5, EntryType.CONF_CHANGE, encode_conf_change(ConfChange(0, ME))),
            _entry(6, put=rpc.PutRequest(key=b"new", value=b"y")),
        ]
    )
    assert store.kv.range(rpc.RangeRequest(key=b"old")).count == 0
    assert store.kv.range(rpc.RangeRequest(key=b"new")).count == 1
    assert ccs == [(5, False)]  # handed to Raft again, but not applied to the table


async def test_applier_in_capped_mode_refuses_writes_but_records_their_index(store):
    a = _applier(store, [], [], [])
    nospace = rpc.AlarmRequest(
        action=rpc.AlarmAction.ACTIVATE, memberID=ME, alarm=rpc.AlarmType.NOSPACE
    )
    a.apply_entries([_entry(1, alarm=nospace)])
    fut = store.wait.register(20)
    a.apply_entries([_entry(2, ID=20, put=rpc.PutRequest(key=b"k", value=b"v"))])
    assert await fut is errors.ErrNoSpace
    assert store.alarms.nospace
    a.apply_entries([_entry(3, put=rpc.PutRequest(key=b"x", value=b"1"))])
    assert store.cindex.value == 3  # refused, but applied: not replayed after a restart
    assert store.kv.range(rpc.RangeRequest(key=b"x")).count == 0


async def test_applier_commits_the_batch_between_entries_at_its_limit(store):
    a = _applier(store, [], [], [])
    big = [rpc.RequestOp(request_put=rpc.PutRequest(key=b"k%d" % i)) for i in range(100)]
    ents = [_entry(i, txn=rpc.TxnRequest(success=big)) for i in range(1, BATCH_LIMIT // 100 + 2)]
    a.apply_entries(ents)
    assert store.backend.pending < BATCH_LIMIT


async def test_applier_lets_the_batch_grow_while_a_defragment_holds_commits(store):
    a = _applier(store, [], [], [])
    big = [rpc.RequestOp(request_put=rpc.PutRequest(key=b"k%d" % i)) for i in range(100)]
    ents = [_entry(i, txn=rpc.TxnRequest(success=big)) for i in range(1, BATCH_LIMIT // 50)]
    store.backend.hold_commits = True
    a.apply_entries(ents)
    assert BATCH_LIMIT < store.backend.pending < HELD_PENDING_LIMIT  # the copy stays current
    store.backend.hold_commits = False
    a.apply_entries([_entry(BATCH_LIMIT // 50, put=rpc.PutRequest(key=b"x"))])
    assert store.backend.pending < BATCH_LIMIT


async def test_applier_over_quota_applies_but_answers_nospace_after_raising_the_alarm(store):
    raised: list = []
    a = _applier(store, [], [], [], quota_bytes=store.backend.size + 10, nospace=raised)
    fut = store.wait.register(30)
    a.apply_entries([_entry(1, ID=30, put=rpc.PutRequest(key=b"big", value=b"x" * 100))])
    assert store.kv.range(rpc.RangeRequest(key=b"big")).count == 1  # applied on every member
    assert not fut.done() and len(raised) == 1  # answered once the alarm is proposed
    raised[0]()
    assert await fut is errors.ErrNoSpace
    a.apply_entries([_entry(2, delete_range=rpc.DeleteRangeRequest(key=b"big"))])  # no cost
    assert len(raised) == 1


# --- Proposer ----------------------------------------------------------------------------------


class FakeRaft:
    """Accepts proposals and, when told to, 'applies' them by answering their waiters."""

    def __init__(self, wait: Wait) -> None:
        self.lead = ME
        self.committed = 0
        self.proposed: list[int] = []
        self._wait = wait
        self.answer: object = "applied"

    def propose(self, req_id: int, data: bytes) -> None:
        self.proposed.append(req_id)
        asyncio.get_running_loop().call_soon(self._wait.trigger, req_id, self.answer)


def _proposer(wait: Wait, node: FakeRaft, applied: int = 0, timeout: float = 1.0) -> Proposer:
    return Proposer(
        node=node,
        wait=wait,
        idgen=IdGenerator(ME),
        applied_index=lambda: applied,
        member_id=ME,
        members=lambda: [ME, PEER],
        active_since=lambda _peer: None,
        request_timeout=timeout,
        election_timeout=0.2,
    )


async def test_proposer_returns_what_applying_answered():
    wait = Wait()
    node = FakeRaft(wait)
    assert await _proposer(wait, node).propose(put=rpc.PutRequest(key=b"k")) == "applied"
    assert len(node.proposed) == 1


async def test_proposer_refuses_when_apply_lags_far_behind_commit():
    wait = Wait()
    node = FakeRaft(wait)
    node.committed = MAX_GAP_BETWEEN_APPLY_AND_COMMIT + 1
    with pytest.raises(EtcdError) as e:
        await _proposer(wait, node).propose(put=rpc.PutRequest(key=b"k"))
    assert e.value is errors.ErrTooManyRequests
    assert node.proposed == []


async def test_proposer_with_no_leader_gives_etcds_deadline_error():
    wait = Wait()
    node = FakeRaft(wait)
    node.lead = 0
    errors_seen: list[EtcdError] = []
    p = _proposer(wait, node, timeout=0.2)
    p._on_error = errors_seen.append
    with pytest.raises(EtcdError) as e:
        await p.propose(put=rpc.PutRequest(key=b"k"))
    assert e.value is errors.ErrContextDeadline
    assert errors_seen == [errors.ErrContextDeadline]


# --- LeaderForwarder ---------------------------------------------------------------------------


async def test_forwarder_runs_locally_on_the_leader_and_says_no_leader_otherwise():
    calls: list[object] = []

    async def local(req):
        calls.append(req)
        return "answer"

    op = LeaderOnly("/x", rpc.LeaseKeepAliveRequest, rpc.LeaseKeepAliveResponse, local)
    lead = [ME]

    async def wait_leader(deadline: float) -> bool:
        return False

    fw = LeaderForwarder(
        member_id=ME, leader=lambda: lead[0], peers=None, wait_leader=wait_leader, request_timeout=1
    )  # type: ignore[arg-type]
    assert await fw.call(op, "req") == "answer"
    lead[0] = 0
    with pytest.raises(EtcdError) as e:
        await fw.call(op, "req")
    assert e.value is errors.ErrNoLeader
    assert calls == ["req"]


# --- MemberOps ---------------------------------------------------------------------------------


class FakeConfNode:
    id = ME
    is_leader = True

    def __init__(self) -> None:
        self.proposed: list[ConfChange] = []
        self.applied: list[ConfChange] = []

    def propose_conf_change(self, cc: ConfChange) -> None:
        self.proposed.append(cc)

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        self.applied.append(cc)
        return ConfState(voters=(ME, cc.node_id))

    def progress(self):
        return {}


class FakePeers:
    def __init__(self) -> None:
        self.added: list[tuple[int, list[str]]] = []

    def add_peer(self, peer_id: int, urls: list[str]) -> None:
        self.added.append((peer_id, urls))

    def update_peer(self, peer_id: int, urls: list[str]) -> None: ...

    async def remove_peer(self, peer_id: int) -> None: ...

    def active_since(self, peer_id: int) -> float | None:
        return None


def _member_ops(store: Store, node: FakeConfNode, peers: FakePeers) -> MemberOps:
    async def to_leader(op, req):
        return await op.local(req)

    return MemberOps(
        node=node,
        cluster=store.cluster,
        peers=peers,
        backend=store.backend,
        wait=store.wait,
        idgen=IdGenerator(ME),
        header=lambda: rpc.ResponseHeader(member_id=ME),
        to_leader=to_leader,
        request_timeout=1.0,
        on_removed=lambda e: None,
    )


def _cc_entry(index: int, t: ConfChangeType, mid: int, urls: list[str], cc_id: int = 0) -> Entry:
    ctx = json.dumps({"id": mid, "peerURLs": urls, "isLearner": False, "promote": False})
    data = encode_conf_change(ConfChange(t, mid, ctx.encode(), cc_id))
    return Entry(1, index, EntryType.CONF_CHANGE, data)


async def test_member_ops_applies_an_add_to_raft_the_table_and_the_peers(store):
    node, peers = FakeConfNode(), FakePeers()
    ops = _member_ops(store, node, peers)
    fut = store.wait.register(5)
    e = _cc_entry(1, ConfChangeType.ADD_NODE, PEER, ["http://127.0.0.1:2"], cc_id=5)
    cs = ops.apply(e, True, ConfState(voters=(ME,)))
    assert cs.voters == (ME, PEER)
    assert PEER in store.cluster.members
    assert peers.added == [(PEER, ["http://127.0.0.1:2"])]
    assert sorted(m.ID for m in await fut) == [ME, PEER]


async def test_member_ops_rejects_a_taken_peer_url_and_remembers_it(store):
    node, peers = FakeConfNode(), FakePeers()
    ops = _member_ops(store, node, peers)
    fut = store.wait.register(6)
    taken = store.cluster.members[ME].peer_urls
    e = _cc_entry(2, ConfChangeType.ADD_NODE, PEER, taken, cc_id=6)
    cs = ops.apply(e, True, ConfState(voters=(ME,)))
    assert cs.voters == (ME,) and node.applied == []  # a no-op for Raft
    assert await fut is errors.ErrPeerURLExist
    assert store.backend.get(REJECTED_BUCKET, (2).to_bytes(8, "big")) is not None
    ops.apply(e, False, cs)  # replayed after a restart: still a no-op
    assert node.applied == []


async def test_member_ops_retries_a_dropped_proposal_until_its_deadline(store):
    node, peers = FakeConfNode(), FakePeers()

    def refuse(cc: ConfChange) -> None:
        raise ProposalDroppedError("no leader")

    node.propose_conf_change = refuse  # type: ignore[method-assign]
    ops = _member_ops(store, node, peers)
    ops._request_timeout = 0.3
    with pytest.raises(EtcdError) as e:
        await ops.update(rpc.MemberUpdateRequest(ID=ME, peerURLs=["http://127.0.0.1:9"]))
    assert e.value is errors.ErrTimeout


# --- Housekeeping ------------------------------------------------------------------------------


async def test_housekeeping_raises_nospace_once_while_it_is_pending(store):
    proposed: list[dict] = []
    gate = asyncio.Event()

    async def propose(**fields):
        proposed.append(fields)
        await gate.wait()

    hk = Housekeeping(
        backend=store.backend,
        kv=store.kv,
        lessor=store.lessor,
        alarms=store.alarms,
        wait=store.wait,
        propose=propose,
        is_leader=lambda: True,
        watch_streams=lambda: [],
        attributes=rpc.Member(ID=ME, name="me"),
    )
    answered: list[str] = []
    hk.raise_nospace()
    hk.raise_nospace(lambda: answered.append("over quota"))
    await asyncio.sleep(0.01)
    assert len(proposed) == 1
    alarm = proposed[0]["alarm"]
    assert (alarm.memberID, alarm.alarm) == (ME, rpc.AlarmType.NOSPACE)
    assert answered == []  # not before the alarm's proposal is done
    gate.set()
    await asyncio.sleep(0.01)
    assert answered == ["over quota"]
    hk.raise_nospace()  # no longer pending (and no alarm applied): asked again
    await asyncio.sleep(0.01)
    assert len(proposed) == 2


# --- Snapshots ---------------------------------------------------------------------------------


class FakeSnapNode:
    def __init__(self) -> None:
        self.storage = MemoryStorage()
        self.reports: list[tuple[int, bool]] = []
        self.raft_applied = 0
        self.wal = None

        self.marked: list[tuple[int, int]] = []

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.reports.append((peer_id, ok))

    def step(self, m) -> None: ...

    async def mark_snapshot(self, snap, release_to: int) -> None:
        self.marked.append((snap.metadata.index, release_to))


async def test_snapshots_install_swaps_the_db_in_place_and_restores_the_applier(store, tmp_path):
    from raftkv.raft import Snapshot, SnapshotMetadata
    from raftkv.snap import Snapshotter

    other = Store(str(tmp_path / "other.db"))
    other.kv.put(rpc.PutRequest(key=b"from-leader", value=b"1"))
    other.backend.close()
    snapdir = str(tmp_path / "snap")
    snapshotter = Snapshotter(snapdir)
    with open(str(tmp_path / "other.db"), "rb") as f:
        snapshotter.save_db(40, [f.read()])
    a = _applier(store, [], [], applied := [])
    installed: list[int] = []

    def reload(prepared) -> None:
        assert prepared is None  # (install() found no index read at receive)
        store.kv.restore(None, 0.0)
        installed.append(store.kv.range(rpc.RangeRequest(key=b"from-leader")).count)

    # the backend under test must be the snapshotter's db file for install_db to replace it
    store.backend.close()
    os.replace(str(tmp_path / "db"), snapshotter.db_file())
    store.backend = Backend.open(snapshotter.db_file())
    store.kv = KVStore(store.backend, store.lessor)
    snaps = Snapshots(
        node=FakeSnapNode(),
        backend=store.backend,
        snapshotter=snapshotter,
        applier=a,
        send_snapshot=None,  # type: ignore[arg-type]
        on_installed=reload,
        snapshot_count=100,
        catchup_entries=10,
    )
    conf = ConfState(voters=(ME, PEER))
    snaps.install(Snapshot(SnapshotMetadata(conf, 40, 3)))
    assert installed == [1]
    assert (a.applied_index, a.applied_term, a.conf_state, applied[-1]) == (40, 3, conf, 40)
    assert snaps.snap_index == 40 and store.backend.generation == 1


async def test_snapshots_send_copies_a_db_holding_at_least_what_its_label_names(store, tmp_path):
    from raftkv.raft import Message, MessageType
    from raftkv.snap import Snapshotter

    a = _applier(store, [], [], [])
    a.apply_entries([_entry(i, put=rpc.PutRequest(key=b"k%d" % i, value=b"v")) for i in (1, 2)])
    sent: list[tuple[Message, bytes]] = []

    async def send_snapshot(m: Message, body) -> None:
        sent.append((m, b"".join([c async for c in body])))

    node = FakeSnapNode()
    snaps = Snapshots(
        node=node,
        backend=store.backend,
        snapshotter=Snapshotter(str(tmp_path / "snap")),
        applier=a,
        send_snapshot=send_snapshot,
        on_installed=lambda _prepared: None,
        snapshot_count=100,
        catchup_entries=10,
    )
    snaps.send(Message(MessageType.SNAP, PEER, ME, term=3))
    snaps.send(Message(MessageType.SNAP, PEER, ME, term=3))  # one at a time per peer
    for _ in range(200):
        if node.reports[-1:] == [(PEER, True)]:
            break
        await asyncio.sleep(0.01)
    assert node.reports == [(PEER, False), (PEER, True)]
    ((m, db),) = sent
    assert (m.to, m.snapshot.metadata.index) == (PEER, 2)
    copy = tmp_path / "copy.db"
    copy.write_bytes(db)
    other = Store(str(copy))
    try:
        assert other.kv.range(rpc.RangeRequest(key=b"k", range_end=b"l")).count == 2
        assert other.cindex.value >= m.snapshot.metadata.index
    finally:
        other.backend.close()
    assert not [p for p in os.listdir(tmp_path / "snap") if p.startswith(".send-")]


async def test_snapshots_are_taken_off_the_ready_loop_after_the_backend_commits(store, tmp_path):
    from raftkv.snap import Snapshotter

    a = _applier(store, [], [], [])
    ents = [_entry(i, put=rpc.PutRequest(key=b"k%d" % i, value=b"v")) for i in range(1, 31)]
    a.apply_entries(ents)
    node = FakeSnapNode()
    node.storage.append(ents)
    node.raft_applied = 30
    snapshotter = Snapshotter(str(tmp_path / "snap"))
    snaps = Snapshots(
        node=node,
        backend=store.backend,
        snapshotter=snapshotter,
        applier=a,
        send_snapshot=None,  # type: ignore[arg-type]
        on_installed=lambda _prepared: None,
        snapshot_count=20,
        catchup_entries=5,
    )
    assert store.backend.pending > 0
    snaps.maybe_trigger()
    snaps.maybe_trigger()  # one at a time
    await snaps.stop()
    assert node.marked == [(30, 30)]
    assert snaps.snap_index == 30
    assert store.backend.pending == 0  # the db held every entry before the WAL was released
    assert node.storage.first_index() == 26  # the catch-up entries are kept
    assert any(n.endswith(".snap") for n in os.listdir(tmp_path / "snap"))
