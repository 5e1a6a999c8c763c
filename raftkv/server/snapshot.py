"""Snapshots: taking them every ``snapshot_count`` applied entries, sending the db to a lagging
follower, receiving one, and swapping it in (docs/ARCHITECTURE.md, "Snapshots"; etcd's
snapshot.go, and the snapshot parts of server.go).

Taking (off the loop's critical path, one at a time): commit the backend in its thread,
record a Raft snapshot at the applied index (term, ConfState) in MemoryStorage and on disk
(snap file + WAL marker, in threads; the marker never while the Ready loop writes the WAL),
release WAL segments before the snapshot, and compact MemoryStorage keeping
``catchup_entries`` for slow followers.

Sending: when the core wants to send a SNAP, the leader sends its *current* db (committed
first) labelled with its applied index and term (etcd's createMergedSnapshotMessage): the
follower then holds at least the state the label names. The commit, and the copy to a temp
file (from a pinned read state: the backend keeps changing), are made off the event loop; the
copy is streamed to the peer and the outcome reported to Raft.

Receiving: the db bytes are stored as ``snap/<index>.snap.db`` (temp + fsync + rename) before
the SNAP message is stepped into Raft; when Raft hands the snapshot back in a Ready, it is
saved, and the db is swapped in: the backend replaces its file with the image (the same
``Backend`` object, so every holder sees the new state), then ``on_installed`` rebuilds what
lives beside it (the consistent index, MVCC, leases, alarms, the member table, the peers);
the image's MVCC index was read in a thread as it was received (``prepare_index``), so the
install itself takes the loop for the renames and the small tables only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Protocol

import structlog

from raftkv.backend import Backend
from raftkv.mvcc.kvstore import PreparedIndex, prepare_index
from raftkv.raft import (
    CompactedError,
    ConfState,
    MemoryStorage,
    Message,
    Snapshot,
    SnapshotMetadata,
    SnapshotOutOfDateError,
)
from raftkv.server.applier import Applier
from raftkv.server.tasks import spawn
from raftkv.snap import Snapshotter
from raftkv.wal import WAL

__all__ = ["Snapshots"]

log = structlog.get_logger("raftkv.server")

CHUNK = 1 << 20


class SnapshotNode(Protocol):
    """What snapshots need of the Raft driver."""

    storage: MemoryStorage
    wal: WAL

    async def mark_snapshot(self, snap: Snapshot, release_to: int) -> None: ...

    @property
    def raft_applied(self) -> int: ...
    def report_snapshot(self, peer_id: int, ok: bool) -> None: ...
    def step(self, m: Message) -> None: ...


class Snapshots:
    def __init__(
        self,
        *,
        node: SnapshotNode,
        backend: Backend,
        snapshotter: Snapshotter,
        applier: Applier,
        send_snapshot: Callable[[Message, AsyncIterator[bytes]], Awaitable[None]],
        on_installed: Callable[[PreparedIndex | None], None],
        snapshot_count: int,
        catchup_entries: int,
        snap_index: int = 0,
    ) -> None:
        self._node = node
        self._backend = backend
        self._snapshotter = snapshotter
        self._applier = applier
        self._send_snapshot = send_snapshot
        self._on_installed = on_installed
        self.snapshot_count = snapshot_count
        self.catchup_entries = catchup_entries
        self.snap_index = snap_index  # index of the newest snapshot taken or installed
        self._taking = False  # a snapshot is being taken (one at a time)
        self._take_task: asyncio.Task[None] | None = None
        self._prepared: dict[int, PreparedIndex] = {}  # received images' MVCC index, by index
        self._sending: set[int] = set()

    # --- taking -------------------------------------------------------------------------------

    def maybe_trigger(self) -> None:
        applied = self._applier.applied_index
        if self._taking or applied - self.snap_index <= self.snapshot_count:
            return
        if applied > self._node.storage.last_index():
            return  # applied early, ahead of MemoryStorage: after a later Ready
        self._taking = True
        self._take_task = spawn(self._take_logged(applied, self._applier.conf_state))

    async def _take_logged(self, index: int, conf_state: ConfState) -> None:
        try:
            await self.take(index, conf_state)
        except Exception as e:  # the next trigger tries again; a full disk stops the member
            log.error("snapshot_failed", index=index, error=repr(e))

    async def stop(self) -> None:
        """Let a snapshot being taken finish (its WAL marker may be half way in a thread)."""
        if self._take_task is not None:
            await asyncio.gather(self._take_task, return_exceptions=True)

    async def take(self, index: int, conf_state: ConfState) -> None:
        """Take a snapshot at ``index`` (applied; ``conf_state`` as of it). The disk work runs
        off the loop: the backend commits in its thread first (so that the db holds every entry
        up to ``index`` before the WAL before it is released), the snap file and the WAL marker
        are written in threads."""
        node = self._node
        t0 = time.monotonic()
        try:
            await self._backend.commit_in_thread()
            storage = node.storage
            try:
                snap = storage.create_snapshot(index, conf_state, b"")
            except SnapshotOutOfDateError:
                return  # a newer snapshot was installed meanwhile
            await asyncio.to_thread(self._snapshotter.save_snap, snap)
            await node.mark_snapshot(snap, index)
            self.snap_index = max(self.snap_index, index)
            # never past what Raft has handed out itself (entries applied early are still to
            # come out of a Ready, from MemoryStorage)
            compact = min(index, node.raft_applied) - self.catchup_entries
            if compact > storage.first_index():
                with contextlib.suppress(CompactedError):
                    storage.compact(compact)
        finally:
            self._taking = False
        log.info(
            "saved_snapshot",
            index=index,
            term=snap.metadata.term,
            compacted_to=max(storage.first_index() - 1, 0),
            took_ms=round((time.monotonic() - t0) * 1000),
        )

    # --- sending ------------------------------------------------------------------------------

    def send(self, m: Message) -> None:
        """The core wants to send a snapshot to ``m.to``: make and stream it off the loop."""
        if m.to in self._sending:
            self._node.report_snapshot(m.to, False)
            return
        self._sending.add(m.to)
        spawn(self._send(m))

    async def _copy(self, m: Message) -> tuple[Message, str]:
        """The db as the snapshot to send, and the message labelled with what it holds: the
        label is read as the batch is frozen, so the committed state copied (in a thread, from
        a pinned read state) holds at least everything the label names (a later commit may add
        more: the follower skips those entries by its consistent index)."""
        applier = self._applier

        def label() -> SnapshotMetadata:
            return SnapshotMetadata(applier.conf_state, applier.applied_index, applier.applied_term)

        meta = await self._backend.commit_marked(label)
        fd, path = tempfile.mkstemp(prefix=".send-", suffix=".db", dir=self._snapshotter.dirpath)
        try:
            with os.fdopen(fd, "wb") as f:
                await asyncio.to_thread(self._backend.write_to, f)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(path)
            raise
        return Message(m.type, m.to, m.from_, term=m.term, snapshot=Snapshot(meta)), path

    async def _send(self, m: Message) -> None:
        try:
            m, path = await self._copy(m)
        except Exception as e:
            log.error("snapshot_copy_failed", error=repr(e))
            self._sending.discard(m.to)
            self._node.report_snapshot(m.to, False)
            return
        size = os.path.getsize(path)
        t0 = time.monotonic()
        log.info(
            "sending_snapshot",
            to=f"{m.to:x}",
            index=m.snapshot.metadata.index if m.snapshot else 0,
            bytes=size,
        )

        async def body() -> AsyncIterator[bytes]:
            for chunk in _file_chunks(path):
                yield chunk

        ok = True
        try:
            await self._send_snapshot(m, body())
        except Exception as e:
            ok = False
            log.warning("snapshot_send_failed", to=f"{m.to:x}", error=str(e))
        finally:
            self._sending.discard(m.to)
            with contextlib.suppress(OSError):
                os.remove(path)
        if ok:
            log.info("sent_snapshot", to=f"{m.to:x}", took_ms=round((time.monotonic() - t0) * 1000))
        self._node.report_snapshot(m.to, ok)

    # --- receiving ----------------------------------------------------------------------------

    async def receive(self, m: Message, body: AsyncIterator[bytes]) -> None:
        assert m.snapshot is not None
        index = m.snapshot.metadata.index
        snapshotter = self._snapshotter
        fd, tmp = tempfile.mkstemp(prefix=".recv-", suffix=".db", dir=snapshotter.dirpath)
        try:
            with os.fdopen(fd, "wb") as f:
                async for chunk in body:
                    f.write(chunk)
            await asyncio.to_thread(snapshotter.save_db, index, _file_chunks(tmp))
        finally:
            with contextlib.suppress(OSError):
                os.remove(tmp)
        try:  # the image's MVCC index, read off the loop now rather than at install
            self._prepared[index] = await asyncio.to_thread(
                prepare_index, snapshotter.db_path(index)
            )
        except Exception as e:  # the install reads it then
            log.warning("snapshot_index_not_prepared", index=index, error=repr(e))
        self._node.step(m)

    # --- installing (from the Ready loop, after the snapshot was persisted) -------------------

    def install(self, snap: Snapshot) -> None:
        index = snap.metadata.index
        if index <= self._applier.applied_index:
            return
        t0 = time.monotonic()
        snapshotter = self._snapshotter
        image = snapshotter.db_path(index)
        if not os.path.exists(image):
            raise RuntimeError(f"snapshot db image for index {index} is missing ({image})")
        prepared = self._prepared.pop(index, None)
        self._prepared.clear()  # (images of older snapshots will not be installed)
        self._backend.replace_file(lambda: snapshotter.install_db(index))
        self._on_installed(prepared)
        self._applier.restore(index, snap.metadata.term, snap.metadata.conf_state)
        self.snap_index = index
        log.info(
            "applied_snapshot",
            index=index,
            term=snap.metadata.term,
            took_ms=round((time.monotonic() - t0) * 1000),
        )


def _file_chunks(path: str) -> Iterator[bytes]:
    """The file at ``path`` in ``CHUNK``-sized pieces, read as they are asked for."""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
