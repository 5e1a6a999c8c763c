"""Garbage-collector pauses: how long each collection held the member's thread.

A full (generation 2) collection walks every tracked object: with an MVCC index of millions
of keys that is tens to hundreds of milliseconds during which the event loop runs nothing,
and it shows as loop lag (``looplag``) with no code of ours to blame. ``GCPauseWatch`` times
every collection through ``gc.callbacks``: the largest pause since the last scrape is
exported on ``/metrics`` (``raftkv_gc_pause_max_seconds``, per generation), and a pause over
``LOG_OVER`` is logged (``gc_pause``) with its generation, what it collected and the CPU
time the thread spent in it (on a busy machine much of a long pause can be the OS running
something else).

Cost: two callbacks per collection (a clock read each); collections are rare next to
requests (``member._tune_gc``). Invariant: a process has one watch (``shared()``: the
collector is the process's, whatever number of members a test runs in it), installed while
at least one ``start`` has no matching ``stop``; nothing is logged once the interpreter is
shutting down.
"""

from __future__ import annotations

import gc
import sys
import time
from typing import Any

import structlog

__all__ = ["LOG_OVER", "GCPauseWatch", "shared"]

log = structlog.get_logger("raftkv.server")

LOG_OVER = 0.05  # seconds: a collection that long is logged


class GCPauseWatch:
    def __init__(self) -> None:
        self._began = 0.0
        self._began_cpu = 0.0
        self._max = [0.0, 0.0, 0.0]  # per generation, since take_max() last ran
        self.counts = [0, 0, 0]  # collections seen, per generation
        self._users = 0

    def start(self) -> None:
        self._users += 1
        if self._on_gc not in gc.callbacks:
            gc.callbacks.append(self._on_gc)

    def stop(self) -> None:
        self._users = max(self._users - 1, 0)
        if not self._users and self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            self._began_cpu = time.thread_time()
            return
        took = time.perf_counter() - self._began
        gen = info.get("generation", 2)
        self.counts[gen] += 1
        if took > self._max[gen]:
            self._max[gen] = took
        if took > LOG_OVER and not sys.is_finalizing():
            # (structlog allocates, but a callback's allocations never start a collection)
            log.warning(
                "gc_pause",
                generation=gen,
                took_ms=round(took * 1000),
                # (less than took_ms: the thread was preempted, or a finalizer let others run)
                cpu_ms=round((time.thread_time() - self._began_cpu) * 1000),
                collected=info.get("collected", 0),
            )

    def take_max(self) -> list[float]:
        """The longest pause (seconds) of each generation since the previous call, which
        this one resets."""
        m, self._max = self._max, [0.0, 0.0, 0.0]
        return m


_SHARED = GCPauseWatch()


def shared() -> GCPauseWatch:
    """The process's watch."""
    return _SHARED
