"""Start-up time of a one-member cluster holding many keys: from process start to the first
serializable range it answers.

    python scripts/bench_startup.py                          # 1M keys, put in random order
    python scripts/bench_startup.py --order seq --runs 5
    python scripts/bench_startup.py --dir /tmp/st            # keep the data dir, reuse it
    python scripts/bench_startup.py --keys 100000 --etcd     # etcd 3.4 on the same load too
    python scripts/bench_startup.py --stop kill              # starts after a crash (rebuilds)

The data dir is made once: a member started fresh, ``--keys`` keys of ``--value-size`` bytes
put in txns of 128 puts (keys ``/registry/pods/default/pod-%08d``, in key order or shuffled:
the order decides how much sorting the index rebuild does), then stopped with SIGTERM. Under
``--dir`` it stays, and a later run with the same sizes reuses it (a measured start writes
only its member attributes, and a clean stop its index image); else it goes in a temp dir,
removed at the end.

Each run starts the member on that data dir and polls a serializable single-key range every
5 ms: the time to the first answer (wall, from just before the process is spawned), the CPU
the member used by then (/proc), and, from its log, the time its MVCC index rebuild took
(``mvcc_index_restored``: from the index image a clean stop leaves, or rebuilt from the
backend after ``--stop kill``). The machine is shared: the best run is the steadiest figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cluster.config import MEMBER_CMD, free_ports, member_flags  # noqa: E402

ETCD = "/opt/etcd-reference/usr/bin/etcd"
TXN_OPS = 128  # etcd's max txn ops
POLL = 0.005
KEY = b"/registry/pods/default/pod-%08d"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class Node:
    """One member (raftkv's or etcd's: the flags are the same) on a data dir."""

    def __init__(self, cmd: list[str], data_dir: Path, log: Path) -> None:
        self.data_dir = data_dir
        self.log = log
        cport, pport = free_ports(2)
        self.url = f"http://127.0.0.1:{cport}"
        peer = f"http://127.0.0.1:{pport}"
        self.argv = [*cmd, *member_flags("s1", str(data_dir), self.url, peer, peer, f"s1={peer}")]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(ROOT)
            )

    def stop(self, sig: int = signal.SIGTERM) -> None:
        p = self.proc
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def serves(self, body: bytes) -> bytes | None:
        req = urllib.request.Request(self.url + "/v3/kv/range", data=body)
        try:
            with urllib.request.urlopen(req, timeout=2) as r:
                return r.read()
        except OSError:
            return None


async def load(url: str, n: int, order: str, value_size: int) -> None:
    ids = list(range(n))
    if order == "random":
        random.Random(1).shuffle(ids)
    value = b64(os.urandom(value_size))
    txns = [ids[i : i + TXN_OPS] for i in range(0, n, TXN_OPS)]
    nxt = 0
    async with aiohttp.ClientSession() as session:

        async def worker() -> None:
            nonlocal nxt
            while nxt < len(txns):
                txn = txns[nxt]
                nxt += 1
                ops = [{"request_put": {"key": b64(KEY % i), "value": value}} for i in txn]
                body = json.dumps({"success": ops}).encode()
                async with session.post(url + "/v3/kv/txn", data=body) as r:
                    if r.status != 200:
                        raise SystemExit(f"load failed: {r.status} {await r.text()}")

        await asyncio.gather(*(worker() for _ in range(8)))


def wait_serving(node: Node, body: bytes, timeout: float = 300.0) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = node.serves(body)
        if got is not None:
            return got
        if node.proc is not None and node.proc.poll() is not None:
            raise SystemExit(f"the member exited ({node.proc.returncode}): see {node.log}")
        time.sleep(POLL)
    raise SystemExit(f"not serving after {timeout:.0f} s: see {node.log}")


def rebuild_ms(log: Path, after: int) -> tuple[int, str] | None:
    """``took_ms`` and ``source`` of the last ``mvcc_index_restored`` line written after offset
    ``after`` (source: "image", taken from the last clean stop, or "backend", rebuilt)."""
    with open(log, "rb") as f:
        f.seek(after)
        text = f.read().decode(errors="replace")
    took = None
    for line in text.splitlines():
        if "mvcc_index_restored" in line:
            try:
                ev = json.loads(line)
                took = ev["took_ms"], ev.get("source", "backend")
            except (ValueError, KeyError):
                continue
    return took


def measure(name: str, cmd: list[str], base: Path, args: argparse.Namespace) -> None:
    data = base / f"{name}-{args.keys}-{args.order}-{args.value_size}.data"
    log = base / f"{name}.log"
    probe = json.dumps({"key": b64(KEY % 0), "serializable": True}).encode()
    node = Node(cmd, data, log)
    if not data.exists():
        t = time.time()
        node.start()
        try:
            wait_serving(node, probe)
            asyncio.run(load(node.url, args.keys, args.order, args.value_size))
        finally:
            node.stop()
        print(f"{name}: loaded {args.keys:,} keys ({args.order}) in {time.time() - t:.1f} s")
    stop_sig = signal.SIGKILL if args.stop == "kill" else signal.SIGTERM
    if stop_sig == signal.SIGKILL and name == "raftkv":
        node.start()  # (takes the index image the load's clean stop left; the kill leaves none)
        try:
            wait_serving(node, probe)
        finally:
            node.stop(stop_sig)
    walls = []
    for i in range(args.runs):
        offset = log.stat().st_size if log.exists() else 0
        t0 = time.perf_counter()
        node.start()
        try:
            got = wait_serving(node, probe)
            wall = time.perf_counter() - t0
            cpu = node.cpu_seconds()
        finally:
            node.stop(stop_sig)
        if b'"kvs"' not in got:
            raise SystemExit(f"{name}: the first key is missing: {got[:200]!r}")
        walls.append(wall)
        took = rebuild_ms(log, offset)
        index = f", index from the {took[1]} in {took[0] / 1000:.2f} s" if took is not None else ""
        print(
            f"{name} run {i + 1}: serving a range {wall:.2f} s after start, cpu {cpu:.2f} s{index}"
        )
    print(
        f"{name}: {args.keys:,} keys ({args.order}): best {min(walls):.2f} s, "
        f"median {statistics.median(walls):.2f} s of {len(walls)} starts"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--keys", type=int, default=1_000_000)
    ap.add_argument("--order", choices=("seq", "random"), default="random")
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--etcd", action="store_true", help=f"also etcd 3.4 ({ETCD})")
    ap.add_argument(
        "--stop",
        choices=("term", "kill"),
        default="term",
        help="how each measured run ends: SIGTERM (a clean stop: raftkv's next start takes the "
        "index image it leaves) or SIGKILL (a crash: the next start rebuilds the index)",
    )
    ap.add_argument("--dir", default=None, help="where the data dirs stay (default: temp)")
    args = ap.parse_args()
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench_startup_"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        measure("raftkv", MEMBER_CMD, base, args)
        if args.etcd:
            measure("etcd", [ETCD, "--log-level=error", "--logger=zap"], base, args)
    finally:
        if not args.dir:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
