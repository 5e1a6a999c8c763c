"""How long a backend commit holds the event loop: the server's apply pattern on one loop.

    python scripts/bench_backend_commit.py --mode sync       # commit_if_due() on the loop
    python scripts/bench_backend_commit.py --mode pipelined  # await commit_if_due_in_thread()
    python scripts/bench_backend_commit.py --rate 100000 --heap-keys 1000000  # big batches

One task applies "entries" as the server's applier does (each writes the consistent index to
``meta`` and one ~300-byte record at the next revision of ``key``), ``--rate`` per second in
1 ms ticks; a housekeeping task commits every 100 ms; a probe task measures how late a 1 ms
sleep wakes up (loop lag). Reported per commit: the time spent on the loop inside the commit
call (the synchronous steps of the coroutine, summed), the commit thread's CPU (process CPU
minus the loop thread's), the loop lag percentiles over the run, and the garbage collector's
longest pause (a collection stops every thread; ``--heap-keys`` keeps an MVCC index of that
many keys alive, as a member holds one, ``--heap-kind keyindex`` in the KeyIndex form every key
had before single-revision keys became tuples). ``--mode sync`` uses only the synchronous API,
so it also runs against an older tree (``PYTHONPATH=<tree>``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import struct
import tempfile
import threading
import time

from raftkv.backend import Backend

REV = struct.Struct(">QcQ")


class Timed:
    """Await a coroutine, summing the time of its synchronous steps (its time on the loop)."""

    def __init__(self, coro) -> None:
        self.coro = coro
        self.on_loop = 0.0

    def __await__(self):
        it = self.coro.__await__()
        value = None
        while True:
            t0 = time.perf_counter()
            try:
                y = it.send(value)
            except StopIteration as e:
                self.on_loop += time.perf_counter() - t0
                return e.value
            self.on_loop += time.perf_counter() - t0
            value = yield y


class GcPauses:
    """The longest pause of each collector generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.longest = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
            return
        g = info["generation"]
        self.count[g] += 1
        self.longest[g] = max(self.longest[g], time.perf_counter() - self._t0)


def make_heap(n: int, kind: str) -> object:
    """An MVCC index of ``n`` keys with one revision each."""
    from raftkv.mvcc.index import TreeIndex
    from raftkv.mvcc.key_index import KeyIndex

    index = TreeIndex()
    for i in range(n):
        key = b"/registry/pods/default/pod-%08d" % i
        if kind == "keyindex":
            ki = KeyIndex(key)
            ki.put((i + 2) << 32)
            index.insert(ki)
        else:
            index.put(key, (i + 2) << 32)
    return index


