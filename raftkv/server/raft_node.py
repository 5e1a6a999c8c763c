"""The asyncio driver of the Raft core (etcd's etcdserver/raft.go): ticks, proposals and peer
messages go in; each Ready is persisted, sent and applied, in the one correct order.

For each Ready (docs/ARCHITECTURE.md §2)::

    soft state   -> leader change hooks (lessor promote/demote, waiters)
    read states  -> the ReadIndex waiters
    messages     -> the transport at once: a leader replicates while its own fsync runs
    snapshot     -> snap file + WAL snapshot marker, MemoryStorage, db swap
    committed entries -> the applier (they are durable on a quorum: applied while this
                    Ready's own entries are being written, as etcd does)
    hard state, entries -> WAL.save, one fsync, in the WAL thread (``SyncThread``: the loop
                    keeps serving)
    MemoryStorage <- hard state, entries
    messages_after_append -> the transport (votes and append acks only once durable)
    advance

Everything that arrives while a Ready is being persisted (proposals, messages, ticks) is
stepped into the core at once and comes out together in the next Ready: under load one fsync
and one peer write cover many proposals. A peer's message is stepped in as it arrives, and
what it makes sendable (commit updates, forwarded proposals) is sent and what it commits is
applied right then (``_apply_early``), not a loop turn later. Proposals are queued and
stepped in as one multi-entry PROP per loop turn, so a burst becomes one append message per
follower.

The driver owns the core: every call into ``RawNode`` goes through a method here (proposals,
conf changes, reads, leadership transfer, views), so nothing else in the member can step the
core outside the loop's order. The ``ReadyHandler`` is given at ``start``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import structlog

from raftkv.failpoint import failpoint, register
from raftkv.raft import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ProgressStatus,
    ProposalDroppedError,
    RawNode,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)
from raftkv.server.syncer import SyncThread
from raftkv.snap import Snapshotter
from raftkv.wal import WAL, WalSnapshot

__all__ = ["RaftNode", "ReadyHandler"]

log = structlog.get_logger("raftkv.server")

register("raft.before_save", "raft.after_save", "raft.before_apply")

SLOW_FSYNC = 1.0
SLOW_APPLY = 0.1


class ReadyHandler(Protocol):
    def on_soft_state(self, ss: SoftState) -> None: ...
    def on_read_states(self, states: list[ReadState]) -> None: ...
    def send_snapshot(self, m: Message) -> None: ...
    def apply_snapshot(self, snap: Snapshot) -> None: ...
    def apply_entries(self, entries: list[Entry]) -> None: ...
    def after_ready(self) -> None: ...
    def on_dropped(self, req_ids: list[int]) -> None: ...


class RaftNode:
    def __init__(
        self,
        rn: RawNode,
        wal: WAL,
        snapshotter: Snapshotter,
        send: Callable[[list[Message]], None],
        heartbeat: float,
        fatal: Callable[[BaseException], None],
    ) -> None:
        self.rn = rn
        self.id = rn.id
        self.storage = rn.storage
        self.wal = wal
        self.snapshotter = snapshotter
        self._send = send
        self.heartbeat = heartbeat
        self._fatal = fatal
        self._handler: ReadyHandler | None = None
        self._wake = asyncio.Event()
        self._props: list[bytes] = []
        self._prop_ids: list[int] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._syncer: SyncThread | None = None  # runs the WAL saves (from ``start``)
        self._stopped = False
        self._saving = False  # the Ready loop is waiting for a WAL fsync
        # one writer of the WAL at a time: the Ready loop's saves, snapshot markers (Snapshots)
        self._wal_lock = asyncio.Lock()
        self._applied = rn.applied  # highest index handed to the applier
        self.stats = [0, 0, 0, 0]  # Readys, entries persisted, entries applied, fsyncs
        self.lead = NONE
        self.committed = rn.committed  # as of the last Ready's hard state

    # --- inputs (called from the event loop) ----------------------------------------------------

    def propose(self, req_id: int, data: bytes) -> None:
        """Queue a proposal; it is stepped in on the loop's next turn. If Raft refuses it, the
        handler's ``on_dropped`` gets its id."""
        self._props.append(data)
        self._prop_ids.append(req_id)
        if len(self._props) == 1:
            if self._saving:
                asyncio.get_running_loop().call_soon(self._flush_while_saving)
            else:
                self._wake.set()

    def step(self, m: Message) -> None:
        try:
            self.rn.step(m)
        except ProposalDroppedError:
            return
        except Exception as e:  # a message the core refuses is not a reason to stop
            log.warning("step_failed", type=m.type.name, peer=f"{m.from_:x}", error=repr(e))
            return
        # At once, not at the loop's next turn: what the step owes the network (a leader's
        # commit update, a forwarded proposal) and the entries it committed (a client is
        # waiting for their answers). Traced under one client, a put's commit otherwise
        # waited a whole loop turn twice over.
        self._send_pending()
        if self.rn.committed > self._applied:
            self._apply_early()
        self._wake.set()

    def read_index(self, ctx: bytes) -> None:
        """Raises ProposalDroppedError when no leader is known."""
        self.rn.read_index(ctx)
        self._wake.set()

    def report_unreachable(self, peer_id: int) -> None:
        self.rn.report_unreachable(peer_id)
        self._wake.set()

    def report_snapshot(self, peer_id: int, ok: bool) -> None:
        self.rn.report_snapshot(peer_id, ok)
        self._wake.set()

    def campaign(self) -> None:
        self.rn.campaign()
        self._wake.set()

    def propose_conf_change(self, cc: ConfChange) -> None:
        """Raises ProposalDroppedError when the core refuses it (no leader known)."""
        self.rn.propose_conf_change(cc)
        self._wake.set()

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """A committed conf change, handed back to the core (from the applier, in log order)."""
        return self.rn.apply_conf_change(cc)

    def transfer_leader(self, transferee: int) -> None:
        self.rn.transfer_leader(transferee)
        self._wake.set()

    # --- views ----------------------------------------------------------------------------------

    @property
    def term(self) -> int:
        return self.rn.term

    @property
    def is_leader(self) -> bool:
        return self.rn.is_leader

    @property
    def raft_applied(self) -> int:
        """What the core counts as applied (entries applied early are not in it yet)."""
        return self.rn.applied

    def progress(self) -> dict[int, ProgressStatus]:
        """The leader's view of every member's replication ({} on a follower)."""
        return self.rn.progress()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self, handler: ReadyHandler) -> None:
        self._handler = handler
        loop = asyncio.get_running_loop()
        self._syncer = SyncThread(f"wal-sync-{self.id:x}")
        self._tasks = [loop.create_task(self._run()), loop.create_task(self._ticker())]

    async def stop(self) -> None:
        readys, persisted, applied, fsyncs = self.stats
        log.info(
            "raft_loop_stats",
            readys=readys,
            entries_persisted=persisted,
            entries_applied=applied,
            fsyncs=fsyncs,
        )
        self._stopped = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._syncer is not None:
            await asyncio.to_thread(self._syncer.close)  # (a save in progress ends first)
            self._syncer = None

    async def _ticker(self) -> None:
        rn = self.rn
        while not self._stopped:
            await asyncio.sleep(self.heartbeat)
            rn.tick()
            if self._saving:
                self._send_pending()
            self._wake.set()

    # --- the Ready loop -------------------------------------------------------------------------

    def _flush_proposals(self) -> None:
        props, ids = self._props, self._prop_ids
        self._props, self._prop_ids = [], []
        try:
            self.rn.propose_many(props)  # one multi-entry PROP
        except ProposalDroppedError:
            assert self._handler is not None
            self._handler.on_dropped(ids)

    def _flush_while_saving(self) -> None:
        if self._props and self._saving:
            self._flush_proposals()
            self._send_pending()
        elif self._props:
            self._wake.set()

    def _send_pending(self) -> None:
        """Send what the core queued since the last Ready (appends of new proposals, commit
        updates, heartbeats): these messages may go before anything is persisted
        (``Ready.messages``' contract), and holding them until the fsync ends would add a
        whole fsync to every commit. Replication of the next batch thus overlaps this
        member's fsync of the current one."""
        msgs = self.rn.take_messages()
        if msgs:
            self._send_all(msgs)

    def _apply_early(self) -> None:
        """Apply entries that just became committed (durable on a quorum) as a peer's message
        commits them, instead of holding their clients until the loop's next Ready (after this
        fsync, if one runs) hands them out. Raft still hands them out later; the applier skips
        them by the consistent index. Stops before a conf change (those go through the Ready
        path, once, in order).

        The entries are read through the Raft log, never from MemoryStorage alone: after a
        conflicting append the log's unstable part shadows stored entries that were
        overwritten, and MemoryStorage still holds those until the next Ready is persisted
        (``RawNode.committed_entries_to_apply``; none while a snapshot is pending)."""
        ents = self.rn.committed_entries_to_apply(self._applied + 1)
        for i, e in enumerate(ents):
            if e.type == EntryType.CONF_CHANGE:
                ents = ents[:i]
                break
        if ents:
            assert self._handler is not None
            self._handler.apply_entries(ents)
            self._applied = ents[-1].index

    async def _run(self) -> None:
        try:
            await self._loop()
        except asyncio.CancelledError:
            raise
        except BaseException as e:
            log.critical("raft_loop_failed", error=repr(e), exc_info=True)
            self._fatal(e)

    async def _loop(self) -> None:
        rn = self.rn
        h = self._handler
        assert h is not None
        storage = self.storage
        wal = self.wal
        wake = self._wake
        stats = self.stats
        syncer = self._syncer
        assert syncer is not None
        while not self._stopped:
            if self._props:
                self._flush_proposals()
            rn.flush_appends()  # one append per follower for everything proposed meanwhile
            if not rn.has_ready():
                wake.clear()
                await wake.wait()
                continue
            rd = rn.ready()
            stats[0] += 1
            stats[1] += len(rd.entries)
            stats[2] += len(rd.committed_entries)
            if rd.soft_state is not None:
                self._on_soft_state(rd.soft_state)
                h.on_soft_state(rd.soft_state)
            if rd.hard_state is not None:
                self.committed = rd.hard_state.commit
            if rd.read_states:
                h.on_read_states(rd.read_states)
            if rd.messages:
                self._send_all(rd.messages)
            if rd.snapshot is not None:
                async with self._wal_lock:
                    await asyncio.to_thread(self._save_snapshot, rd.snapshot)
                storage.apply_snapshot(rd.snapshot)
                h.apply_snapshot(rd.snapshot)
                self._applied = max(self._applied, rd.snapshot.metadata.index)
            if rd.committed_entries:
                # Committed entries are durable on a quorum already: apply them while this
                # Ready's own entries are being made durable (as etcd does), so a client's
                # answer never waits for the next batch's fsync.
                failpoint("raft.before_apply")
                t0 = time.monotonic()
                h.apply_entries(rd.committed_entries)
                self._applied = max(self._applied, rd.committed_entries[-1].index)
                took = time.monotonic() - t0
                if took > SLOW_APPLY:
                    log.warning(
                        "apply_request_took_too_long",
                        took_ms=round(took * 1000),
                        entries=len(rd.committed_entries),
                    )
            if rd.hard_state is not None or rd.entries:
                failpoint("raft.before_save")
                async with self._wal_lock:  # (uncontended: taken without a pause)
                    if rd.must_sync:
                        stats[3] += 1
                        t0 = time.monotonic()
                        self._saving = True
                        try:
                            await syncer.run(wal.save, rd.hard_state, rd.entries, True)
                        finally:
                            self._saving = False
                        took = time.monotonic() - t0
                        if took > SLOW_FSYNC:
                            log.warning("slow_fdatasync", took_ms=round(took * 1000))
                    else:
                        wal.save(rd.hard_state, rd.entries, False)
                failpoint("raft.after_save")
            if rd.hard_state is not None:
                storage.set_hard_state(rd.hard_state)
            if rd.entries:
                storage.append(rd.entries)
            if rd.messages_after_append:
                self._send_all(rd.messages_after_append)
            rn.advance(rd)
            h.after_ready()
            # let requests that arrived meanwhile in before the next batch
            await asyncio.sleep(0)

    def _on_soft_state(self, ss: SoftState) -> None:
        if ss.raft_state in (StateType.PRE_CANDIDATE, StateType.CANDIDATE):
            log.info(
                "raft_campaign",
                member=f"{self.id:x}",
                state=ss.raft_state.name.lower(),
                term=self.rn.term,
            )
        if ss.lead != self.lead:
            if ss.lead == NONE:
                log.info("raft_lost_leader", member=f"{self.id:x}", term=self.rn.term)
            else:
                log.info(
                    "raft_elected_leader",
                    member=f"{self.id:x}",
                    leader=f"{ss.lead:x}",
                    term=self.rn.term,
                )
            self.lead = ss.lead

    def _send_all(self, msgs: list[Message]) -> None:
        snaps = [m for m in msgs if m.type == MessageType.SNAP]
        if snaps:
            assert self._handler is not None
            for m in snaps:
                self._handler.send_snapshot(m)
            msgs = [m for m in msgs if m.type != MessageType.SNAP]
        if msgs:
            self._send(msgs)

    async def mark_snapshot(self, snap: Snapshot, release_to: int) -> None:
        """A snapshot taken at ``snap``'s index: its marker into the WAL (fsynced, in a
        thread, never while the Ready loop writes) and the segments wholly before
        ``release_to`` released."""

        def mark() -> None:
            m = snap.metadata
            self.wal.save_snapshot(WalSnapshot(m.index, m.term))
            self.wal.release_to(release_to)

        async with self._wal_lock:
            await asyncio.to_thread(mark)

    def _save_snapshot(self, snap: Snapshot) -> None:
        m = snap.metadata
        self.snapshotter.save_snap(snap)
        self.wal.save_snapshot(WalSnapshot(m.index, m.term))
