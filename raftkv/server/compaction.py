"""Physical compaction: once a compaction is applied (the index already answers as compacted),
the backend's old revisions are deleted in batches of ``BATCH`` keys with a pause between, so
the loop keeps serving; a member that stopped mid-way resumes at start (etcd's
kvstore_compaction.go schedule). ``wait`` is for ``physical: true`` compactions.
"""

from __future__ import annotations

import asyncio
import time

import structlog

from raftkv.mvcc import KVStore

__all__ = ["PhysicalCompaction"]

log = structlog.get_logger("raftkv.server")

BATCH = 1000
PAUSE = 0.001  # between steps of ~1 ms each: other work gets the loop in between


class PhysicalCompaction:
    def __init__(self, kv: KVStore) -> None:
        self._kv = kv
        self._task: asyncio.Task[None] | None = None
        self._done = asyncio.Event()
        self._done.set()

    def start(self) -> None:
        if self._kv.compaction_pending:
            self.schedule()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def schedule(self) -> None:
        """A compaction was applied: delete what it dropped (one job at a time)."""
        self._done.clear()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        kv = self._kv
        t0 = time.monotonic()
        try:
            while kv.compact_step(BATCH):
                await asyncio.sleep(PAUSE)
        finally:
            self._done.set()
        log.info("finished_scheduled_compaction", took_ms=round((time.monotonic() - t0) * 1000))

    async def wait(self) -> None:
        await self._done.wait()
