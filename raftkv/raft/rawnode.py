"""RawNode: the public, thread-unsafe API of the Raft core, and the Ready batch.

The driver's loop (the only correct one)::

    if node.has_ready():
        rd = node.ready()
        send(rd.messages)                        # may go before persisting
        persist(rd.hard_state, rd.entries, rd.snapshot)  # one fsync if rd.must_sync
        storage.apply_snapshot(rd.snapshot) / storage.set_hard_state / storage.append(rd.entries)
        send(rd.messages_after_append)           # only after persisting
        apply(rd.committed_entries)              # apply_conf_change for CONF_CHANGE entries
        node.advance(rd)

``advance`` steps in what the node addresses to itself: its own append/vote responses and the
STORAGE_APPEND_RESP / STORAGE_APPLY_RESP acknowledgements ("durable up to (index, term)",
"applied up to index"). So a leader counts its own copy of an entry toward commit only after
the driver persisted it, and neither message list ever contains a self-addressed message.

Between ``ready()`` and ``advance()`` the driver may keep calling ``tick``, ``step``,
``propose`` and friends (etcd's node loop does, and so does an asyncio server whose fsync runs in
a thread): what happens meanwhile goes into the next Ready. Only ``ready()`` itself must wait:
``ready()`` and ``advance()`` alternate strictly. Such a driver may also send early what needs
no persistence (``take_messages``) and apply newly committed entries early
(``committed_entries_to_apply``).

A driver reads the node only through RawNode's methods and read-only properties (``term``,
``lead``, ``raft_state``, ``committed``, ``applied``, ``progress()``, ``status()``); ``raft`` is
the core's internals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from raftkv.raft.errors import ProposalDroppedError, RaftError, StepLocalMessageError
from raftkv.raft.messages import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    encode_conf_change,
)
from raftkv.raft.raft import Config, Raft
from raftkv.raft.read_only import ReadState
from raftkv.raft.state import NONE, StateType
from raftkv.raft.storage import MemoryStorage
from raftkv.raft.tracker import ProgressStatus
from raftkv.raft.util import NO_LIMIT, ents_size

__all__ = ["RawNode", "Ready", "SoftState", "Status"]

MT = MessageType

LOCAL_MESSAGES = frozenset(
    {
        MT.HUP,
        MT.BEAT,
        MT.UNREACHABLE,
        MT.SNAP_STATUS,
        MT.CHECK_QUORUM,
        MT.STORAGE_APPEND_RESP,
        MT.STORAGE_APPLY_RESP,
    }
)
RESPONSE_MESSAGES = frozenset({MT.APP_RESP, MT.VOTE_RESP, MT.HEARTBEAT_RESP, MT.PRE_VOTE_RESP})


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile state worth reporting: who leads, and this node's role."""

    lead: int
    raft_state: StateType


@dataclass(slots=True)
class Ready:
    """Everything the driver must do, in the order described in the module docstring."""

    soft_state: SoftState | None = None  # only when changed
    hard_state: HardState | None = None  # only when changed; persist before messages_after_append
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # to persist (may replace a stored tail)
    snapshot: Snapshot | None = None  # to persist and apply
    committed_entries: list[Entry] = field(default_factory=list)  # to apply, in order
    messages: list[Message] = field(default_factory=list)  # may be sent at once
    messages_after_append: list[Message] = field(default_factory=list)  # after persisting
    must_sync: bool = False  # persist with an fsync


