"""Maintenance operations of one member (etcd's v3rpc/maintenance.go): defragment, snapshot,
move-leader. Alarms go through Raft and live in the applier; status and hashes in EtcdServer.

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
from typing import TYPE_CHECKING

import structlog

from raftkv import errors
from raftkv.backend.online_defrag import compact_copy, swap_in
from raftkv.pb import rpc

if TYPE_CHECKING:
    from raftkv.server.etcdserver import EtcdServer

__all__ = ["SNAPSHOT_CHUNK", "Maintenance"]

log = structlog.get_logger("raftkv.server")

SNAPSHOT_CHUNK = 32 * 1024  # etcd's snapshotSendBufferSize
DEFRAG_ATTEMPTS = 5


class Maintenance:
    def __init__(self, server: EtcdServer) -> None:
        self.s = server
        self._defrag_lock = asyncio.Lock()

    # --- defragment ---------------------------------------------------------------------------

    async def defragment(self) -> rpc.DefragmentResponse:
        async with self._defrag_lock:
            backend = self.s.backend
            t0 = time.monotonic()
            before = backend.size
            for attempt in range(1, DEFRAG_ATTEMPTS + 1):
                backend.commit()
                backend.hold_commits = True
                try:
                    txid = await asyncio.to_thread(compact_copy, backend)
                finally:
                    backend.hold_commits = False
                if backend is not self.s.backend:  # a snapshot was installed meanwhile
                    with contextlib.suppress(OSError):
                        os.unlink(backend.path + ".defrag")
                    backend = self.s.backend
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
        s = self.s
        s.backend.commit()
        fd, path = tempfile.mkstemp(prefix=".client-", suffix=".db", dir=s.snapshotter.dirpath)
        try:
            with os.fdopen(fd, "wb") as f:
                total = await asyncio.to_thread(s.backend.write_to, f)
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
        s = self.s
        if not s.is_leader():
            raise errors.ErrNotLeader
        target = req.targetID
        m = s.cluster.members.get(target)
        if m is None or m.is_learner:
            raise errors.ErrBadLeaderTransferee
        loop = asyncio.get_running_loop()
        deadline = loop.time() + s.request_timeout
        interval = s.cfg.heartbeat_interval / 1000.0
        if s.leader != target:
            s.node.rn.transfer_leader(target)
            s.node.wake()
        while s.leader != target:
            if loop.time() >= deadline:
                raise errors.ErrTimeoutLeaderTransfer
            await asyncio.sleep(interval)
        return rpc.MoveLeaderResponse()
