"""Stalls under disturbance: put latency and event-loop lag of a local 3-member cluster while
it compacts, re-seeds a wiped follower by snapshot, defragments online and expires leases.

    python scripts/bench_stalls.py                  # the issue's sizes: 1M revisions, 10k leases
    python scripts/bench_stalls.py --small          # a quick run that shows the script works

A cluster.LocalCluster of 3 members; ``--clients`` closed-loop clients (in ``--procs`` client
processes) put 256-byte values for the whole run through the JSON gateway, to the two members
that are not the snapshot victim. The run is cut into windows of ``--window`` seconds, each
with one disturbance started 1 s into it:

  baseline      nothing (the same run without a disturbance)
  compaction    compact at the current revision ``--revisions`` records preloaded before the
                run (txns of 128 puts over ``--keys`` keys: almost every record is compacted)
  snapshot      a follower is wiped and restarted: the leader re-seeds it by snapshot (the
                members run with ``--snapshot-count`` so the leader's log no longer reaches
                back to the start)
  defragment    an online defragment of the leader
  leases        ``--leases`` leases (one key each, granted before the run with TTLs that end
                together) expire 1 s into the window; the leader revokes them through Raft

Per window: puts done, client errors, put latency p50 / p99 / p99.9 / max, leader changes seen,
and the loop lag of each member, two ways:

  gauge        the member's own measure: the largest ``raftkv_event_loop_lag_max_seconds``
               (how late its 10 ms probe timer ran, the largest since the previous scrape)
               of the scrapes of its /metrics made during the window, every 100 ms from this
               process. A stall is counted in the window of the scrape after it. In brackets,
               ran/queued: over that worst wake's interval, how long the loop thread ran and
               how long it waited for a CPU (the rest it slept: idle, or waiting for the GIL)
  /version     the response time of ``GET /version``, a constant answer written by the
               member's event loop without Raft or disk, polled every 10 ms from this process:
               the lag as a client sees it, including a loopback HTTP round trip (~1 ms here)
               and, on this shared machine, any time this process was not scheduled; the
               baseline window shows that floor.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import multiprocessing as mp
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from cluster import LocalCluster, Member

WINDOWS = ("baseline", "compaction", "snapshot", "defragment", "leases")
TRIGGER_AT = 1.0  # seconds into its window a disturbance starts
PROBE_INTERVAL = 0.01
SCRAPE_INTERVAL = 0.1
LAG_METRIC = "raftkv_event_loop_lag_max_seconds"
LAG_METRICS = (LAG_METRIC, LAG_METRIC[:-8] + "_ran_seconds", LAG_METRIC[:-8] + "_queued_seconds")
TXN_OPS = 128  # etcd's max txn ops


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- put load (client processes) ---------------------------------------------------------------


async def post_ok(session: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    """POST ``body``; whether the answer was a 200 (a refused connection counts as not)."""
    try:
        async with session.post(url, data=body) as r:
            await r.read()
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def _clients(urls: list[str], ids: list[int], value: bytes, t_end: float) -> list[tuple]:
    """Closed-loop put clients until ``t_end``: (start time, latency, ok) of every put."""
    val = b64(value)
    out: list[tuple] = []
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), timeout=timeout
    ) as session:

        async def client(c: int) -> None:
            url = urls[c % len(urls)] + "/v3/kv/put"
            n = 0
            while (t0 := time.time()) < t_end:
                body = f'{{"key":"{b64(b"stall/%d/%d" % (c, n % 1000))}","value":"{val}"}}'
                ok = await post_ok(session, url, body.encode())
                out.append((t0, time.time() - t0, ok))
                n += 1

        await asyncio.gather(*(client(c) for c in ids))
    return out


def _client_proc(args: tuple) -> list[tuple]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_clients(*args))


# --- probes in this process -------------------------------------------------------------------


@dataclass
class Probes:
    """Loop-lag samples (the members' lag gauge, GET /version response times) and leader
    observations."""

    # (time, (gauge, ran, queued)): the lag gauge with its split
    lag: dict[str, list[tuple[float, tuple[float, ...]]]] = field(default_factory=dict)
    version: dict[str, list[tuple[float, tuple[float, ...]]]] = field(default_factory=dict)
    leaders: list[tuple[float, int]] = field(default_factory=list)  # (time, leader id) changes

    async def lag_probe(self, session: aiohttp.ClientSession, m: Member, t_end: float):
        samples = self.lag.setdefault(m.name, [])
        url = m.endpoint + "/metrics"
        while (t0 := time.time()) < t_end:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    text = await r.text()
                    if r.status == 200:
                        split = tuple(metric(text, name) for name in LAG_METRICS)
                        samples.append((time.time(), split))
            except (aiohttp.ClientError, TimeoutError, KeyError):
                pass  # the member is down (wiped): no sample
            await asyncio.sleep(max(0.0, SCRAPE_INTERVAL - (time.time() - t0)))

    async def version_probe(self, session: aiohttp.ClientSession, m: Member, t_end: float):
        samples = self.version.setdefault(m.name, [])
        url = m.endpoint + "/version"
        while (t0 := time.time()) < t_end:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as r:
                    await r.read()
                    if r.status == 200:
                        samples.append((t0, (time.time() - t0,)))
            except (aiohttp.ClientError, TimeoutError):
                pass  # the member is down (wiped): no sample
            await asyncio.sleep(max(0.0, PROBE_INTERVAL - (time.time() - t0)))

    async def leader_probe(self, session: aiohttp.ClientSession, c: LocalCluster, t_end: float):
        while time.time() < t_end:
            for m in c.members:
                try:
                    async with session.post(
                        m.endpoint + "/v3/maintenance/status",
                        data=b"{}",
                        timeout=aiohttp.ClientTimeout(total=2),
                    ) as r:
                        lead = int((await r.json(content_type=None)).get("leader", 0))
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    continue
                if lead and (not self.leaders or self.leaders[-1][1] != lead):
                    self.leaders.append((time.time(), lead))
                break
            await asyncio.sleep(0.25)


def metric(text: str, name: str) -> float:
    """The value of the unlabelled sample ``name`` in a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split(" ", 1)[1])
    raise KeyError(name)