@dataclass(frozen=True, slots=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    raft_state: StateType
    lead_transferee: int = 0
    progress: dict[int, ProgressStatus] = field(default_factory=dict)  # leader only


class RawNode:
    def __init__(self, config: Config, storage: MemoryStorage) -> None:
        self.raft = Raft(config, storage)
        self.storage = storage
        self._prev_soft = self._soft_state()
        self._prev_hard = self.raft.hard_state()
        self._steps_on_advance: list[Message] | None = None

    # --- inputs ------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance the logical clock by one tick (the driver maps it to the heartbeat interval)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (with pre-vote first if configured)."""
        self.raft.step(Message(MT.HUP, self.raft.id, self.raft.id))

    def propose(self, data: bytes) -> None:
        """Propose ``data`` for the log. Raises ProposalDroppedError when it cannot be accepted
        (no leader known, leader transfer in progress, removed member, size limit)."""
        self.raft.step(Message(MT.PROP, NONE, self.raft.id, entries=(Entry(0, 0, data=data),)))

    def propose_many(self, datas: Sequence[bytes]) -> None:
        """Propose several entries in one step: the leader appends them together and replicates
        them in one append message per follower (all accepted, or all dropped)."""
        if not datas:
            return
        ents = tuple(Entry(0, 0, data=d) for d in datas)
        self.raft.step(Message(MT.PROP, NONE, self.raft.id, entries=ents))

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Propose a membership change; it takes effect when the driver applies the committed
        entry with ``apply_conf_change``. A second change proposed while one is pending is
        replaced by an empty normal entry (it commits but changes nothing)."""
        e = Entry(0, 0, EntryType.CONF_CHANGE, encode_conf_change(cc))
        self.raft.step(Message(MT.PROP, NONE, self.raft.id, entries=(e,)))

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed conf change to the configuration; returns the new ConfState."""
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """Feed a message received from a peer. Local-only message types raise
        StepLocalMessageError; responses from non-members and proposals the leader cannot
        accept are dropped silently (the proposer times out and retries)."""
        if m.type in LOCAL_MESSAGES:
            raise StepLocalMessageError(f"cannot step local message type {m.type.name}")
        if m.type in RESPONSE_MESSAGES and m.from_ not in self.raft.trk.progress:
            return
        try:
            self.raft.step(m)
        except ProposalDroppedError:
            if m.type != MT.PROP:
                raise

    def read_index(self, ctx: bytes) -> None:
        """Request a linearizable read point; the answer arrives as ``ReadState(index, ctx)`` in
        a later Ready. ``ctx`` must be non-empty and unique among pending requests."""
        if not ctx:
            raise ValueError("read_index needs a non-empty, unique request context")
        if self.raft.lead == NONE:
            raise ProposalDroppedError(f"no leader at term {self.raft.term}; cannot read index")
        self.raft.step(Message(MT.READ_INDEX, NONE, self.raft.id, entries=(Entry(0, 0, data=ctx),)))

    def transfer_leader(self, transferee: int) -> None:
        self.raft.step(Message(MT.TRANSFER_LEADER, NONE, transferee))

    def report_unreachable(self, node_id: int) -> None:
        self.raft.step(Message(MT.UNREACHABLE, self.raft.id, node_id))

    def report_snapshot(self, node_id: int, success: bool) -> None:
        self.raft.step(Message(MT.SNAP_STATUS, self.raft.id, node_id, reject=not success))

    def bootstrap(self, peers: Sequence[int]) -> None:
        """Initialize an empty storage with a configuration of ``peers`` (etcd's
        RawNode.Bootstrap): one committed ADD_NODE entry per peer at term 1. The driver applies
        those entries with ``apply_conf_change`` like any other (re-adding is a no-op)."""
        if not peers:
            raise RaftError("must provide at least one peer to bootstrap")
        if self.storage.last_index() != 0:
            raise RaftError("can only bootstrap an empty storage")
        r = self.raft
        # A hard state with term 1 marks the node as started; no ready() may have run yet.
        self._prev_hard = HardState()
        r.become_follower(1, NONE)
        ccs = [ConfChange(ConfChangeType.ADD_NODE, p) for p in peers]
        ents = [
            Entry(1, i + 1, EntryType.CONF_CHANGE, encode_conf_change(cc))
            for i, cc in enumerate(ccs)
        ]
        r.raft_log.append(ents)
        r.raft_log.committed = len(ents)
        for cc in ccs:
            r.apply_conf_change(cc)

    # --- outputs -------------------------------------------------------------------------------

    def _soft_state(self) -> SoftState:
        return SoftState(self.raft.lead, self.raft.state)

    def flush_appends(self) -> None:
        """Build the appends owed to followers for proposals accepted since the last Ready
        (one append per follower however many proposals came), so that ``take_messages`` or
        the next ``ready`` carries them. ``ready`` does it too."""
        self.raft.flush_appends()

    def has_ready(self) -> bool:
        """Whether ``ready`` has anything to hand out. A pure query: nothing is built or sent
        (owed appends count as work; ``ready`` or ``flush_appends`` builds them)."""
        r = self.raft
        if r.msgs or r.msgs_after_append or r.read_states:
            return True
        if r.pending_bcast and r.state == StateType.LEADER:
            return True
        ps = self._prev_soft
        if r.lead != ps.lead or r.state != ps.raft_state:
            return True
        log = r.raft_log
        ph = self._prev_hard
        if (r.term, r.vote, log.committed) != (ph.term, ph.vote, ph.commit) and (
            r.term or r.vote or log.committed
        ):
            return True
        return bool(
            log.unstable.next_snapshot() is not None
            or log.has_next_unstable_ents()
            or log.has_next_committed_ents(True)
        )

    def ready(self) -> Ready:
        """The next batch of work. Must be followed by ``advance`` before the next ``ready``."""
        assert self._steps_on_advance is None, "ready() called twice without advance()"
        r = self.raft
        r.flush_appends()
        log = r.raft_log
        rd = Ready(
            entries=log.next_unstable_ents(),
            committed_entries=log.next_committed_ents(True),
            messages=r.msgs,
        )
        soft = self._soft_state()
        if soft != self._prev_soft:
            rd.soft_state = soft
            self._prev_soft = soft
        hs = r.hard_state()
        if hs != self._prev_hard:
            rd.hard_state = hs
        rd.snapshot = log.next_unstable_snapshot()
        rd.read_states = r.read_states
        r.read_states = []
        rd.must_sync = bool(
            rd.entries
            or rd.snapshot is not None
            or hs.term != self._prev_hard.term
            or hs.vote != self._prev_hard.vote
        )
        if rd.hard_state is not None:
            self._prev_hard = hs

        steps: list[Message] = []
        self_app_resp: Message | None = None
        for m in r.msgs_after_append:
            if m.to != r.id:
                rd.messages_after_append.append(m)
            elif m.type == MT.APP_RESP:
                # the leader's acks of its own appends grow monotonically: the last one says it all
                self_app_resp = m
            else:
                steps.append(m)
        if self_app_resp is not None:
            steps.append(self_app_resp)
        if log.has_next_or_in_progress_unstable_ents() or rd.snapshot is not None:
            # "Everything up to the log's last entry, and this snapshot, is durable", valid only
            # if the term has not changed by the time it is stepped in.
            idx = log.last_index() if log.has_next_or_in_progress_unstable_ents() else 0
            steps.append(
                Message(
                    MT.STORAGE_APPEND_RESP,
                    r.id,
                    r.id,
                    term=r.term,
                    index=idx,
                    log_term=log.last_term() if idx else 0,
                    snapshot=rd.snapshot,
                )
            )
        if rd.committed_entries:
            steps.append(
                Message(MT.STORAGE_APPLY_RESP, r.id, r.id, entries=tuple(rd.committed_entries))
            )
        self._steps_on_advance = steps
        r.msgs = []
        r.msgs_after_append = []
        log.accept_unstable()
        if rd.committed_entries:
            ents = rd.committed_entries
            log.accept_applying(ents[-1].index, ents_size(ents))
        return rd

    def advance(self, rd: Ready | None = None) -> None:
        """The driver has handled the last Ready: persisted, sent and applied it."""
        steps = self._steps_on_advance
        assert steps is not None, "advance() called without a preceding ready()"
        self._steps_on_advance = None
        for m in steps:
            self.raft.step(m)

    def status(self) -> Status:
        r = self.raft
        progress = self.progress()
        return Status(
            id=r.id,
            term=r.term,
            vote=r.vote,
            commit=r.raft_log.committed,
            applied=r.raft_log.applied,
            lead=r.lead,
            raft_state=r.state,
            lead_transferee=r.lead_transferee,
            progress=progress,
        )

    # --- read-only views of the core (for a driver between and during Readies) ----------------

    @property
    def id(self) -> int:
        """This node's id; fixed for its lifetime."""
        return self.raft.id

    @property
    def term(self) -> int:
        """The current term. Never decreases; may be ahead of the last Ready's hard state."""
        return self.raft.term

    @property
    def lead(self) -> int:
        """The leader this node knows of in the current term, or NONE. May be ahead of the last
        Ready's soft state."""
        return self.raft.lead

    @property
    def raft_state(self) -> StateType:
        """This node's role right now. May be ahead of the last Ready's soft state."""
        return self.raft.state

    @property
    def is_leader(self) -> bool:
        """``raft_state == LEADER``."""
        return self.raft.state == StateType.LEADER

    @property
    def committed(self) -> int:
        """Highest log index known to be durable on a quorum. Never decreases; may be ahead of
        the last Ready's ``hard_state.commit``. Invariant: ``applied <= committed``."""
        return self.raft.raft_log.committed

    @property
    def applied(self) -> int:
        """Highest index the driver has applied as far as Raft knows: the last committed entry
        (or snapshot) handed out by a Ready whose ``advance`` has run. Entries applied early
        through ``committed_entries_to_apply`` do not move it."""
        return self.raft.raft_log.applied

    def take_messages(self) -> list[Message]:
        """Take the messages queued since the last ``ready()`` (or ``take_messages()``) that
        may be sent before anything is persisted: exactly what the next Ready's ``messages``
        would have held (heartbeats, appends and commit updates to followers, forwarded
        proposals, read-index traffic), which will then not appear in it. Meant for a driver
        that keeps the network busy while it waits for an fsync, between ``ready`` and
        ``advance``.

        Invariant: never returns a message that must wait for persistence (append and vote
        responses, which stay for the next Ready's ``messages_after_append``) and never a
        self-addressed one (those are stepped in by ``advance``). Appends owed for proposals
        accepted since the last Ready are not built here: they leave with the next Ready, one
        append per follower."""
        msgs, self.raft.msgs = self.raft.msgs, []
        return msgs

    def committed_entries_to_apply(self, lo: int, max_size: int = NO_LIMIT) -> list[Entry]:
        """Committed entries in ``[lo, committed]``, at most ``max_size`` encoded bytes (at
        least one entry), for a driver that applies ahead of the Ready that hands them out
        (e.g. while it waits for its own fsync). Nothing changes in the core: the entries still
        come out of a later Ready's ``committed_entries`` (so the driver must skip what it
        applied already) and ``applied`` does not move.

        Invariants: every entry returned is committed, hence durable on a quorum and never
        truncated; entries are read through the whole log, so a stored entry that a
        conflicting append has overwritten (MemoryStorage holds it until the next Ready is
        persisted) is never returned. Returns ``[]`` when ``lo > committed``, when ``lo`` is
        compacted away, and while a snapshot is pending or being persisted (the entries after
        it build on the state it installs)."""
        log = self.raft.raft_log
        hi = log.committed
        if hi < lo or lo < log.first_index() or log.has_next_or_in_progress_snapshot():
            return []
        return log.slice(lo, hi + 1, max_size)

    def progress(self) -> dict[int, ProgressStatus]:
        """The leader's view of replication to every member, itself included (match, next,
        state, is_learner, recent_active, ...), as a copy keyed by member id; ``{}`` unless
        this node is the leader (a non-leader's progress means nothing)."""
        return self.raft.trk.status() if self.raft.state == StateType.LEADER else {}
