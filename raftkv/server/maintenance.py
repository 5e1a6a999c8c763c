"""Maintenance operations of one member (etcd's v3rpc/maintenance.go): defragment, snapshot,
move-leader. Alarms go through Raft (``alarms.py``); status and hashes are the facade's
(``etcdserver.py``).

- **defragment** is online: the compact copy is written in a worker thread from the last
  committed state while the member keeps applying (backend commits wait meanwhile); the swap
  that follows takes the event loop for a rename and a reopen only
  (``raftkv.backend.online_defrag``). One defragment at a time per member. etcd answers
  ``DefragmentResponse{}`` (no header).
- **snapshot** streams a consistent copy of the db (a pinned committed state, written to a
  temp file in a thread) as etcd does: ``SnapshotResponse`` messages of 32 KiB blobs with
  ``remaining_bytes`` counting down, then one more message whose blob is the sha256 of
  everything sent (``etcdctl snapshot restore`` checks it). No headers.
- **move leader**: only on the leader (``not leader`` otherwise); the transferee must be a
  voting member; waits until it leads, up to the request timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Protocol

import structlog

from raftkv import errors
from raftkv.backend import Backend
from raftkv.backend.online_defrag import compact_copy, swap_in
from raftkv.pb import rpc
from raftkv.server.membership import RaftCluster

__all__ = ["SNAPSHOT_CHUNK", "Maintenance"]

log = structlog.get_logger("raftkv.server")

SNAPSHOT_CHUNK = 32 * 1024  # etcd's snapshotSendBufferSize
DEFRAG_ATTEMPTS = 5


class LeaderTransfer(Protocol):
    """What moving leadership needs of the Raft driver."""

    lead: int

    @property
    def is_leader(self) -> bool: ...
    def transfer_leader(self, transferee: int) -> None: ...


class Maintenance:
    def __init__(
        self,
        *,
        backend: Backend,
        node: LeaderTransfer,
        cluster: RaftCluster,
        temp_dir: str,
        request_timeout: float,
        heartbeat: float,
    ) -> None:
        self._backend = backend
        self._node = node
        self._cluster = cluster
        self._temp_dir = temp_dir
        self._request_timeout = request_timeout
        self._heartbeat = heartbeat
        self._defrag_lock = asyncio.Lock()

    # --- defragment ---------------------------------------------------------------------------

    async def defragment(self) -> rpc.DefragmentResponse:
        async with self._defrag_lock:
            backend = self._backend
            t0 = time.monotonic()
            before = backend.size
            for attempt in range(1, DEFRAG_ATTEMPTS + 1):
                await backend.commit_in_thread()
                generation = backend.generation
                backend.hold_commits = True
                try:
                    txid = await asyncio.to_thread(compact_copy, backend)
                finally:
                    backend.hold_commits = False
                if backend.generation != generation:  # a snapshot was installed meanwhile
                    with contextlib.suppress(OSError):
                        os.unlink(backend.path + ".defrag")
                    continue
                if swap_in(backend, txid):
                    log.info(
                        "finished_defragment",
                        took_ms=round((time.monotonic() - t0) * 1000),
                        size_before=before,
                        size_after=backend.size,
                        attempts=attempt,
                    )
                    return rpc.DefragmentResponse()
            # every copy went stale (a sustained flood of writes): do it in one go
            backend.defragment()
            log.info("finished_defragment_blocking", took_ms=round((time.monotonic() - t0) * 1000))
            return rpc.DefragmentResponse()

    # --- snapshot -----------------------------------------------------------------------------

    async def snapshot(self) -> AsyncIterator[rpc.SnapshotResponse]:
        await self._backend.commit_in_thread()
        fd, path = tempfile.mkstemp(prefix=".client-", suffix=".db", dir=self._temp_dir)
        try:
            with os.fdopen(fd, "wb") as f:
                total = await asyncio.to_thread(self._backend.write_to, f)
            log.info("sending_database_snapshot_to_client", total_bytes=total)
            h = hashlib.sha256()
            sent = 0
            with open(path, "rb") as f:
                while sent < total:
                    blob = await asyncio.to_thread(f.read, SNAPSHOT_CHUNK)
                    if not blob:
                        raise OSError(f"snapshot copy {path} ended at {sent} of {total} bytes")
                    sent += len(blob)
                    h.update(blob)
                    yield rpc.SnapshotResponse(remaining_bytes=total - sent, blob=blob)
            yield rpc.SnapshotResponse(remaining_bytes=0, blob=h.digest())
            log.info("sent_database_snapshot_to_client", total_bytes=total)
        finally:
            with contextlib.suppress(OSError):
                os.remove(path)

    # --- move leader --------------------------------------------------------------------------

    async def move_leader(self, req: rpc.MoveLeaderRequest) -> rpc.MoveLeaderResponse:
        node = self._node
        if not node.is_leader:
            raise errors.ErrNotLeader
        target = req.targetID
        m = self._cluster.members.get(target)
        if m is None or m.is_learner:
            raise errors.ErrBadLeaderTransferee
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._request_timeout
        interval = self._heartbeat
        if node.lead != target:
            node.transfer_leader(target)
        while node.lead != target:
            if loop.time() >= deadline:
                raise errors.ErrTimeoutLeaderTransfer
            await asyncio.sleep(interval)
        return rpc.MoveLeaderResponse()
