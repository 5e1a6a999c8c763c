"""A small in-process network of RawNodes for scenario tests (etcd's network / rafttest).

Each node runs the driver loop of ``rawnode`` exactly: messages, persist to its MemoryStorage,
messages_after_append, apply, advance. Links can be cut; messages can be dropped by type.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable

from raftkv.raft import (
    Config,
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    RawNode,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    StateType,
    decode_conf_change,
)
from raftkv.raft.raft import Raft

MT = MessageType


def storage_with(voters: Iterable[int], learners: Iterable[int] = ()) -> MemoryStorage:
    """An empty storage whose initial ConfState is ``voters``/``learners``."""
    s = MemoryStorage()
    s._snapshot = Snapshot(SnapshotMetadata(ConfState(tuple(voters), tuple(learners)), 0, 0))
    return s


def new_node(
    node_id: int,
    voters: Iterable[int] = (1, 2, 3),
    storage: MemoryStorage | None = None,
    learners: Iterable[int] = (),
    **cfg: object,
) -> RawNode:
    cfg.setdefault("rng", random.Random(node_id))
    st = storage if storage is not None else storage_with(voters, learners)
    return RawNode(Config(id=node_id, **cfg), st)  # type: ignore[arg-type]


class Driver:
    """Runs one node's Ready loop against its storage and records what it applied."""

    def __init__(self, rn: RawNode) -> None:
        self.rn = rn
        self.storage = rn.storage
        self.applied: list[Entry] = []
        self.read_states: list[ReadState] = []

    @property
    def id(self) -> int:
        return self.rn.raft.id

    def handle_ready(self) -> list[Message]:
        rn = self.rn
        out: list[Message] = []
        while rn.has_ready():
            rd = rn.ready()
            out.extend(rd.messages)
            if rd.snapshot is not None:
                self.storage.apply_snapshot(rd.snapshot)
            if rd.hard_state is not None:
                self.storage.set_hard_state(rd.hard_state)
            self.storage.append(rd.entries)
            out.extend(rd.messages_after_append)
            for e in rd.committed_entries:
                if e.type == EntryType.CONF_CHANGE:
                    rn.apply_conf_change(decode_conf_change(e.data))
                self.applied.append(e)
            self.read_states.extend(rd.read_states)
            rn.advance(rd)
        return out


class Network:
    def __init__(self, *nodes: RawNode) -> None:
        self.drivers = {rn.raft.id: Driver(rn) for rn in nodes}
        self.cut: set[tuple[int, int]] = set()
        self.drop_types: set[MessageType] = set()
        self.intercept: Callable[[Message], bool] | None = None
        self.delivered: list[Message] = []

    @classmethod
    def of(cls, n: int, **cfg: object) -> Network:
        ids = list(range(1, n + 1))
        return cls(*(new_node(i, ids, **cfg) for i in ids))

    def node(self, i: int) -> RawNode:
        return self.drivers[i].rn

    def raft(self, i: int) -> Raft:
        return self.drivers[i].rn.raft

    def isolate(self, i: int) -> None:
        for j in self.drivers:
            if j != i:
                self.cut.add((i, j))
                self.cut.add((j, i))

    def heal(self) -> None:
        self.cut.clear()
        self.drop_types.clear()

    def _filter(self, m: Message) -> bool:
        if (m.from_, m.to) in self.cut or m.type in self.drop_types:
            return False
        if m.to not in self.drivers:
            return False
        return not (self.intercept is not None and not self.intercept(m))

    def stabilize(self, max_rounds: int = 1000) -> None:
        """Handle Readies and deliver messages until nothing moves."""
        for _ in range(max_rounds):
            msgs: list[Message] = []
            for d in self.drivers.values():
                msgs.extend(d.handle_ready())
            if not msgs:
                return
            self.send(msgs)
        raise AssertionError("network did not stabilize")

    def send(self, msgs: list[Message]) -> None:
        for m in msgs:
            if self._filter(m):
                self.delivered.append(m)
                self.drivers[m.to].rn.step(m)

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self.drivers[i].rn.tick()

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for d in self.drivers.values():
                d.rn.tick()
            self.stabilize()

    def campaign(self, i: int) -> None:
        self.node(i).campaign()
        self.stabilize()

    def leader(self) -> int:
        leaders = [i for i, d in self.drivers.items() if d.rn.raft.state == StateType.LEADER]
        assert len(leaders) <= 1 or len({self.raft(i).term for i in leaders}) == len(leaders)
        return max(leaders, key=lambda i: self.raft(i).term) if leaders else 0

    def propose(self, i: int, data: bytes) -> None:
        self.node(i).propose(data)
        self.stabilize()

    def applied_data(self, i: int) -> list[bytes]:
        return [e.data for e in self.drivers[i].applied if e.data and e.type == EntryType.NORMAL]


def take(r: Raft) -> list[Message]:
    """Pop everything the core queued to send (both lists, self-addressed ones excluded)."""
    r.flush_appends()
    out = [m for m in r.msgs + r.msgs_after_append if m.to != r.id]
    r.msgs = []
    r.msgs_after_append = []
    return out


def raft_with_log(
    node_id: int,
    voters: Iterable[int],
    entries: Iterable[tuple[int, int]] = (),
    term: int = 0,
    commit: int = 0,
    **cfg: object,
) -> Raft:
    """A core whose storage already holds entries given as (index, term)."""
    from raftkv.raft import HardState

    st = storage_with(voters)
    st.append([Entry(t, i) for i, t in entries])
    st.set_hard_state(HardState(term, 0, commit))
    return new_node(node_id, voters, storage=st, **cfg).raft


def elect(r: Raft) -> None:
    """Make ``r`` leader (no pre-vote needed) by granting it every vote, then persist."""
    r.become_candidate()
    r.become_leader()
    # count the leader's own empty entry as durable
    r.raft_log.storage.append(r.raft_log.unstable.entries)
    r.raft_log.stable_to(r.raft_log.last_index(), r.term)
    r.trk.progress[r.id].maybe_update(r.raft_log.last_index())
    take(r)


def app(frm: int, to: int, term: int, prev: tuple[int, int], ents=(), commit: int = 0) -> Message:
    """An APP message with prev (index, term) and entries given as (index, term)."""
    return Message(
        MT.APP,
        to,
        frm,
        term=term,
        index=prev[0],
        log_term=prev[1],
        entries=tuple(Entry(t, i) for i, t in ents),
        commit=commit,
    )


def rawnode_of(r: Raft) -> RawNode:
    """Wrap an existing core (built by raft_with_log) in a RawNode for Ready handling."""
    rn = RawNode.__new__(RawNode)
    rn.raft = r
    rn.storage = r.raft_log.storage
    rn._prev_soft = rn._soft_state()
    rn._prev_hard = r.hard_state()
    rn._steps_on_advance = None
    return rn