async def run(args: argparse.Namespace, path: str) -> dict:
    be = Backend.open(path, batch_interval=0.1, batch_limit=1 << 62)
    be.create_bucket(b"key")
    be.create_bucket(b"meta")
    be.commit()
    loop = asyncio.get_running_loop()
    stop = loop.time() + args.seconds
    on_loop: list[float] = []
    lags: list[float] = []
    value = os.urandom(args.value_size)

    async def commit_sync() -> bool:
        return be.commit_if_due()

    async def apply() -> None:
        index = rev = 0
        owed = 0.0
        while loop.time() < stop:
            owed += args.rate / 1000
            while owed >= 1:
                owed -= 1
                index += 1
                rev += 1
                be.put(b"meta", b"consistent_index", index.to_bytes(8, "big"))
                be.put(b"key", REV.pack(rev, b"_", 0), value)
            await asyncio.sleep(0.001)

    committing = False
    in_commit: list[float] = []  # lags of the probe wake-ups that overlapped a commit

    async def housekeeping() -> None:
        nonlocal committing
        while loop.time() < stop:
            await asyncio.sleep(0.1)
            pipelined = args.mode == "pipelined"
            t = Timed(be.commit_if_due_in_thread() if pipelined else commit_sync())
            committing = True
            try:
                if await t:
                    on_loop.append(t.on_loop)
            finally:
                committing = False

    held: list[float] = []  # of each lag, what the commit thread ran meanwhile (its CPU)
    commit_clock: list[int] = []

    def commit_cpu() -> float:
        if not commit_clock:
            names = ((t, t.name) for t in threading.enumerate())
            t = next((t for t, name in names if name.startswith("backend-commit")), None)
            if t is None or t.ident is None:
                return 0.0
            commit_clock.append(time.pthread_getcpuclockid(t.ident))
        return time.clock_gettime(commit_clock[0])

    async def probe() -> None:
        while loop.time() < stop:
            t0, c0 = time.perf_counter(), commit_cpu()
            during = committing
            await asyncio.sleep(0.001)
            lag = time.perf_counter() - t0 - 0.001
            lags.append(lag)
            if during or committing:
                in_commit.append(lag)
                # the loop waited for the GIL while the commit thread ran; a lag the commit
                # thread did not run through is the machine's (other processes), not ours
                held.append(min(lag, max(0.0, commit_cpu() - c0 - 0.001)))

    pauses = GcPauses()
    gc.callbacks.append(pauses)
    cpu0, loop_cpu0 = time.process_time(), time.thread_time()
    try:
        await asyncio.gather(apply(), housekeeping(), probe())
    finally:
        gc.callbacks.remove(pauses)
    other_cpu = (time.process_time() - cpu0) - (time.thread_time() - loop_cpu0)
    be.close()
    lags.sort()
    in_commit.sort()
    held.sort()
    on_loop.sort()
    return {
        "commits": len(on_loop),
        "on_loop_ms_median": statistics.median(on_loop) * 1e3,
        "on_loop_ms_p99": on_loop[int(len(on_loop) * 0.99)] * 1e3,
        "on_loop_ms_max": on_loop[-1] * 1e3,
        "thread_cpu_ms_per_commit": other_cpu / max(1, len(on_loop)) * 1e3,
        "lag_ms_p50": lags[len(lags) // 2] * 1e3,
        "lag_ms_p99": lags[int(len(lags) * 0.99)] * 1e3,
        "lag_ms_max": lags[-1] * 1e3,
        "lag_in_commit_ms_p50": in_commit[len(in_commit) // 2] * 1e3,
        "lag_in_commit_ms_p99": in_commit[int(len(in_commit) * 0.99)] * 1e3,
        "lag_behind_commit_thread_ms_p99": held[int(len(held) * 0.99)] * 1e3,
        "lag_behind_commit_thread_ms_max": held[-1] * 1e3,
        "gc_full_collections": pauses.count[2],
        "gc_pause_ms_max": max(pauses.longest) * 1e3,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--mode", choices=("sync", "pipelined"), default="pipelined")
    p.add_argument("--rate", type=float, default=5000, help="entries per second")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--value-size", type=int, default=300)
    p.add_argument("--dir", default=None, help="where the page file goes (default: a temp dir)")
    p.add_argument("--heap-keys", type=int, default=0, help="an MVCC index of N keys kept alive")
    p.add_argument("--heap-kind", choices=("index", "keyindex"), default="index")
    p.add_argument(
        "--no-breather",
        action="store_true",
        help="the commit thread keeps the GIL until forced to switch (as before backend.breathe)",
    )
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after building the heap")
    args = p.parse_args()
    if args.no_breather:
        from raftkv.backend import breathe

        breathe.Breather.tick = lambda self: None  # type: ignore[method-assign]
    heap = make_heap(args.heap_keys, args.heap_kind) if args.heap_keys else None
    if args.gc_freeze:
        gc.collect()
        gc.freeze()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        r = asyncio.run(run(args, os.path.join(d, "db")))
    del heap
    print(
        args.mode,
        " ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items()),
    )


if __name__ == "__main__":
    main()
