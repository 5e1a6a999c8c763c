"""WAL throughput: batches of 1, 10, 100, 1000 entries of 256 bytes, one fsync per save.

    python scripts/bench_wal.py [--dir DIR] [--seconds S] [--value-size N]

Prints, per batch size, entries/s and fsyncs/s of ``WAL.save(hs, batch, must_sync=True)``,
next to the raw rate of the same disk (a loop of 4 KiB pwrite + fdatasync, and + fsync, into a
preallocated file) measured in the same run, plus the CPU cost of encoding alone (no I/O).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from raftkv.raft.messages import Entry, HardState
from raftkv.wal import WAL
from raftkv.wal.encoder import Encoder
from raftkv.wal.fileutil import preallocate


def raw_sync_rate(dirpath: str, seconds: float, sync) -> float:
    path = os.path.join(dirpath, "raw.bin")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    preallocate(fd, 64 << 20)
    block = b"\xab" * 4096
    n = off = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        os.pwrite(fd, block, off)
        sync(fd)
        off = (off + 4096) % (64 << 20)
        n += 1
    took = time.perf_counter() - t0
    os.close(fd)
    os.remove(path)
    return n / took


def wal_rate(dirpath: str, batch: int, value: bytes, seconds: float) -> tuple[float, float, float]:
    wdir = os.path.join(dirpath, f"wal-{batch}")
    w = WAL.create(wdir, b"bench")
    index = 0
    saves = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ents = [Entry(1, index + i, data=value) for i in range(1, batch + 1)]
        index += batch
        w.save(HardState(1, 1, index - batch), ents, must_sync=True)
        saves += 1
    took = time.perf_counter() - t0
    fsyncs = w.fsync_count
    w.close()
    shutil.rmtree(wdir)
    return index / took, fsyncs / took, saves / took


def encode_cost_us(value: bytes, n: int = 1000) -> float:
    """CPU per entry of encoding a 1000-entry batch (best of 20: the machine is shared)."""
    ents = [Entry(1, i, data=value) for i in range(1, n + 1)]
    best = float("inf")
    for _ in range(20):
        t0 = time.perf_counter()
        Encoder.entries(bytearray(), ents, 0)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=None, help="directory on the disk to measure (default: tmp)")
    ap.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    ap.add_argument("--value-size", type=int, default=256)
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="bench-wal-", dir=args.dir)
    value = os.urandom(args.value_size)
    try:
        print(f"disk under {base}; every row measures the raw rate right before the WAL")
        print(f"encode only: {encode_cost_us(value):.2f} us/entry ({args.value_size} B values)")
        print()
        head = f"{'batch':>6} {'entries/s':>11} {'saves/s':>9} {'fsyncs/s':>9}"
        print(f"{head} {'raw fdatasync/s':>16} {'raw fsync/s':>12} {'fsyncs vs raw':>14}")
        for batch in (1, 10, 100, 1000):
            raw = raw_sync_rate(base, args.seconds / 2, os.fdatasync)
            raw_fsync = raw_sync_rate(base, args.seconds / 2, os.fsync)
            eps, fps, sps = wal_rate(base, batch, value, args.seconds)
            print(
                f"{batch:6d} {eps:11.0f} {sps:9.0f} {fps:9.0f} {raw:16.0f} {raw_fsync:12.0f}"
                f" {fps / raw:14.0%}"
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
