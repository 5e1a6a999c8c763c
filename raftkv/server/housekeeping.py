"""Background jobs of a member, each off the request path:

- every 100 ms: commit the backend batch when due (in the backend's commit thread), move
  unsynced watchers forward;
- every 50 ms: fail proposals whose request timeout passed;
- every 10 minutes: progress notifications to watchers created with progress_notify;
- every 500 ms on the leader: propose revokes of expired leases and lease checkpoints
  (expiry is decided by the leader only, and carried out through Raft);
- publishing this member's name and client URLs through Raft after start (etcd's publish),
  retried until it is applied;
- raising the NOSPACE alarm (through Raft) when the backend exceeds its quota, before a
  request is proposed or when one is applied over the quota.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, Protocol

import structlog

from raftkv.backend import Backend
from raftkv.errors import EtcdError
from raftkv.lease import Lessor
from raftkv.mvcc import KVStore
from raftkv.pb import rpc
from raftkv.server.alarms import Alarms
from raftkv.server.tasks import spawn
from raftkv.server.wait import Wait

__all__ = ["Housekeeping", "Propose"]

log = structlog.get_logger("raftkv.server")

COMMIT_INTERVAL = 0.1
LEASE_INTERVAL = 0.5
WAITER_SWEEP = 0.05
PROGRESS_NOTIFY_INTERVAL = 600.0


class Propose(Protocol):
    """Propose one internal request (``InternalRaftRequest`` fields) through Raft."""

    def __call__(self, **fields: Any) -> Awaitable[Any]: ...


class ProgressNotifiable(Protocol):
    def progress_notify(self) -> None: ...


class Housekeeping:
    def __init__(
        self,
        *,
        backend: Backend,
        kv: KVStore,
        lessor: Lessor,
        alarms: Alarms,
        wait: Wait,
        propose: Propose,
        is_leader: Callable[[], bool],
        watch_streams: Callable[[], Iterable[ProgressNotifiable]],
        attributes: rpc.Member,
    ) -> None:
        self._backend = backend
        self._kv = kv
        self._lessor = lessor
        self._alarms = alarms
        self._wait = wait
        self._propose = propose
        self._is_leader = is_leader
        self._watch_streams = watch_streams
        self._attributes = attributes
        self._tasks: list[asyncio.Task[None]] = []
        self._nospace_pending = False
        self._after_nospace: list[Callable[[], None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._guard(self._commit_and_sync, "commit_and_sync")),
            loop.create_task(self._guard(self._leases, "leases")),
            loop.create_task(self._guard(self._publish, "publish")),
            loop.create_task(self._guard(self._expire_waiters, "expire_waiters")),
            loop.create_task(self._guard(self._progress_notify, "progress_notify")),
        ]

    async def stop(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _guard(self, fn: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
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
        kv = self._kv
        while True:
            await asyncio.sleep(COMMIT_INTERVAL)
            # the batch is frozen here, between applied entries; its pages and fsyncs are
            # written by the backend's commit thread while the loop goes on
            await self._backend.commit_if_due_in_thread()
            more = kv.sync_watchers()
            while more:
                await asyncio.sleep(0)
                more = kv.sync_watchers()

    async def _expire_waiters(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._wait
        while True:
            await asyncio.sleep(WAITER_SWEEP)
            wait.expire(loop.time())

    async def _progress_notify(self) -> None:
        """etcd's periodic progress notification (every 10 minutes) to watchers that asked."""
        while True:
            await asyncio.sleep(PROGRESS_NOTIFY_INTERVAL)
            for ws in list(self._watch_streams()):
                ws.progress_notify()

    # --- leases (leader only) -----------------------------------------------------------------

    async def _leases(self) -> None:
        lessor = self._lessor
        inflight: set[int] = set()
        while True:
            await asyncio.sleep(LEASE_INTERVAL)
            if not self._is_leader() or not lessor.is_primary:
                continue
            now = time.monotonic()
            for lid in lessor.expired(now, limit=500):
                if lid in inflight:
                    continue
                inflight.add(lid)
                spawn(self._revoke(lid, inflight))
            cps = lessor.checkpoints_due(now)
            if cps:
                req = rpc.LeaseCheckpointRequest(
                    checkpoints=[rpc.LeaseCheckpoint(ID=i, remaining_TTL=r) for i, r in cps]
                )
                spawn(self._quiet(self._propose(lease_checkpoint=req)))

    async def _revoke(self, lid: int, inflight: set[int]) -> None:
        try:
            await self._propose(lease_revoke=rpc.LeaseRevokeRequest(ID=lid))
        except EtcdError:
            pass
        finally:
            inflight.discard(lid)

    async def _quiet(self, coro: Awaitable[Any]) -> None:
        with contextlib.suppress(EtcdError):
            await coro

    # --- publish ------------------------------------------------------------------------------

    async def _publish(self) -> None:
        attrs = self._attributes
        while True:
            try:
                await self._propose(member_attributes=attrs)
                log.info("published_member_attributes", name=attrs.name, urls=attrs.clientURLs)
                return
            except EtcdError as e:
                log.warning("publish_failed", error=e.message)
                await asyncio.sleep(0.5)

    # --- quota --------------------------------------------------------------------------------

    def raise_nospace(self, then: Callable[[], None] | None = None) -> None:
        """Propose this member's NOSPACE alarm (once at a time, not while one is active);
        ``then`` runs once the proposal is done (etcd answers an apply that went over quota
        only after raising the alarm)."""
        if then is not None:
            self._after_nospace.append(then)
        if self._nospace_pending:
            return
        if self._alarms.nospace:
            self._run_after_nospace()
            return
        self._nospace_pending = True

        async def activate() -> None:
            try:
                await self._propose(
                    alarm=rpc.AlarmRequest(
                        action=rpc.AlarmAction.ACTIVATE,
                        memberID=self._attributes.ID,
                        alarm=rpc.AlarmType.NOSPACE,
                    )
                )
            except EtcdError:
                pass
            finally:
                self._nospace_pending = False
                self._run_after_nospace()

        spawn(activate())

    def _run_after_nospace(self) -> None:
        after, self._after_nospace = self._after_nospace, []
        for fn in after:
            fn()