# --- setup and disturbances -------------------------------------------------------------------


async def call(session: aiohttp.ClientSession, m: Member, path: str, body: dict) -> dict:
    async with session.post(
        f"{m.endpoint}/v3/{path}", data=json.dumps(body).encode(), timeout=None
    ) as r:
        data = await r.json(content_type=None)
        if r.status != 200:
            raise RuntimeError(f"{path} on {m.name}: {r.status} {data}")
        return data


async def preload(session: aiohttp.ClientSession, m: Member, records: int, keys: int) -> int:
    """``records`` backend records (txns of 128 puts over ``keys`` keys); the revision."""
    value = b64(b"p" * 64)
    txns = math.ceil(records / TXN_OPS)
    nxt = 0
    rev = 0

    async def worker() -> None:
        nonlocal nxt, rev
        while nxt < txns:
            t = nxt
            nxt += 1
            ops = [
                {
                    "request_put": {
                        "key": b64(b"pre/%d" % ((t * TXN_OPS + i) % keys)),
                        "value": value,
                    }
                }
                for i in range(TXN_OPS)
            ]
            r = await call(session, m, "kv/txn", {"success": ops})
            rev = max(rev, int(r["header"]["revision"]))

    await asyncio.gather(*(worker() for _ in range(16)))
    return rev


async def grant_leases(session: aiohttp.ClientSession, m: Member, n: int, expire_at: float):
    """``n`` leases with one key each, TTLs chosen so that all end near ``expire_at``."""
    nxt = 0

    async def worker() -> None:
        nonlocal nxt
        while nxt < n:
            i = nxt
            nxt += 1
            ttl = max(2, math.ceil(expire_at - time.time()))
            lease = await call(session, m, "lease/grant", {"TTL": ttl})
            key = b64(b"lease/%d" % i)
            await call(session, m, "kv/put", {"key": key, "value": b64(b"x"), "lease": lease["ID"]})

    await asyncio.gather(*(worker() for _ in range(32)))


