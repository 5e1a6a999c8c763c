"""Event-loop lag: how late the member's event loop runs a timer due every 10 ms.

Everything a member does runs on one event loop, so a stretch of work that holds it (a long
apply, a rebuild, a full garbage collection, the GIL held by a worker thread) delays every
request by as much. ``LoopLagProbe`` measures that delay directly: a timer callback asks to
run ``INTERVAL`` after it last ran, and when it runs, the time past that due moment
(``time.monotonic``) is the lag. A loop that holds for 200 ms shows a lag of ~190 ms at the
next wake.

Cost: one timer callback per 10 ms (a plain callback, no task or future), a 1 µs read of
the schedstat file, a deque append and a comparison; nothing is allocated per request.

Where a lag went: on a machine with fewer cores than busy threads, a late wake may be a
loop that ran (a long callback), a loop that waited for a CPU (the OS ran another process),
or a loop that waited for the GIL (a worker thread held it). For the largest lag the probe
also keeps how long, over that wake's interval, the loop thread ran (its CPU clock) and how
long it sat runnable in the kernel's run queue (``/proc/thread-self/schedstat``; both NaN
where that file is missing). The rest of the interval the thread slept: idle in the poll for
events, or waiting for the GIL.

Two readings, both exported on ``/metrics`` (``metrics.py``):

- ``recent()``: the largest lag of the wakes of the last ``WINDOW`` (1 s). A gauge read at
  any moment then shows a stall for a second after it, whatever the scrape interval, and is
  not moved by other scrapers.
- ``take_max()``: the largest lag since the previous ``take_max()`` call (then reset), with
  its split (``LagMax``), so that a scraper polling often (``scripts/bench_stalls.py``)
  misses no stall between two scrapes. With several scrapers, each sees the maximum since
  any scrape.

A stall that is still going on shows only once the loop runs again (there is nobody to
measure it meanwhile); the scrape that was waiting behind it may be answered before the
probe's wake, in which case it shows in the next reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections import deque
from typing import NamedTuple

__all__ = ["INTERVAL", "WINDOW", "LagMax", "LoopLagProbe"]

INTERVAL = 0.01  # seconds between wakes
WINDOW = 1.0  # seconds of wakes ``recent()`` looks at
_SCHEDSTAT = "/proc/thread-self/schedstat"
_NO_SPLIT = (math.nan, math.nan)


class LagMax(NamedTuple):
    """The largest lag since the last ``take_max``, and over that wake's interval (the
    expected ``INTERVAL`` plus the lag) the time the loop thread ran and the time it waited
    for a CPU, all in seconds."""

    lag: float
    ran: float
    queued: float


class LoopLagProbe:
    def __init__(self, interval: float = INTERVAL, window: float = WINDOW) -> None:
        self._interval = interval
        self._window = window
        # (wake time, lag) of the wakes of the last window, oldest first
        self._recent: deque[tuple[float, float]] = deque()
        self._max = 0.0  # the largest lag since take_max() last ran
        self._max_split = _NO_SPLIT  # (ran, queued) over that wake's interval
        self._due = 0.0
        self._handle: asyncio.TimerHandle | None = None
        self._sched_fd = -1  # the loop thread's schedstat, opened by start() on that thread
        self._sched = _NO_SPLIT  # (ran, queued) at the last schedule

    def start(self) -> None:
        """Start waking on the running loop (a no-op if started)."""
        if self._handle is None:
            with contextlib.suppress(OSError):
                self._sched_fd = os.open(_SCHEDSTAT, os.O_RDONLY)
            self._sched = self._read_sched()
            self._schedule(asyncio.get_running_loop())

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self._sched_fd >= 0:
            os.close(self._sched_fd)
            self._sched_fd = -1

    def _read_sched(self) -> tuple[float, float]:
        """(time run, time waited on a run queue) of the loop thread so far, in seconds."""
        if self._sched_fd < 0:
            return _NO_SPLIT
        # (the time run from thread_time: schedstat's is only brought up to date at a tick)
        return time.thread_time(), int(os.pread(self._sched_fd, 64, 0).split()[1]) * 1e-9

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        # (the due moment is on time.monotonic: uvloop's loop.time() is in whole milliseconds)
        self._due = time.monotonic() + self._interval
        self._handle = loop.call_later(self._interval, self._wake, loop)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        now = time.monotonic()
        # a timer may fire up to the loop's clock resolution early: that is no lag
        lag = max(now - self._due, 0.0)
        before, self._sched = self._sched, self._read_sched()
        recent = self._recent
        recent.append((now, lag))
        horizon = now - self._window
        while recent[0][0] < horizon:
            recent.popleft()
        if lag >= self._max:
            self._max = lag
            self._max_split = (self._sched[0] - before[0], self._sched[1] - before[1])
        self._schedule(loop)

    def recent(self) -> float:
        """The largest lag (seconds) of the wakes of the last window; 0 before any wake."""
        horizon = time.monotonic() - self._window
        return max((lag for t, lag in self._recent if t >= horizon), default=0.0)

    def take_max(self) -> LagMax:
        """The largest lag since the previous call, which this one resets, with its split."""
        m = LagMax(self._max, *self._max_split)
        self._max, self._max_split = 0.0, _NO_SPLIT
        return m
