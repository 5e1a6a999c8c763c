"""Child process for crash tests: commits seeded random batches until killed.

    python -m tests.backend.crash_child PATH SEED [ARM_AFTER [pipelined]]

Batch ``i`` is a pure function of (SEED, i) (see ``batch_ops``), and it also records ``i`` in
the ``meta`` bucket, so the parent can rebuild every committed state. After each commit the
child prints ``i`` on stdout (flushed). It resumes after the batch recorded in the file, so
the parent may kill and restart it on the same file again and again.

Failpoints come from ``RAFTKV_FAILPOINTS`` (armed at import by ``raftkv.failpoint``); with
``ARM_AFTER`` the child disarms them at start and re-arms them after that many commits, so a
crash hits a file with history rather than the first commit.

``pipelined``: each batch is committed with ``commit_async`` and the next batch is written
(and read back through the merged view) while it is in flight; batch ``i`` is reported once
its commit is done, before batch ``i + 1`` is frozen, so again the file holds the last
reported batch or the next one.
"""

from __future__ import annotations

import os
import random
import sys

from raftkv import failpoint
from raftkv.backend import Backend

BUCKETS = (b"key", b"lease")


def batch_ops(seed: int, i: int) -> list[tuple[bytes, bytes, bytes | None]]:
    """(bucket, key, value or None for delete) of batch ``i``."""
    rnd = random.Random(seed * 1_000_003 + i)
    ops: list[tuple[bytes, bytes, bytes | None]] = []
    for _ in range(rnd.choice((1, 50, 400, 2500))):
        bucket = BUCKETS[rnd.random() < 0.1]
        key = rnd.randrange(3000).to_bytes(4, "big")
        if rnd.random() < 0.25:
            ops.append((bucket, key, None))
        else:
            size = rnd.choice((0, 16, 250, 1500, 6000))
            ops.append((bucket, key, rnd.randbytes(size)))
    ops.append((b"meta", b"batch", i.to_bytes(8, "big")))
    return ops


def apply_ops(model: dict[bytes, dict[bytes, bytes]], ops) -> None:
    for bucket, key, value in ops:
        d = model.setdefault(bucket, {})
        if value is None:
            d.pop(key, None)
        else:
            d[key] = value


def state_after(seed: int, last: int) -> dict[bytes, dict[bytes, bytes]]:
    """The data after batches 1..last (0 = nothing committed)."""
    model: dict[bytes, dict[bytes, bytes]] = {b: {} for b in (*BUCKETS, b"meta")}
    for i in range(1, last + 1):
        apply_ops(model, batch_ops(seed, i))
    return model


def _armed_from_env() -> list[str]:
    spec = os.environ.get("RAFTKV_FAILPOINTS", "")
    return [s.partition("=")[0].strip() for s in spec.split(",") if s.strip()]


def main() -> None:
    path, seed = sys.argv[1], int(sys.argv[2])
    arm_after = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    pipelined = len(sys.argv) > 4 and sys.argv[4] == "pipelined"
    armed = _armed_from_env()
    if arm_after:
        for name in armed:
            failpoint.disarm(name)
    be = Backend.open(path, batch_limit=10**9)
    for b in (*BUCKETS, b"meta"):
        be.create_bucket(b)
    raw = be.get(b"meta", b"batch")
    i = int.from_bytes(raw, "big") if raw else 0
    if pipelined:
        run_pipelined(be, seed, i, arm_after, armed)
        return
    for done in range(1, 100_001):  # bounded, in case nobody kills us
        i += 1
        write_batch(be, seed, i)
        be.commit()
        sys.stdout.write(f"{i}\n")  # the parent reads this: batch i is durable
        sys.stdout.flush()
        if arm_after and done == arm_after:
            for name in armed:
                failpoint.arm(name, "crash")


def write_batch(be: Backend, seed: int, i: int) -> None:
    for bucket, key, value in batch_ops(seed, i):
        if value is None:
            be.delete(bucket, key)
        else:
            be.put(bucket, key, value)


def run_pipelined(be: Backend, seed: int, i: int, arm_after: int, armed: list[str]) -> None:
    fut = None
    for done in range(100_001):
        i += 1
        write_batch(be, seed, i)  # while batch i - 1 is being committed
        if be.get(b"meta", b"batch") != i.to_bytes(8, "big"):
            sys.exit(f"merged view lost batch {i}")
        if fut is not None:
            fut.result()
            sys.stdout.write(f"{i - 1}\n")  # batch i - 1 is durable
            sys.stdout.flush()
            if arm_after and done == arm_after:
                for name in armed:
                    failpoint.arm(name, "crash")  # the next commit to run is batch i's
        fut = be.commit_async()


if __name__ == "__main__":
    main()
