#!/usr/bin/env python3
"""Chaos test of a raftkv cluster: writes and reads through every member while members are
killed (-9) and restarted, paused, and isolated; then heal and check durability, agreement and
linearizability. Prints a one-line verdict; exits 1 on any violation, 130 on Ctrl-C.

Every run is saved (--history, by default chaos-runs/<UTC time>/history.jsonl) with an HTML
report and a PNG of its timeline next to it; `python -m cluster report PATH` renders a saved
run again. While the faults run, a progress line on stderr says elapsed/total time, ops and
the fault in force (--quiet: only the verdict). Ctrl-C stops the run: the cluster it started is
stopped by PID and its dir deleted (--keep keeps it; a --base-dir that existed before keeps
everything but the members' data), an attached cluster is healed.

    python scripts/chaos.py --duration 60                  # starts its own 3-member cluster
    python scripts/chaos.py --duration 600 --seed 7 --keep # a longer run, keep the data dir
    python scripts/chaos.py --tls --auth                   # over mutual TLS, auth enabled
    python -m cluster up && python scripts/chaos.py --cluster-dir .cluster --duration 120
    docker compose up -d && python scripts/chaos.py --compose --duration 300 \\
        --endpoints http://localhost:2379,http://localhost:22379,http://localhost:32379
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cluster.chaos import run_chaos
from cluster.local import ClusterError, LocalCluster
from cluster.nemesis import ALL_FAULTS, FAULTS, ComposeTarget, LocalTarget
from cluster.process import kill_spawned

CHAOS_USER, CHAOS_PASSWORD = "root", "chaos"


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
    p.add_argument("--tls", action="store_true", help="the local cluster over mutual TLS")
    p.add_argument(
        "--auth",
        action="store_true",
        help="enable auth (a root user) first; every client and check authenticates",
    )
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
    p.add_argument(
        "--history",
        help="save the run here (JSON lines; default chaos-runs/<UTC time>/history.jsonl); "
        "the report goes next to it (.html, .png)",
    )
    p.add_argument(
        "--serializable-reads",
        action="store_true",
        help="read with serializable=true (may be stale): a self-test, expect a FAIL",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only the verdict")
    return p.parse_args(argv)


class Console:
    """Log lines on stdout; the progress line on stderr, rewritten in place on a terminal and
    every 5 s as a line of its own otherwise (a log file, a test)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.t0 = time.monotonic()
        self._shown = False
        self._last = -float("inf")

    def log(self, msg: str) -> None:
        if self.quiet:
            return
        self.clear()
        print(f"[{time.monotonic() - self.t0:6.1f}s] {msg}", flush=True)

    def progress(self, line: str) -> None:
        if self.quiet:
            return
        if self.tty:
            sys.stderr.write("\r\033[K" + line)
            self._shown = True
        elif time.monotonic() - self._last >= 5:
            sys.stderr.write(f"progress: {line}\n")
            self._last = time.monotonic()
        sys.stderr.flush()

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False


@dataclass
class Owned:
    """The dir of the local cluster this run started, and whether this run created it."""

    base: Path | None = None
    created: bool = False

    def remove(self) -> None:
        if self.base is None:
            return
        # a --base-dir that was there before may hold other things: only the members' data
        shutil.rmtree(self.base if self.created else self.base / "data", ignore_errors=True)


async def amain(args: argparse.Namespace, owned: Owned, console: Console) -> int:
    log = console.log

    faults = ALL_FAULTS if args.faults == "all" else tuple(f for f in args.faults.split(",") if f)
    if unknown := set(faults) - set(ALL_FAULTS):
        print(f"unknown faults: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    common = dict(
        faults=faults,
        clients_per_member=args.clients_per_member,
        keys=args.keys,
        seed=args.seed,
        history_path=Path(args.history or _default_history()),
        log=log,
        progress=console.progress,
        serializable_reads=args.serializable_reads,
        user=(CHAOS_USER, CHAOS_PASSWORD) if args.auth else None,
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
        owned.created = not (args.base_dir and Path(args.base_dir).exists())
        owned.base = Path(args.base_dir or tempfile.mkdtemp(prefix="raftkv-chaos-")).resolve()
        log(f"starting a {args.size}-member cluster in {owned.base}")
        async with LocalCluster(args.size, owned.base, tls=args.tls, **settings) as c:
            log(f"leader {(await c.wait_leader()).name}; endpoints {','.join(c.endpoints)}")
            result = await run_chaos(LocalTarget(c), args.duration, **common)
        if result.ok and not args.keep and not args.base_dir:
            owned.remove()
        elif not result.ok:
            log(f"cluster dir kept for inspection: {owned.base}")
    if result.errors:
        log("client errors: " + ", ".join(f"{k} {n}" for k, n in sorted(result.errors.items())))
    console.clear()
    print(result.verdict(), flush=True)
    return 0 if result.ok else 1


def _default_history() -> Path:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    return Path("chaos-runs") / stamp / "history.jsonl"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    owned, console = Owned(), Console(args.quiet)
    try:
        return asyncio.run(amain(args, owned, console))
    except KeyboardInterrupt:
        # asyncio.run cancelled the run: `async with LocalCluster` stopped the members, and the
        # run healed an attached cluster. A second Ctrl-C may have cut that short: kill what is
        # left before deleting the dir it writes to.
        kill_spawned()
        console.clear()
        if not args.keep:
            owned.remove()
        where = f"; removed {owned.base}" if owned.base and not args.keep else ""
        print(f"chaos interrupted: stopped every process it started{where}", file=sys.stderr)
        return 130
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