async def disturb(
    name: str, c: LocalCluster, session: aiohttp.ClientSession, victim: Member, notes: dict
) -> None:
    leader = await c.wait_leader()
    t0 = time.time()
    if name == "compaction":
        st = await call(session, leader, "maintenance/status", {})
        rev = int(st["header"]["revision"])
        await call(session, leader, "kv/compaction", {"revision": rev})
        notes[name] = f"compacted at revision {rev}"
    elif name == "snapshot":
        await c.wipe(victim)
        await c.restart(victim)
        notes[name] = f"{victim.name} wiped and restarted"
    elif name == "defragment":
        await call(session, leader, "maintenance/defragment", {})
        notes[name] = f"defragment of {leader.name} took {time.time() - t0:.2f} s"


# --- report -----------------------------------------------------------------------------------


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p * len(sorted_values)))]


def _window_max(
    samples: dict[str, list[tuple[float, tuple[float, ...]]]], t0: float, t1: float
) -> str:
    """Each member's largest sample in [t0, t1), in ms ("down": none); with a lag's split
    (ran/queued) after it."""
    out = []
    for member, got in sorted(samples.items()):
        w = [d for t, d in got if t0 <= t < t1]
        if not w:
            out.append(f"{member}=down")
            continue
        worst = max(w)
        split = "/".join(f"{v * 1e3:.0f}" for v in worst[1:] if not math.isnan(v))
        out.append(f"{member}={worst[0] * 1e3:.0f}" + (f"({split})" if split else ""))
    return " ".join(out)


def report(
    starts: list[float], window: float, puts: list[tuple], probes: Probes, notes: dict
) -> None:
    print(
        f"{'window':<11} {'puts':>7} {'errors':>6} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'p99.9 ms':>8} {'max ms':>7} {'leader chg':>10}  "
        "loop lag max ms: gauge(ran/queued) | GET /version"
    )
    for name, t0 in zip(WINDOWS, starts, strict=True):
        t1 = t0 + window
        lat = sorted(d for t, d, ok in puts if t0 <= t < t1 and ok)
        errs = sum(1 for t, _, ok in puts if t0 <= t < t1 and not ok)
        changes = sum(1 for t, _ in probes.leaders[1:] if t0 <= t < t1)
        lags = [_window_max(probes.lag, t0, t1), "|", _window_max(probes.version, t0, t1)]
        print(
            f"{name:<11} {len(lat):>7} {errs:>6} {pct(lat, 0.5) * 1e3:>7.1f} "
            f"{pct(lat, 0.99) * 1e3:>7.1f} {pct(lat, 0.999) * 1e3:>8.1f} "
            f"{(lat[-1] if lat else math.nan) * 1e3:>7.1f} {changes:>10}  {' '.join(lags)}"
        )
    for name, note in notes.items():
        print(f"  {name}: {note}")


# --- main -------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, base: Path) -> None:
    settings = {"snapshot_count": args.snapshot_count}
    connector = aiohttp.TCPConnector(limit=0)
    async with (
        LocalCluster(3, base, proxy=False, **settings) as c,
        aiohttp.ClientSession(connector=connector) as session,
    ):
        leader = await c.wait_leader()
        victim = next(m for m in c.members if m is not leader)
        targets = [m.endpoint for m in c.members if m is not victim]
        t = time.time()
        rev = await preload(session, leader, args.revisions, args.keys)
        print(f"preloaded {args.revisions:,} records in {time.time() - t:.1f} s (rev {rev:,})")
        # the windows are fixed before the grants, whose TTLs end in the last one
        load_start = time.time() + 5.0 + args.leases / 400
        starts = [load_start + i * args.window for i in range(len(WINDOWS))]
        t = time.time()
        expire_at = starts[WINDOWS.index("leases")] + TRIGGER_AT
        await grant_leases(session, leader, args.leases, expire_at)
        print(f"granted {args.leases:,} leases in {time.time() - t:.1f} s")
        if time.time() > load_start - 2.0:
            raise SystemExit("the grants took longer than planned: try fewer --leases")
        t_end = starts[-1] + args.window
        jobs = [
            (targets, list(range(p, args.clients, args.procs)), b"v" * 256, t_end)
            for p in range(args.procs)
        ]
        probes = Probes()
        tasks = [asyncio.create_task(probes.version_probe(session, m, t_end)) for m in c.members]
        tasks += [asyncio.create_task(probes.lag_probe(session, m, t_end)) for m in c.members]
        tasks.append(asyncio.create_task(probes.leader_probe(session, c, t_end)))
        notes: dict[str, str] = {}
        loop = asyncio.get_running_loop()
        with mp.get_context("fork").Pool(args.procs) as pool:
            load = loop.run_in_executor(None, pool.map, _client_proc, jobs)
            for name, t0 in zip(WINDOWS, starts, strict=True):
                await asyncio.sleep(max(0.0, t0 + TRIGGER_AT - time.time()))
                if name in ("compaction", "snapshot", "defragment"):
                    await disturb(name, c, session, victim, notes)
            parts = await load
        await asyncio.gather(*tasks)
        left = await call(
            session,
            await c.wait_leader(),
            "kv/range",
            {"key": b64(b"lease/"), "range_end": b64(b"lease0"), "count_only": True},
        )
        notes["leases"] = f"{int(left.get('count', 0))} of {args.leases} lease keys left at the end"
        logs = [(base / "logs" / f"{m.name}.log").read_text(errors="replace") for m in c.members]
        notes["snapshot"] += f" ({sum(t.count('sending_snapshot') for t in logs)} snapshot sends)"
        notes["defragment"] += "; " + _defrag_outcome("".join(logs))
        notes["gc"] = _gc_pauses(c.members, logs, starts, args.window)
    puts = [p for part in parts for p in part]
    print(f"{args.clients} clients on {len(targets)} members, windows of {args.window:.0f} s")
    report(starts, args.window, puts, probes, notes)


