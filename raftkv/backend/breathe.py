"""Letting the event loop's thread in from a CPU-bound worker thread (commit, defragment copy).

A Python thread that computes without blocking keeps the GIL until the interpreter forces a
switch (``sys.getswitchinterval()``, 5 ms). An event loop thread releases the GIL at every poll
and must then wait up to that long to take it back, so a commit thread building pages puts up
to 5 ms of lag on each loop iteration while it runs (the convoy effect; measured with
scripts/bench_backend_commit.py). A worker that calls ``Breather.tick()`` between small steps
(a page built, a slice of changes merged) hands the GIL over after at most ``every`` seconds
of its work, by sleeping ``PAUSE``.
"""

from __future__ import annotations

import time

__all__ = ["Breather"]

EVERY = 0.0005
# Off the GIL this long: a release by sleep(0) lets the releasing thread take the GIL right
# back before the waiting thread has even woken up; 50 us (plus the kernel's timer slack) is
# enough for it to wake and take its turn, and costs the worker ~15% of its wall time.
PAUSE = 0.00005


class Breather:
    __slots__ = ("_every", "_last")

    def __init__(self, every: float = EVERY) -> None:
        self._every = every
        self._last = time.perf_counter()

    def tick(self) -> None:
        """Release the GIL for a moment if ``every`` seconds of work went by since the last."""
        now = time.perf_counter()
        if now - self._last >= self._every:
            time.sleep(PAUSE)
            self._last = time.perf_counter()
