"""A deterministic, seeded network simulator for the Raft core (tests only).

Every member is a RawNode with its own MemoryStorage plus a separate *durable* copy of what its
driver persisted (hard state, entries, snapshot) through the Ready loop. One ``random.Random``
seeded from the run's seed drives everything: ticks, message delays (so reordering), drops,
duplicates, partitions, crashes (the member loses everything not yet persisted, including a
Ready it was in the middle of handling) and restarts (from the durable copy only), client
proposals, membership changes and log compaction.

Safety is checked as the run goes (and raised with the seed in the message):

- election safety: at most one leader per term;
- state machine safety: no two members apply different entries at one index;
- log matching: if two logs hold an entry with the same index and term, they are identical up
  to it;
- leader completeness: every leader's log holds every entry applied anywhere (at or after the
  leader's first index);
- durability: a member never applies an entry it has not persisted; an entry applied anywhere
  is never lost (it is in every later leader's log and, after healing, applied everywhere).

Wipes (``p_wipe``) model an operator who deletes a follower's data dir and restarts it with the
same id, bootstrapping again (``--initial-cluster-state new``) or empty (``existing``). A wipe
loses votes and acknowledged entries, which no protocol survives in general: with a leader
change while the member is behind, it can grant a second vote in a term or complete a quorum
that lacks a committed entry. So wipes run one at a time, only of a follower while every member
is up, and only in runs without crashes, partitions or transfers (no leader changes); within
those limits every check above stays on, and the wiped member must catch up.

Liveness: ``heal_and_check_liveness`` stops all faults, restarts crashed members, and requires
that a leader emerges and a fresh proposal commits on every voter within a bounded number of
ticks.

Replay one run with ``RAFT_SIM_SEED=<seed> python -m pytest tests/raft/test_sim.py``.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import dataclass, field, replace

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    ConfState,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDroppedError,
    RawNode,
    Snapshot,
    SnapshotMetadata,
    StateType,
    decode_conf_change,
)


@dataclass
class SimOptions:
    voters: int = 3
    spare: int = 0  # extra member ids that may join through membership changes
    steps: int = 300
    p_tick: float = 0.8
    max_delay: int = 3
    p_drop: float = 0.05
    p_dup: float = 0.02
    p_partition: float = 0.01
    partition_len: tuple[int, int] = (5, 40)
    p_crash: float = 0.005
    p_crash_mid_ready: float = 0.002
    p_interleave: float = 0.0  # step/tick/propose between ready() and advance()
    restart_after: tuple[int, int] = (5, 40)
    p_propose: float = 0.3
    p_conf_change: float = 0.0
    p_compact: float = 0.0
    compact_keep: int = 5
    p_transfer: float = 0.0
    p_read: float = 0.0
    p_wipe: float = 0.0  # wipe a follower's durable state (see the module docstring)
    election_tick: int = 10
    max_inflight: int = 4
    max_inflight_bytes: int = 0
    max_size_per_msg: int = 64
    liveness_ticks: int = 300


class SimFailure(AssertionError):
    pass


@dataclass
class SimMember:
    id: int
    durable: MemoryStorage = field(default_factory=MemoryStorage)
    rn: RawNode | None = None
    conf_state: ConfState = field(default_factory=ConfState)
    applied_index: int = 0
    restart_at: int = -1
    read_states: int = 0
    rejoin_existing: bool = False  # wiped, restarts empty instead of bootstrapping again


class Sim:
    def __init__(self, seed: int, opts: SimOptions) -> None:
        self.seed = seed
        self.o = opts
        self.rng = random.Random(seed)
        self.now = 0
        self.inflight: list[tuple[int, int, Message]] = []  # (due, seq, msg)
        self.seq = 0
        self.partition: tuple[set[int], int] | None = None  # (one side, heals at)
        self.members: dict[int, SimMember] = {}
        self.leaders: dict[int, int] = {}  # term -> leader id
        self.applied: dict[int, Entry] = {}  # index -> entry applied by anyone
        # index -> term of the member that first applied the entry: the entry was committed at
        # or below that term, so every leader of a later term must have it (§5.4.3)
        self.applied_term: dict[int, int] = {}
        self.proposed = 0
        self.marker = b""
        self.reads: dict[bytes, int] = {}  # pending read ctx -> highest index applied at issue
        self.marker_index = 0
        self.wipes = 0
        self.wiped_until: dict[int, int] = {}  # wiped member -> index it must apply again
        self.used_ids = set(range(1, opts.voters + 1))
        self.unused_ids = list(range(opts.voters + 1, opts.voters + opts.spare + 1))
        for i in range(1, opts.voters + opts.spare + 1):
            m = SimMember(i)
            self.members[i] = m
            self._start(m, bootstrap=i <= opts.voters)

    # --- failure reporting ------------------------------------------------------------------

    def fail(self, what: str) -> None:
        raise SimFailure(
            f"seed {self.seed} step {self.now}: {what}\nreplay with RAFT_SIM_SEED={self.seed}"
        )

    def check(self, cond: bool, what: str) -> None:
        if not cond:
            self.fail(what)

    # --- members ------------------------------------------------------------------------------

    def _start(self, m: SimMember, bootstrap: bool = False) -> None:
        st = MemoryStorage()
        d = m.durable
        snap = d.snapshot()
        if not snap.is_empty():
            st.apply_snapshot(snap)
        st.set_hard_state(d.hard_state)
        if d.last_index() >= d.first_index():
            st.append(d.entries(d.first_index(), d.last_index() + 1, 1 << 62))
        cfg = Config(
            id=m.id,
            election_tick=self.o.election_tick,
            heartbeat_tick=1,
            max_inflight_msgs=self.o.max_inflight,
            max_inflight_bytes=self.o.max_inflight_bytes,
            max_size_per_msg=self.o.max_size_per_msg,
            rng=random.Random(self.rng.random()),
        )
        m.rn = RawNode(cfg, st)
        m.conf_state = snap.metadata.conf_state
        m.applied_index = snap.metadata.index
        if (
            (bootstrap or m.id <= self.o.voters)
            and not m.rejoin_existing
            and d.last_index() == 0
            and d.hard_state.is_empty()
        ):
            # a founding member that never persisted anything bootstraps (again), as a server
            # does when it finds no WAL
            m.rn.bootstrap(list(range(1, self.o.voters + 1)))

    def _crash(self, m: SimMember) -> None:
        m.rn = None
        m.restart_at = self.now + self.rng.randint(*self.o.restart_after)

    def _wipe(self) -> None:
        ld = self._leader()
        if ld is None or self.wiped_until or any(m.rn is None for m in self.members.values()):
            return
        voters = ld.rn.raft.trk.voters  # type: ignore[union-attr]
        victims = [m for m in self.live() if m.id != ld.id and m.id in voters]
        if not victims:
            return
        m = self.rng.choice(victims)
        self.wiped_until[m.id] = max(self.applied, default=0)
        self._crash(m)
        m.durable = MemoryStorage()
        m.rejoin_existing = self.rng.random() < 0.5
        self.wipes += 1

    def live(self) -> list[SimMember]:
        return [m for m in self.members.values() if m.rn is not None]

    # --- the driver loop ---------------------------------------------------------------------

    def _handle_ready(self, m: SimMember, allow_crash: bool = True) -> None:
        while m.rn is not None and m.rn.has_ready():
            rn = m.rn
            rd = rn.ready()
            r = rn.raft
            if rd.soft_state is not None and rd.soft_state.raft_state == StateType.LEADER:
                self._check_new_leader(m)
            for msg in rd.messages:
                self._send(self._fresh_snapshot(m, msg))
            if self.o.p_interleave and self.rng.random() < self.o.p_interleave:
                self._interleave(m)
            if allow_crash and self.rng.random() < self.o.p_crash_mid_ready:
                self._crash(m)  # the Ready was never persisted
                return
            # persist: durable copy first (the "fsync"), then the in-memory storage
            d = m.durable
            if rd.snapshot is not None:
                d.apply_snapshot(rd.snapshot)
                rn.storage.apply_snapshot(rd.snapshot)
                m.conf_state = rd.snapshot.metadata.conf_state
                m.applied_index = rd.snapshot.metadata.index
            if rd.hard_state is not None:
                d.set_hard_state(rd.hard_state)
                rn.storage.set_hard_state(rd.hard_state)
            if rd.entries:
                d.append(rd.entries)
                rn.storage.append(rd.entries)
            if d.hard_state.commit > d.last_index():
                self.fail(
                    f"member {m.id} persisted commit {d.hard_state.commit} beyond its durable "
                    f"log (last index {d.last_index()})"
                )
            for rs in rd.read_states:
                floor = self.reads[rs.request_ctx]  # (a duplicated request is answered twice)
                if not (rs.index >= floor):
                    self.fail(
                        f"read index {rs.index} for {rs.request_ctx!r} misses entry {floor} "
                        "acknowledged before the read was issued"
                    )
                m.read_states += 1
            for msg in rd.messages_after_append:
                self._send(msg)
            for e in rd.committed_entries:
                self._apply(m, e)
            rn.advance(rd)
            if not (r.raft_log.committed >= m.applied_index):
                self.fail(f"{m.id} applied past its commit index")

    def _interleave(self, m: SimMember) -> None:
        """While the Ready is being persisted the driver keeps stepping (as etcd's node loop
        and an asyncio server with the fsync in a thread do): messages, ticks, proposals."""
        rn = m.rn
        assert rn is not None
        mine = [x for x in self.inflight if x[2].to == m.id and x[0] <= self.now + 1]
        for x in mine[: self.rng.randint(0, 3)]:
            self.inflight.remove(x)
            msg = x[2]
            if self._cut(msg.from_, msg.to):
                self._report_snapshot(msg, False)
                continue
            rn.step(msg)
            self._report_snapshot(msg, True)
        if self.rng.random() < 0.3:
            rn.tick()
        if self.rng.random() < 0.3:
            self.proposed += 1
            with contextlib.suppress(ProposalDroppedError):
                rn.propose(f"s{self.seed}-p{self.proposed}".encode())

    def _apply(self, m: SimMember, e: Entry) -> None:
        if e.index != m.applied_index + 1:
            self.fail(f"member {m.id} applied index {e.index} after {m.applied_index}")
        d = m.durable
        if not (d.last_index() >= e.index and d.term(e.index) == e.term):
            self.fail(f"member {m.id} applied entry {e.index}/{e.term} it has not persisted")
        prev = self.applied.get(e.index)
        if prev is None:
            self.applied[e.index] = e
            # the applying member learned the commit at or below its current term
            self.applied_term[e.index] = m.rn.raft.term  # type: ignore[union-attr]
        else:
            if prev != e:
                self.fail(
                    f"state machine safety: member {m.id} applied {e} at {e.index}, "
                    f"another member applied {prev}"
                )
        m.applied_index = e.index
        if self.marker and e.data == self.marker:
            self.marker_index = e.index
        if e.type == EntryType.CONF_CHANGE:
            assert m.rn is not None
            m.conf_state = m.rn.apply_conf_change(decode_conf_change(e.data))

    def _check_new_leader(self, m: SimMember) -> None:
        assert m.rn is not None
        term = m.rn.raft.term
        other = self.leaders.setdefault(term, m.id)
        if other != m.id:
            self.fail(f"election safety: {other} and {m.id} both lead term {term}")
        self._check_leader_completeness(m)

    def _check_leader_completeness(self, m: SimMember) -> None:
        assert m.rn is not None
        log = m.rn.raft.raft_log
        first = log.first_index()
        term = m.rn.raft.term
        for idx, e in self.applied.items():
            if idx < first or self.applied_term[idx] >= term:
                continue
            if not (idx <= log.last_index() and log.term(idx) == e.term):
                self.fail(
                    f"leader completeness: leader {m.id} (term {m.rn.raft.term}) lacks applied "
                    f"entry {idx}/{e.term}"
                )

    # --- network ------------------------------------------------------------------------------

    def _fresh_snapshot(self, m: SimMember, msg: Message) -> Message:
        """Like etcd's server (createMergedSnapshotMessage), send the sender's *current* applied
        state rather than its stored, possibly older snapshot: an old snapshot may predate the
        membership change that added the receiver, which would then refuse it."""
        if msg.type != MessageType.SNAP or msg.snapshot is None:
            return msg
        assert m.rn is not None
        idx = m.applied_index
        if idx <= msg.snapshot.metadata.index:
            return msg
        meta = SnapshotMetadata(m.conf_state, idx, m.rn.storage.term(idx))
        return replace(msg, snapshot=Snapshot(meta, b"snap@%d" % idx))

    def _report_snapshot(self, msg: Message, ok: bool) -> None:
        """The transport tells the sender how a snapshot send ended (as the server must)."""
        if msg.type != MessageType.SNAP:
            return
        sender = self.members[msg.from_]
        if sender.rn is not None:
            sender.rn.report_snapshot(msg.to, ok)
            self._handle_ready(sender)

    def _send(self, msg: Message) -> None:
        o = self.o
        if self.rng.random() < o.p_drop:
            self._report_snapshot(msg, False)
            return
        copies = 2 if self.rng.random() < o.p_dup else 1
        for _ in range(copies):
            self.seq += 1
            self.inflight.append((self.now + self.rng.randint(0, o.max_delay), self.seq, msg))

    def _cut(self, a: int, b: int) -> bool:
        if self.partition is None:
            return False
        side = self.partition[0]
        return (a in side) != (b in side)

    def _deliver_due(self) -> None:
        due = [x for x in self.inflight if x[0] <= self.now]
        if not due:
            return
        self.inflight = [x for x in self.inflight if x[0] > self.now]
        self.rng.shuffle(due)
        touched: set[int] = set()
        for _, _, msg in due:
            target = self.members.get(msg.to)
            if target is None or target.rn is None or self._cut(msg.from_, msg.to):
                self._report_snapshot(msg, False)
                continue
            target.rn.step(msg)
            # sometimes a Ready per message, sometimes one Ready for a batch of messages
            if self.rng.random() < 0.5:
                self._handle_ready(target)
            else:
                touched.add(target.id)
            self._report_snapshot(msg, True)
        for i in sorted(touched):
            self._handle_ready(self.members[i])

    # --- client actions -----------------------------------------------------------------------

    def _leader(self) -> SimMember | None:
        best = None
        for m in self.live():
            assert m.rn is not None
            if m.rn.raft.state == StateType.LEADER and (
                best is None or m.rn.raft.term > best.rn.raft.term  # type: ignore[union-attr]
            ):
                best = m
        return best

    def _propose(self) -> None:
        live = self.live()
        if not live:
            return
        m = self.rng.choice(live)
        self.proposed += 1
        try:
            m.rn.propose(f"s{self.seed}-p{self.proposed}".encode())  # type: ignore[union-attr]
        except ProposalDroppedError:
            return
        self._handle_ready(m)

    def _conf_change(self) -> None:
        ld = self._leader()
        if ld is None:
            return
        trk = ld.rn.raft.trk  # type: ignore[union-attr]
        voters, learners = sorted(trk.voters), sorted(trk.learners)
        choices: list[ConfChange] = []
        if self.unused_ids:
            nid = self.unused_ids[0]
            choices.append(ConfChange(ConfChangeType.ADD_NODE, nid))
            choices.append(ConfChange(ConfChangeType.ADD_LEARNER_NODE, nid))
        for lrn in learners:
            choices.append(ConfChange(ConfChangeType.ADD_NODE, lrn))
            choices.append(ConfChange(ConfChangeType.REMOVE_NODE, lrn))
        if len(voters) > 2:
            for v in voters:
                choices.append(ConfChange(ConfChangeType.REMOVE_NODE, v))
        if not choices:
            return
        cc = self.rng.choice(choices)
        try:
            ld.rn.propose_conf_change(cc)  # type: ignore[union-attr]
        except ProposalDroppedError:
            return
        if cc.node_id in self.unused_ids:
            self.unused_ids.remove(cc.node_id)
        self._handle_ready(ld)

    def _compact(self) -> None:
        live = [m for m in self.live() if m.applied_index > self.o.compact_keep]
        if not live:
            return
        m = self.rng.choice(live)
        assert m.rn is not None
        st = m.rn.storage
        idx = m.applied_index
        if idx <= st.snapshot().metadata.index or idx > st.last_index():
            return
        data = b"snap@%d" % idx
        st.create_snapshot(idx, m.conf_state, data)
        m.durable.create_snapshot(idx, m.conf_state, data)
        keep_from = idx - self.o.compact_keep
        if keep_from > st.first_index() - 1 and keep_from >= 1:
            st.compact(keep_from)
            if keep_from > m.durable.first_index() - 1:
                m.durable.compact(keep_from)

    def _transfer(self) -> None:
        ld = self._leader()
        if ld is None:
            return
        voters = sorted(ld.rn.raft.trk.voters - {ld.id})  # type: ignore[union-attr]
        if voters:
            ld.rn.transfer_leader(self.rng.choice(voters))  # type: ignore[union-attr]
            self._handle_ready(ld)

    def _read(self) -> None:
        live = self.live()
        if not live:
            return
        m = self.rng.choice(live)
        self.seq += 1
        ctx = b"r%d" % self.seq
        # linearizability: the read point must cover every entry already acknowledged
        self.reads[ctx] = max(self.applied, default=0)
        try:
            m.rn.read_index(ctx)  # type: ignore[union-attr]
        except ProposalDroppedError:
            return
        self._handle_ready(m)

    # --- invariants over whole logs --------------------------------------------------------------

    def check_log_matching(self) -> None:
        logs = {}
        for m in self.live():
            log = m.rn.raft.raft_log  # type: ignore[union-attr]
            logs[m.id] = (log.first_index(), log.all_entries())
        ids = sorted(logs)
        for a_i, a in enumerate(ids):
            fa, ea = logs[a]
            for b in ids[a_i + 1 :]:
                fb, eb = logs[b]
                lo = max(fa, fb)
                hi = min(fa + len(ea), fb + len(eb))  # exclusive
                # the highest common index where the terms agree; all below must be equal
                top = 0
                for i in range(hi - 1, lo - 1, -1):
                    if ea[i - fa].term == eb[i - fb].term:
                        top = i
                        break
                for i in range(lo, top + 1):
                    if ea[i - fa] != eb[i - fb]:
                        self.fail(
                            f"log matching: members {a} and {b} agree on the term at {top} but "
                            f"differ at {i}: {ea[i - fa]} vs {eb[i - fb]}"
                        )
        for m in self.live():
            if m.rn.raft.state == StateType.LEADER:  # type: ignore[union-attr]
                self._check_leader_completeness(m)

    # --- the run ------------------------------------------------------------------------------

    def step(self) -> None:
        o, rng = self.o, self.rng
        self.now += 1
        if self.partition is not None and self.partition[1] <= self.now:
            self.partition = None
        if self.partition is None and rng.random() < o.p_partition:
            ids = list(self.members)
            side = set(rng.sample(ids, rng.randint(1, max(1, len(ids) // 2))))
            self.partition = (side, self.now + rng.randint(*o.partition_len))
        for m in self.members.values():
            if m.rn is None and 0 <= m.restart_at <= self.now:
                self._start(m)
                m.restart_at = -1
        for m in self.live():
            if rng.random() < o.p_crash:
                self._crash(m)
                continue
            if rng.random() < o.p_tick:
                m.rn.tick()  # type: ignore[union-attr]
                self._handle_ready(m)
        self._deliver_due()
        if rng.random() < o.p_propose:
            self._propose()
        if o.p_conf_change and rng.random() < o.p_conf_change:
            self._conf_change()
        if o.p_compact and rng.random() < o.p_compact:
            self._compact()
        if o.p_transfer and rng.random() < o.p_transfer:
            self._transfer()
        if o.p_read and rng.random() < o.p_read:
            self._read()
        if o.p_wipe and rng.random() < o.p_wipe:
            self._wipe()
        for i, until in list(self.wiped_until.items()):
            if self.members[i].applied_index >= until:
                del self.wiped_until[i]  # caught up: the next wipe may come

    def run(self) -> None:
        for _ in range(self.o.steps):
            self.step()
            if self.now % 50 == 0:
                self.check_log_matching()
        self.check_log_matching()

    def heal_and_check_liveness(self) -> None:
        """Stop every fault; a leader must emerge and a new proposal commit everywhere."""
        o = self.o
        o.p_drop = o.p_dup = o.p_partition = o.p_crash = o.p_crash_mid_ready = 0.0
        o.p_propose = o.p_conf_change = o.p_transfer = o.p_interleave = o.p_wipe = 0.0
        o.p_tick = 1.0
        self.partition = None
        for m in self.members.values():
            if m.rn is None:
                self._start(m)
                m.restart_at = -1
        start = self.now
        marker = self.marker = f"s{self.seed}-liveness".encode()
        proposed_at = None
        while self.now - start < o.liveness_ticks:
            self.step()
            ld = self._leader()
            if ld is None:
                continue
            term = ld.rn.raft.term  # type: ignore[union-attr]
            if not self.marker_index and proposed_at != term:
                # a client retries on every new leader until its proposal commits
                try:
                    ld.rn.propose(marker)  # type: ignore[union-attr]
                    proposed_at = term
                    self._handle_ready(ld)
                except ProposalDroppedError:
                    continue
            voters = ld.rn.raft.trk.voters  # type: ignore[union-attr]
            top = max(self.applied)
            if self.marker_index and all(
                self.members[v].applied_index >= max(top, self.marker_index) for v in voters
            ):
                # every entry applied anywhere (acknowledged to a client) is applied on every
                # voter; state machine safety was checked entry by entry along the way
                self.check_log_matching()
                self._check_nothing_applied_was_lost(voters)
                return
        self.fail(
            f"liveness: no leader committed a proposal on every voter within "
            f"{o.liveness_ticks} ticks after healing (leader={self._leader_desc()})"
        )

    def _check_nothing_applied_was_lost(self, voters: set[int]) -> None:
        """Every entry applied anywhere is still in every voter's log (where not compacted)."""
        for v in voters:
            log = self.members[v].rn.raft.raft_log  # type: ignore[union-attr]
            first, ents = log.first_index(), log.all_entries()
            for idx, e in self.applied.items():
                if idx >= first and ents[idx - first] != e:
                    self.fail(f"applied entry {e} lost: voter {v} has {ents[idx - first]}")

    def _leader_desc(self) -> str:
        ld = self._leader()
        if ld is None:
            return "none"
        st = ld.rn.status()  # type: ignore[union-attr]
        return f"{ld.id} {st}"

    def hard_state(self, i: int) -> HardState:
        return self.members[i].durable.hard_state
