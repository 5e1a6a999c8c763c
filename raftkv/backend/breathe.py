"""Letting the event loop's thread in from a CPU-bound worker thread (commit, defragment copy).

A Python thread that computes without blocking keeps the GIL until the interpreter forces a
switch (``sys.getswitchinterval()``, 5 ms). An event loop thread releases the GIL at every poll
and must then wait up to that long to take it back, so a commit thread building pages puts up
to 5 ms of lag on each loop iteration while it runs (the convoy effect; measured with
scripts/bench_backend_commit.py). A worker that calls ``Breather.tick()`` between small steps
(a page built, a node merged) hands the GIL over after at most ``every`` seconds of its work:
an idle ``time.sleep(0)`` releases it, and a waiting thread takes it at once.
"""

from __future__ import annotations

import time

__all__ = ["Breather"]

EVERY = 0.0005


class Breather:
    __slots__ = ("_every", "_last")

    def __init__(self, every: float = EVERY) -> None:
        self._every = every
        self._last = time.perf_counter()

    def tick(self) -> None:
        """Release the GIL for a moment if ``every`` seconds of work went by since the last."""
        now = time.perf_counter()
        if now - self._last >= self._every:
            time.sleep(0)
            self._last = time.perf_counter()
