"""SyncThread: the Ready loop's WAL saves in their own thread: results and errors reach the
loop, jobs run in order, a cancelled wait drops the result, close lets a save finish."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from raftkv.server.syncer import SyncThread


async def test_results_errors_and_order() -> None:
    s = SyncThread("test-sync")
    try:
        ran: list[int] = []

        def job(i: int) -> int:
            ran.append(i)
            return i * 2

        futs = [s.run(job, i) for i in range(20)]
        assert await asyncio.gather(*futs) == [i * 2 for i in range(20)]
        assert ran == list(range(20))

        def boom() -> None:
            raise OSError("disk gone")

        with pytest.raises(OSError, match="disk gone"):
            await s.run(boom)
        assert await s.run(job, 21) == 42  # the worker survives a failed job
    finally:
        s.close()


async def test_a_cancelled_wait_drops_the_result_and_close_waits_for_the_job() -> None:
    s = SyncThread("test-sync")
    done = threading.Event()

    def slow() -> str:
        time.sleep(0.2)
        done.set()
        return "saved"

    fut = s.run(slow)
    fut.cancel()
    await asyncio.sleep(0)
    s.close()  # returns only once the save in progress has finished
    assert done.is_set()
    assert fut.cancelled()


async def test_the_worker_runs_the_job_in_its_own_thread() -> None:
    s = SyncThread("wal-sync-test")
    try:
        name = await s.run(lambda: threading.current_thread().name)
        assert name == "wal-sync-test"
    finally:
        s.close()
