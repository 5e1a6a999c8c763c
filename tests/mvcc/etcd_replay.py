"""Replay the API's recorded etcd 3.4 exchanges (tests/api/golden) against the real KV store.

``MvccServer`` puts ``KVStore`` + ``Lessor`` behind the interface the API calls (what the
server's EtcdServer does, minus Raft), so the recorded replies of a real etcd check the store's
semantics end to end: revisions, counts, errors, txn responses, leases, watch streams.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from raftkv.backend import Backend
from raftkv.lease import Lessor
from raftkv.mvcc import KVStore
from raftkv.pb import rpc
from tests.api.fake_server import FakeServer


class _Stream:
    def __init__(self, server: MvccServer, inner) -> None:
        self._s = server
        self._inner = inner

    def create(self, req):
        return self._inner.create(req)

    def cancel(self, wid):
        return self._inner.cancel(wid)

    def request_progress(self):
        self._inner.request_progress()

    def drain(self):
        out = self._inner.drain()
        for r in out:
            r.header = self._s.header(r.header.revision)
        return out

    def close(self):
        self._inner.close()


class MvccServer(FakeServer):
    def __init__(self, path: str) -> None:
        super().__init__()
        self.backend = Backend.open(path)
        self.lessor = Lessor(self.backend, min_ttl=2)
        self.kv = KVStore(self.backend, self.lessor)
        self.lessor.promote(time.monotonic())
        self._sync_task: asyncio.Task | None = None
        self._next_lease = 7587867162542745000

    def header(self, rev: int | None = None) -> rpc.ResponseHeader:
        h = super().header(self.kv.current_revision if rev is None else rev)
        return h

    def _done(self, resp):
        resp.header = self.header(resp.header.revision if resp.header else None)
        return resp

    async def range(self, req):
        return self._done(self.kv.range(req))

    async def put(self, req):
        return self._done(self.kv.put(req))

    async def delete_range(self, req):
        return self._done(self.kv.delete_range(req))

    async def txn(self, req):
        return self._done(self.kv.txn(req))

    async def compact(self, req):
        resp = self.kv.compact(req.revision)
        while self.kv.compact_step():
            pass
        return self._done(resp)

    async def lease_grant(self, req):
        lid = req.ID
        if not lid:
            lid = self._next_lease
            self._next_lease += 1
        return self._done(self.lessor.grant(lid, req.TTL, time.monotonic()))

    async def lease_revoke(self, req):
        return self._done(self.kv.lease_revoke(req.ID))

    async def lease_renew(self, req):
        ttl = self.lessor.renew(req.ID, time.monotonic())
        return rpc.LeaseKeepAliveResponse(header=self.header(), ID=req.ID, TTL=ttl)

    async def lease_time_to_live(self, req):
        return self._done(self.lessor.time_to_live(req.ID, req.keys, time.monotonic()))

    async def lease_leases(self, req):
        return self._done(self.lessor.leases())

    def new_watch_stream(self, on_ready: Callable[[], None]):
        if self._sync_task is None:
            self._sync_task = asyncio.get_running_loop().create_task(self._sync())
        return _Stream(self, self.kv.new_watch_stream(on_ready))

    async def stop(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            for lid in self.lessor.expired(time.monotonic()):  # the leader's expiry revokes
                self.kv.lease_revoke(lid)
            while self.kv.sync_watchers():
                await asyncio.sleep(0)
