"""Benchmark the backend page file with MVCC's access pattern.

Sequential appends of revision keys (8-byte big-endian main rev, b"_", 8-byte sub rev) with
256-byte values in batches, then random point reads (cold and warm cache), range scans, file
size against data size, and defragment time.

    python scripts/bench_backend.py [--keys 1000000] [--batch 10000] [--value-size 256]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from raftkv.backend import Backend

_REV = struct.Struct(">QcQ")


def rev_key(main: int, sub: int = 0) -> bytes:
    return _REV.pack(main, b"_", sub)


def fmt_mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--reads", type=int, default=100_000)
    ap.add_argument("--ranges", type=int, default=2_000)
    ap.add_argument("--dir", default=None, help="directory for the db file (default: a temp dir)")
    args = ap.parse_args()

    tmp = tempfile.mkdtemp(prefix="bench_backend_", dir=args.dir)
    path = os.path.join(tmp, "db")
    rnd = random.Random(42)
    value = rnd.randbytes(args.value_size)
    n = args.keys
    try:
        b = Backend.open(path, batch_interval=3600, batch_limit=args.batch)
        b.create_bucket(b"key")
        b.commit()

        put_time = 0.0
        commit_time = 0.0
        commits = 0
        t_all = time.perf_counter()
        c_all = time.process_time()
        for start in range(1, n + 1, args.batch):
            stop = min(start + args.batch, n + 1)
            keys = [rev_key(i) for i in range(start, stop)]
            t0 = time.perf_counter()
            put = b.put
            for k in keys[:-1]:
                put(b"key", k, value)
            t1 = time.perf_counter()
            put(b"key", keys[-1], value)  # the batch_limit-th put commits (when it is one)
            if b.pending:
                b.commit()
            t2 = time.perf_counter()
            put_time += t1 - t0
            commit_time += t2 - t1
            commits += 1
        total = time.perf_counter() - t_all
        cpu = time.process_time() - c_all
        data = n * (17 + args.value_size)
        print(f"append {n:,} revision keys x {args.value_size} B in batches of {args.batch:,}")
        print(
            f"  total {total:.2f} s  = {n / total:,.0f} keys/s"
            f"  (put {put_time * 1e6 / n:.2f} us/key, commit {commit_time * 1e3 / commits:.1f}"
            f" ms/batch of {args.batch:,})"
        )
        print(
            f"  cpu {cpu:.2f} s = {cpu * 1e6 / n:.2f} us/key (wall includes fsync and other load)"
        )
        print(
            f"  file {fmt_mb(b.size)}, in use {fmt_mb(b.size_in_use)},"
            f" data {fmt_mb(data)} (file/data {b.size / data:.2f})"
        )
        b.close()

        b = Backend.open(path)
        ids = [rnd.randrange(1, n + 1) for _ in range(args.reads)]
        for label in ("cold", "warm"):
            t0 = time.perf_counter()
            c0 = time.process_time()
            get = b.get
            for i in ids:
                if get(b"key", rev_key(i)) is None:
                    raise SystemExit(f"missing key {i}")
            dt = time.perf_counter() - t0
            cpu = time.process_time() - c0
            print(
                f"random get ({label} cache) {args.reads:,}: {dt:.2f} s"
                f" = {args.reads / dt:,.0f} gets/s ({dt * 1e6 / args.reads:.1f} us/get,"
                f" cpu {cpu * 1e6 / args.reads:.1f} us/get)"
            )

        for width, reverse in ((10, False), (100, False), (1000, False), (100, True)):
            t0 = time.perf_counter()
            got = 0
            for _ in range(args.ranges):
                s = rnd.randrange(1, max(2, n - width))
                got += len(b.range(b"key", rev_key(s), rev_key(s + width), reverse=reverse))
            dt = time.perf_counter() - t0
            print(
                f"range of {width} keys{' (reverse)' if reverse else ''} x {args.ranges:,}:"
                f" {dt * 1e3 / args.ranges:.3f} ms/range, {got / dt:,.0f} keys/s"
            )
        t0 = time.perf_counter()
        full = sum(1 for _ in b.read_snapshot().items(b"key"))
        dt = time.perf_counter() - t0
        print(f"full scan of {full:,} keys (read snapshot): {dt:.2f} s = {full / dt:,.0f} keys/s")

        # overwrite-free churn: delete the older half (a compaction), then defragment
        t0 = time.perf_counter()
        for i in range(1, n // 2 + 1):
            b.delete(b"key", rev_key(i))
        b.commit()
        dt = time.perf_counter() - t0
        print(
            f"delete the older {n // 2:,} keys (compaction): {dt:.2f} s;"
            f" file {fmt_mb(b.size)}, in use {fmt_mb(b.size_in_use)}"
        )
        t0 = time.perf_counter()
        b.defragment()
        dt = time.perf_counter() - t0
        print(f"defragment: {dt:.2f} s; file {fmt_mb(b.size)}, in use {fmt_mb(b.size_in_use)}")
        t0 = time.perf_counter()
        problems = b.check()
        print(f"check(): {len(problems)} problems, {time.perf_counter() - t0:.2f} s")
        b.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
