"""Child process for the crash tests: appends deterministic batches to a WAL until killed.

    python -m tests.wal.crash_child DIR SEED [--crash-at NAME:N] [--tear-at N] [--batches MAX]

Opens (or creates) the WAL in DIR at its newest valid snapshot marker, prints ``ready``, then
saves the batches of ``batches(SEED, ...)`` one by one, printing ``ok <n>`` (flushed) after
each ``save()`` returns. Every 15 batches it marks a snapshot 10 entries behind the commit
index and releases the segments before it. ``--crash-at NAME:N`` SIGKILLs itself at the Nth
hit of failpoint NAME; ``RAFTKV_FAILPOINTS`` arms points from the first hit. ``--tear-at N``
simulates a power loss at the Nth sync: the unsynced bytes of the last write are zeroed from a
random sector boundary on (as if those sectors never reached the disk), then SIGKILL. The
parent regenerates the same batches from the seed to know what may and must be on disk.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from collections.abc import Iterator

from raftkv import failpoint
from raftkv.raft.messages import Entry, HardState
from raftkv.wal import WAL, WalSnapshot
from raftkv.wal.decoder import SECTOR

SEGMENT_SIZE = 4096
METADATA = b"crash-test"
SNAP_EVERY = 15


def payload(term: int, index: int) -> bytes:
    size = (index * 7919 + term * 104729) % 700
    return (f"{term}/{index}|".encode() * (size // 4 + 1))[:size]


def newest_snapshot(dirpath: str) -> WalSnapshot:
    snaps = WAL.valid_snapshots(dirpath)
    return max(snaps, key=lambda s: s.index) if snaps else WalSnapshot(0, 0)


def start_point(snap: WalSnapshot, hs: HardState, ents: list[Entry]) -> tuple[int, int]:
    """(last index, term) the batch generator continues from after a read_all."""
    last = ents[-1].index if ents else snap.index
    term = max(hs.term, ents[-1].term if ents else snap.term)
    return last, term


def batches(seed: int, last: int, term: int) -> Iterator[tuple[HardState, list[Entry]]]:
    """Batches as a Raft leader with occasional elections would persist them: mostly appends,
    sometimes a new term rewriting up to 5 uncommitted entries."""
    rng = random.Random(seed)
    while True:
        if last > 0 and rng.random() < 0.1:
            term += 1
            start = max(1, last - rng.randrange(0, 6))
        else:
            term = max(term, 1)
            start = last + 1
        n = rng.randrange(1, 30)
        entries = [Entry(term, i, data=payload(term, i)) for i in range(start, start + n)]
        last = start + n - 1
        yield HardState(term, 1, start - 1), entries


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("seed", type=int)
    ap.add_argument("--crash-at", default="")
    ap.add_argument("--tear-at", type=int, default=0)
    ap.add_argument("--batches", type=int, default=1_000_000)
    args = ap.parse_args()
    wal: WAL | None = None

    if args.crash_at:
        name, _, nth = args.crash_at.partition(":")
        hits = [0]

        def crash_on_nth() -> None:
            hits[0] += 1
            if hits[0] >= int(nth):
                os.kill(os.getpid(), signal.SIGKILL)

        failpoint.arm(name, crash_on_nth)

    if args.tear_at:
        last_write: list[tuple[str, int]] = []
        syncs = [0]
        rng = random.Random(args.seed)

        def note_write() -> None:
            assert wal is not None
            last_write[:] = [(wal.tail_path, wal.tail_offset)]

        def tear_then_crash() -> None:
            assert wal is not None
            syncs[0] += 1
            if syncs[0] < args.tear_at or not last_write:
                return
            path, start = last_write[0]
            if path == wal.tail_path and wal.tail_offset > start:
                end = wal.tail_offset
                bounds = list(range((start // SECTOR + 1) * SECTOR, end, SECTOR))
                cut = rng.choice(bounds) if bounds else start
                with open(path, "r+b") as f:
                    f.seek(cut)
                    f.write(bytes(end - cut))
            os.kill(os.getpid(), signal.SIGKILL)

        failpoint.arm("wal.before_write", note_write)
        failpoint.arm("wal.before_sync", tear_then_crash)

    if WAL.exists(args.dir):
        snap = newest_snapshot(args.dir)
        wal = WAL.open(args.dir, snap, segment_size=SEGMENT_SIZE, max_wals=2)
        _, hs, ents = wal.read_all()
    else:
        snap, hs, ents = WalSnapshot(0, 0), HardState(), []
        wal = WAL.create(args.dir, METADATA, segment_size=SEGMENT_SIZE, max_wals=2)
    terms = {e.index: e.term for e in ents}
    last, term = start_point(snap, hs, ents)
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    for n, (state, entries) in enumerate(batches(args.seed, last, term)):
        if n >= args.batches:
            break
        wal.save(state, entries, must_sync=True)
        terms.update((e.index, e.term) for e in entries)
        out.write(f"ok {n}\n")
        out.flush()
        if n % SNAP_EVERY == SNAP_EVERY - 1:
            idx = state.commit - 10
            if idx > snap.index:
                snap = WalSnapshot(idx, terms[idx])
                wal.save_snapshot(snap)
                wal.release_to(idx)
    wal.close()


if __name__ == "__main__":
    main()