def _defrag_outcome(logs: str) -> str:
    """How the online defragment ended, from the members' logs: the copy attempts it took, or
    the blocking fallback (every copy went stale)."""
    if "finished_defragment_blocking" in logs:
        return "every online copy went stale: blocking fallback"
    for line in logs.splitlines():
        if "finished_defragment" in line and (m := re.search(r"attempts\W+(\d+)", line)):
            return f"online, {m.group(1)} copy attempt(s)"
    return "outcome not logged"


def _gc_pauses(members: list[Member], logs: list[str], starts: list[float], window: float) -> str:
    """The garbage-collector pauses over 50 ms (the members' ``gc_pause`` lines) of each
    window: member, generation, wall time and the CPU time the member spent in it (ms)."""
    per_window: dict[str, list[str]] = {name: [] for name in WINDOWS}
    for m, log in zip(members, logs, strict=True):
        for line in log.splitlines():
            if "gc_pause" not in line:
                continue
            ts = re.search(r"ts\W+([0-9T:.+-]+Z?)", line)
            gen = re.search(r"generation\W+(\d)", line)
            took = re.search(r"took_ms\W+(\d+)", line)
            cpu = re.search(r"cpu_ms\W+(\d+)", line)
            if not (ts and gen and took):
                continue
            t = datetime.fromisoformat(ts.group(1).replace("Z", "+00:00")).timestamp()
            for name, t0 in zip(WINDOWS, starts, strict=True):
                if t0 <= t < t0 + window:
                    cpu_ms = f" cpu {cpu.group(1)}" if cpu else ""
                    per_window[name].append(f"{m.name} gen{gen.group(1)} {took.group(1)}{cpu_ms}")
    return "pauses over 50 ms: " + (
        "; ".join(f"{name}: {', '.join(p)}" for name, p in per_window.items() if p) or "none"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--procs", type=int, default=2, help="client processes")
    ap.add_argument("--window", type=float, default=20.0, help="seconds per window")
    ap.add_argument("--revisions", type=int, default=1_000_000, help="records to compact")
    ap.add_argument("--keys", type=int, default=10_000, help="keys the preload writes over")
    ap.add_argument("--leases", type=int, default=10_000)
    ap.add_argument("--snapshot-count", type=int, default=10_000)
    ap.add_argument("--small", action="store_true", help="small sizes: check the script runs")
    ap.add_argument("--dir", default=None, help="where the cluster's data goes (default: temp)")
    args = ap.parse_args()
    if args.small:
        args.window, args.revisions, args.keys = 6.0, 20_000, 1000
        args.leases, args.snapshot_count, args.clients = 500, 500, 16
    base = Path(tempfile.mkdtemp(prefix="bench_stalls_", dir=args.dir))
    try:
        asyncio.run(run(args, base))
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
