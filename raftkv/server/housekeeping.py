"""Background jobs of a member, each off the request path:

- every 100 ms: commit the backend batch when due (in the backend's commit thread), move
  unsynced watchers forward;
- every 50 ms: fail proposals whose request timeout passed;
- every 10 minutes: progress notifications to watchers created with progress_notify;
- every 500 ms on the leader: propose revokes of expired leases and lease checkpoints
  (expiry is decided by the leader only, and carried out through Raft);
- physical compaction in batches after a compaction was applied;
- publishing this member's name and client URLs through Raft after start (etcd's publish),
  retried until it is applied;
- raising the NOSPACE alarm (through Raft) when the backend exceeds its quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

import structlog

from raftkv.errors import EtcdError
from raftkv.pb import rpc
from raftkv.server.tasks import spawn

if TYPE_CHECKING:
    from raftkv.server.etcdserver import EtcdServer

__all__ = ["Housekeeping"]

log = structlog.get_logger("raftkv.server")

COMMIT_INTERVAL = 0.1
LEASE_INTERVAL = 0.5
COMPACTION_BATCH = 1000
COMPACTION_PAUSE = 0.01
WAITER_SWEEP = 0.05
PROGRESS_NOTIFY_INTERVAL = 600.0


class Housekeeping:
    def __init__(self, server: EtcdServer) -> None:
        self.s = server
        self._tasks: list[asyncio.Task[None]] = []
        self._compaction: asyncio.Task[None] | None = None
        self._compaction_done = asyncio.Event()
        self._compaction_done.set()
        self._nospace_pending = False

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._guard(self._commit_and_sync, "commit_and_sync")),
            loop.create_task(self._guard(self._leases, "leases")),
            loop.create_task(self._guard(self._publish, "publish")),
            loop.create_task(self._guard(self._expire_waiters, "expire_waiters")),
            loop.create_task(self._guard(self._progress_notify, "progress_notify")),
        ]
        if self.s.kv.compaction_pending:
            self.schedule_compaction()

    async def stop(self) -> None:
        tasks = list(self._tasks)
        if self._compaction is not None:
            tasks.append(self._compaction)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _guard(self, fn, name: str) -> None:
        while True:
            try:
                await fn()
                return
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.error("background_job_failed", job=name, error=repr(e), exc_info=True)
                await asyncio.sleep(1.0)

    # --- commits and watchers -----------------------------------------------------------------

    async def _commit_and_sync(self) -> None:
        s = self.s
        while True:
            await asyncio.sleep(COMMIT_INTERVAL)
            # the batch is frozen here, between applied entries; its pages and fsyncs are
            # written by the backend's commit thread while the loop goes on
            await s.backend.commit_if_due_in_thread()
            more = s.kv.sync_watchers()
            while more:
                await asyncio.sleep(0)
                more = s.kv.sync_watchers()

    async def _expire_waiters(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self.s.wait
        while True:
            await asyncio.sleep(WAITER_SWEEP)
            wait.expire(loop.time())

    async def _progress_notify(self) -> None:
        """etcd's periodic progress notification (every 10 minutes) to watchers that asked."""
        while True:
            await asyncio.sleep(PROGRESS_NOTIFY_INTERVAL)
            for ws in list(self.s.watch_streams):
                ws.progress_notify()

    # --- leases (leader only) -----------------------------------------------------------------

    async def _leases(self) -> None:
        s = self.s
        inflight: set[int] = set()
        while True:
            await asyncio.sleep(LEASE_INTERVAL)
            if not s.is_leader() or not s.lessor.is_primary:
                continue
            now = time.monotonic()
            for lid in s.lessor.expired(now, limit=500):
                if lid in inflight:
                    continue
                inflight.add(lid)
                spawn(self._revoke(lid, inflight))
            cps = s.lessor.checkpoints_due(now)
            if cps:
                req = rpc.LeaseCheckpointRequest(
                    checkpoints=[rpc.LeaseCheckpoint(ID=i, remaining_TTL=r) for i, r in cps]
                )
                spawn(self._quiet(self.s._propose(lease_checkpoint=req)))

    async def _revoke(self, lid: int, inflight: set[int]) -> None:
        try:
            await self.s._propose(lease_revoke=rpc.LeaseRevokeRequest(ID=lid))
        except EtcdError:
            pass
        finally:
            inflight.discard(lid)

    async def _quiet(self, coro) -> None:
        with contextlib.suppress(EtcdError):
            await coro

    # --- compaction ---------------------------------------------------------------------------

    def schedule_compaction(self) -> None:
        self._compaction_done.clear()
        if self._compaction is None or self._compaction.done():
            self._compaction = asyncio.get_running_loop().create_task(self._compact())

    async def _compact(self) -> None:
        kv = self.s.kv
        t0 = time.monotonic()
        try:
            while kv.compact_step(COMPACTION_BATCH):
                await asyncio.sleep(COMPACTION_PAUSE)
        finally:
            self._compaction_done.set()
        log.info("finished_scheduled_compaction", took_ms=round((time.monotonic() - t0) * 1000))

    async def wait_compaction(self) -> None:
        await self._compaction_done.wait()

    # --- publish ------------------------------------------------------------------------------

    async def _publish(self) -> None:
        s = self.s
        attrs = rpc.Member(ID=s.member_id, name=s.name, clientURLs=list(s.client_urls))
        while True:
            try:
                await s._propose(member_attributes=attrs)
                log.info("published_member_attributes", name=s.name, urls=s.client_urls)
                return
            except EtcdError as e:
                log.warning("publish_failed", error=e.message)
                await asyncio.sleep(0.5)

    # --- quota --------------------------------------------------------------------------------

    def raise_nospace(self) -> None:
        s = self.s
        if self._nospace_pending or s.applier.nospace:
            return
        self._nospace_pending = True

        async def activate() -> None:
            try:
                await s._propose(
                    alarm=rpc.AlarmRequest(
                        action=rpc.AlarmAction.ACTIVATE,
                        memberID=s.member_id,
                        alarm=rpc.AlarmType.NOSPACE,
                    )
                )
            except EtcdError:
                pass
            finally:
                self._nospace_pending = False

        spawn(activate())
