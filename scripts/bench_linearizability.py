#!/usr/bin/env python3
"""Time the linearizability checker (cluster/linearizability.py) on a large valid history.

Generates a linearizable-by-construction concurrent history of registers shaped like a long
chaos run (clients doing one operation at a time over a few keys, a share of writes with
unknown outcome, half of which never happened), checks it, and prints the CPU time (not wall
clock: the machine may be shared) with the history's size. Exits 1 if the verdict is wrong:
linearizable, as built, or not, with --stale-read (one read of a long-overwritten value added
at the end: the search has to rule out every order, and the violation is shrunk).

    python scripts/bench_linearizability.py                       # 100k ops, 8 keys, 16 clients
    python scripts/bench_linearizability.py --ops 200000 --clients 32 --unknown 0.05
    python scripts/bench_linearizability.py --stale-read
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.linearizability import Op, check, simulated_history


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ops", type=int, default=100_000)
    p.add_argument("--keys", type=int, default=8)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--unknown", type=float, default=0.02, help="share of writes without answer")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--stale-read", action="store_true", help="add a stale read: must FAIL")
    args = p.parse_args(argv)
    t = time.process_time()
    history = simulated_history(
        random.Random(args.seed),
        ops=args.ops,
        keys=args.keys,
        clients=args.clients,
        unknown=args.unknown,
        think=0.002,  # a client's next request follows its answer within 2 ms
        latency=0.01,  # 10 ms mean answer time
    )
    made = time.process_time() - t
    if args.stale_read:
        first = next(op for op in history if op.kind == "put")
        end = max(op.complete for op in history if op.complete is not None)
        history.append(Op(first.key, "get", end + 1, end + 2, output=first.value, client=-1))
    unknown = sum(op.unknown for op in history)
    print(
        f"history: {len(history)} ops ({unknown} unknown) on {args.keys} keys, "
        f"{args.clients} clients (generated in {made:.1f} s CPU)"
    )
    result = check(history, log=lambda s: print(f"  {s}"))
    print(result.summary())
    for k in result.violations:
        print(f"  minimal failing sub-history of {k.key!r}:")
        for op in k.minimal:
            print(f"    {op.describe()}")
    print(f"{len(history) / max(result.cpu_seconds, 1e-9):,.0f} ops/s CPU")
    return 0 if result.ok != args.stale_read else 1


if __name__ == "__main__":
    sys.exit(main())
