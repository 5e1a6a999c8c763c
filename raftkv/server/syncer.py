"""The Ready loop's WAL saves in one dedicated thread, started without waiting for the GIL.

``asyncio.to_thread`` hands a save to the loop's default executor: the worker wakes, then
waits for the GIL until the event loop's current callbacks end. Traced on a 3-member cluster
under one client, that wait was 150-340 us of a ~1.4 ms put before the fsync even began, on
the leader and on the followers alike (the followers' fsync is on every commit's path). Here
the loop, having queued the save, blocks on a semaphore that the worker releases as soon as
it runs: the GIL passes to the worker at once, and the loop goes on when the worker enters
its first system call. The wait is bounded by ``HANDOVER_TIMEOUT`` (a machine too busy to
schedule the worker at once costs the loop no more than that).

Invariants: jobs run one at a time, in submission order (the Ready loop awaits each save
before the next); a job's result or exception reaches its future on the loop, and a
cancelled future's result is dropped (the save itself still completes: ``close`` waits for
it, so a member never stops halfway through a write).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["HANDOVER_TIMEOUT", "SyncThread"]

T = TypeVar("T")

HANDOVER_TIMEOUT = 0.002  # seconds the loop waits for the worker to start a job


def _settle(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.cancelled():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


class SyncThread:
    """One worker thread for blocking storage calls of the Ready loop."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._running = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``fn(*args)`` in the worker; the future resolves on this loop."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._jobs.put((loop, fut, fn, args))
        # (a timed-out handover leaves the permit for the next job, which then skips its wait)
        self._running.acquire(timeout=HANDOVER_TIMEOUT)
        return fut

    def close(self) -> None:
        """Finish the job in progress, then stop the worker."""
        self._jobs.put(None)
        self._thread.join()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            loop, fut, fn, args = job
            self._running.release()
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn(*args)
            except BaseException as e:  # (handed to the awaiting Ready loop, which decides)
                error = e
            with contextlib.suppress(RuntimeError):  # (a closed loop: nobody is waiting)
                loop.call_soon_threadsafe(_settle, fut, result, error)
