#!/usr/bin/env python3
"""Chaos test of a raftkv cluster: writes and reads through every member while members are
killed (-9) and restarted, paused, and isolated; then heal and check durability, agreement and
linearizability. Prints a one-line verdict; exits 1 on any violation.

    python scripts/chaos.py --duration 60                  # starts its own 3-member cluster
    python scripts/chaos.py --duration 600 --seed 7 --keep # a longer run, keep the data dir
    python -m cluster up && python scripts/chaos.py --cluster-dir .cluster --duration 120
    docker compose up -d && python scripts/chaos.py --compose --duration 300 \\
        --endpoints http://localhost:2379,http://localhost:22379,http://localhost:32379
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.chaos import run_chaos
from cluster.local import ClusterError, LocalCluster
from cluster.nemesis import ALL_FAULTS, FAULTS, ComposeTarget, LocalTarget


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=60, help="seconds of faults (default 60)")
    p.add_argument("--size", type=int, default=3, help="members of the local cluster")
    p.add_argument(
        "--faults",
        default=",".join(FAULTS),
        help=f"comma-separated, from {','.join(ALL_FAULTS)} or 'all' (default {','.join(FAULTS)})",
    )
    p.add_argument("--clients-per-member", type=int, default=2)
    p.add_argument("--keys", type=int, default=8)
    p.add_argument("--seed", type=int)
    p.add_argument("--base-dir", help="local cluster dir (default: a temporary dir)")
    p.add_argument("--keep", action="store_true", help="keep the local cluster's dir")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="member flag for the local cluster, e.g. snapshot-count=1000",
    )
    p.add_argument("--cluster-dir", help="attack a cluster started by `python -m cluster up`")
    p.add_argument("--compose", action="store_true", help="attack a docker compose cluster")
    p.add_argument("--endpoints", help="client URLs (with --compose), in --services order")
    p.add_argument("--services", default="m1,m2,m3", help="compose services (default m1,m2,m3)")
    p.add_argument("--compose-file", default="docker-compose.yml")
    p.add_argument("--project", default="raftkv", help="compose project name")
    p.add_argument("--history", help="write the recorded history here (JSON lines)")
    p.add_argument(
        "--serializable-reads",
        action="store_true",
        help="read with serializable=true (may be stale): a self-test, expect a FAIL",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only the verdict")
    return p.parse_args(argv)


async def amain(args: argparse.Namespace) -> int:
    t0 = time.monotonic()

    def log(msg: str) -> None:
        if not args.quiet:
            print(f"[{time.monotonic() - t0:6.1f}s] {msg}", flush=True)

    faults = ALL_FAULTS if args.faults == "all" else tuple(f for f in args.faults.split(",") if f)
    if unknown := set(faults) - set(ALL_FAULTS):
        print(f"unknown faults: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    common = dict(
        faults=faults,
        clients_per_member=args.clients_per_member,
        keys=args.keys,
        seed=args.seed,
        history_path=Path(args.history) if args.history else None,
        log=log,
        serializable_reads=args.serializable_reads,
    )
    if args.compose:
        if not args.endpoints:
            print("--compose needs --endpoints", file=sys.stderr)
            return 2
        target = ComposeTarget(
            args.endpoints.split(","),
            args.services.split(","),
            compose_file=args.compose_file,
            project=args.project,
        )
        result = await run_chaos(target, args.duration, **common)
    elif args.cluster_dir:
        c = LocalCluster.attach(args.cluster_dir)
        try:
            result = await run_chaos(LocalTarget(c), args.duration, **common)
        finally:
            await c.close_clients()
    else:
        settings = {}
        for pair in args.set:
            k, _, v = pair.partition("=")
            settings[k] = v
        base = Path(args.base_dir or tempfile.mkdtemp(prefix="raftkv-chaos-"))
        log(f"starting a {args.size}-member cluster in {base}")
        async with LocalCluster(args.size, base, **settings) as c:
            log(f"leader {(await c.wait_leader()).name}; endpoints {','.join(c.endpoints)}")
            result = await run_chaos(LocalTarget(c), args.duration, **common)
        if result.ok and not args.keep and not args.base_dir:
            import shutil

            shutil.rmtree(base, ignore_errors=True)
        elif not result.ok:
            log(f"cluster dir kept for inspection: {base}")
    if result.errors:
        log("client errors: " + ", ".join(f"{k} {n}" for k, n in sorted(result.errors.items())))
    print(result.verdict(), flush=True)
    return 0 if result.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    try:
        return asyncio.run(amain(args))
    except ClusterError as e:
        print(f"chaos FAIL: cluster error: {e}", flush=True)
        return 1
    except Exception as e:  # anything unexpected is a failed run, with a verdict line
        import traceback

        traceback.print_exc()
        print(f"chaos FAIL: {type(e).__name__}: {e}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
