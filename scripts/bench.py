"""Side-by-side load test: the same workloads against a 3-member raftkv cluster and a 3-member
real etcd 3.4 cluster, in one run, round after round, every phase reported.

    python scripts/bench.py                       # both, 4 rounds, every workload, 10 s each
    python scripts/bench.py --only raftkv --seconds 3 --rounds 1
    python scripts/bench.py --workloads put64,range_lin --seconds 2 --warmup 0.5 --rounds 2
    python scripts/bench.py --preload 1000000     # 1M keys stored first: memory/key, restart
    python scripts/bench.py --value-size 8192     # 8 KiB values
    python scripts/bench.py --grpc                # the same workloads over etcd's gRPC API
    python scripts/bench.py --aiohttp-client      # JSON through aiohttp's client (costlier)
    python scripts/bench.py --auth                # with auth enabled (a root user's token)
    python scripts/bench.py --tls --auth          # ... and TLS on every link (certs made here)
    python scripts/bench.py --etcd /opt/etcd-reference/usr/bin/etcd --extra '--snapshot-count 5000'

Each round starts one fresh cluster per system on free loopback ports (data under a temp dir),
one system after the other so they never share the CPU; rounds alternate which goes first, so
a drift in the machine's load hits both alike, and round i of raftkv is compared with round i
of etcd. In each round the workloads run in the order given (``--workloads``):

    put<N>        N closed-loop clients putting ``bench/<client>/<n % 1000>`` (put1: latency)
    range_lin<N>  linearizable single-key ranges of stored keys ``pre/<i>``
    range_ser<N>  the same, serializable (answered by the member asked, from its own state)

(N defaults to ``--clients``; the default list is put64,put256,put1,range_lin,range_ser.)
Clients are spread round-robin over the three members (``--target leader``: all to the
leader) and over ``--procs`` client processes. Before the workloads, ``--preload N`` keys (at
least 1000 when a range runs) are stored as txns (scripts/bench_scale.py); with ``--preload``
each round also reports the members' memory per key (RSS growth over the preload divided by
N: the index, the values' share of the cache and what is kept of the Raft log, for both
systems alike) and the time a restarted follower takes to answer with them. Each phase
reports throughput, p50/p99/p99.9/max latency, errors, and CPU per request of the 3 members
(from /proc) and of the client processes themselves (the load generator shares the machine's
cores); the summary gives the per-round ratios and issue 13's targets (scripts/bench_report.py).

The JSON clients speak HTTP/1.1 through scripts/bench_http.py (one keep-alive connection per
client, request bytes built before the run: ~35 us of client CPU per request at 64 clients,
where aiohttp's client, kept behind ``--aiohttp-client``, takes 130-190 us). With ``--grpc``
the clients speak gRPC (grpc.aio, one channel per member per client process, as clientv3 keeps
one connection; 130-270 us of client CPU per request). With ``--auth`` both clusters get a
root user and auth enabled first; each client process authenticates once and sends its simple
token with every request (``Authorization`` header, gRPC ``token`` metadata); the restart probe
authenticates at the restarted member first. With ``--tls`` clients use https / TLS and the
peers mutual TLS, for both systems.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import bench_scale
from bench_http import HttpConn, request_head
from bench_report import Result, Round, phase_line, scale_line, summary

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster.config import free_ports  # noqa: E402

DEFAULT_ETCD = "/opt/etcd-reference/usr/bin/etcd"
DEFAULT_WORKLOADS = "put64,put256,put1,range_lin,range_ser"
KEYS_PER_CLIENT = 1000  # each client cycles over this many keys
RANGE_KEYS = 1000  # keys stored for the ranges to read when --preload asks for fewer
BENCH_ROOT_PASSWORD = "bench"


class LocalCluster:
    def __init__(
        self, kind: str, etcd_bin: str, workdir: Path, extra: list[str], tls: bool = False
    ) -> None:
        self.kind = kind
        self.workdir = workdir
        scheme = "https" if tls else "http"
        ports = free_ports(6)
        self.client = [f"{scheme}://127.0.0.1:{p}" for p in ports[0::2]]
        self.peer = [f"{scheme}://127.0.0.1:{p}" for p in ports[1::2]]
        self.procs: list[subprocess.Popen] = []
        self.ca: str | None = None  # with tls: the CA clients trust
        cert: tuple[str, str] | None = None
        if tls:
            sys.path.insert(0, str(ROOT))
            from raftkv.tls import issue, make_ca

            ca = make_ca(str(workdir / "certs" / "ca"))
            self.ca = ca[0]
            cert = issue(*ca, str(workdir / "certs"), "member", ["127.0.0.1"])
        ic = ",".join(f"m{i + 1}={u}" for i, u in enumerate(self.peer))
        self.cmds: list[list[str]] = []  # a restarted member gets the same flags
        for i in range(3):
            name = f"m{i + 1}"
            cmd = [etcd_bin] if kind == "etcd" else [sys.executable, "-m", "raftkv"]
            cmd += [
                "--name", name,
                "--data-dir", str(workdir / f"{name}.etcd"),
                "--listen-client-urls", self.client[i],
                "--advertise-client-urls", self.client[i],
                "--listen-peer-urls", self.peer[i],
                "--initial-advertise-peer-urls", self.peer[i],
                "--initial-cluster", ic,
                "--initial-cluster-token", f"bench-{kind}",
                "--initial-cluster-state", "new",
                *extra,
            ]  # fmt: skip
            if cert is not None:  # TLS on the client and the peer links, as etcd's docs
                crt, key = cert
                cmd += [
                    f"--cert-file={crt}", f"--key-file={key}",
                    f"--peer-cert-file={crt}", f"--peer-key-file={key}",
                    f"--peer-trusted-ca-file={self.ca}", "--peer-client-cert-auth",
                ]  # fmt: skip
            if kind == "etcd":
                cmd += ["--logger", "zap", "--log-level", "error"]
            self.cmds.append(cmd)

    def _spawn(self, i: int) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.workdir / f"{self.kind}-m{i + 1}.log", "ab") as log:
            return subprocess.Popen(
                self.cmds[i], stdout=log, stderr=log, env=env, cwd=str(self.workdir)
            )

    def start(self) -> None:
        self.procs = [self._spawn(i) for i in range(3)]

    def restart(self, i: int) -> None:
        """Stop member i as an operator would (SIGTERM) and start it again, same flags."""
        _stop([self.procs[i]])
        self.procs[i] = self._spawn(i)

    def stop(self) -> None:
        _stop(self.procs)

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


async def wait_ready(
    session: aiohttp.ClientSession,
    urls: list[str],
    timeout: float,
    headers: dict[str, str] | None = None,
) -> str:
    """Wait until every member reports the same leader and a put goes through (with
    ``headers``: the token, once auth is on); returns the leader's client URL."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        leaders, ids = set(), {}
        try:
            for u in urls:
                async with session.post(u + "/v3/maintenance/status", data=b"{}") as r:
                    body = await r.json(content_type=None)
                    leaders.add(body.get("leader"))
                    ids[body["header"]["member_id"]] = u
            if len(leaders) == 1 and None not in leaders and next(iter(leaders)) in ids:
                async with session.post(
                    urls[0] + "/v3/kv/put",
                    data=json.dumps({"key": "d2FybXVw", "value": "MQ=="}).encode(),
                    headers=headers,
                ) as r:
                    if r.status == 200:
                        return ids[next(iter(leaders))]
        except (aiohttp.ClientError, KeyError, ValueError):
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"cluster at {urls} did not elect a leader within {timeout}s")


def client_ssl(ca: str | None) -> ssl.SSLContext | bool:
    """What an aiohttp client of the cluster uses: its CA with --tls (else plain: True)."""
    return ssl.create_default_context(cafile=ca) if ca else True


async def enable_auth(session: aiohttp.ClientSession, url: str) -> None:
    """A root user with the root role, and auth enabled (as ``etcdctl auth enable`` does)."""
    for path, body in (
        ("/v3/auth/user/add", {"name": "root", "password": BENCH_ROOT_PASSWORD}),
        ("/v3/auth/user/grant", {"user": "root", "role": "root"}),
        ("/v3/auth/enable", {}),
    ):
        async with session.post(url + path, json=body) as r:
            if r.status != 200:
                raise RuntimeError(f"{path}: {r.status} {await r.text()}")


async def login(url: str, ca: str | None = None) -> str:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=client_ssl(ca))) as session,
        session.post(
            url + "/v3/auth/authenticate",
            json={"name": "root", "password": BENCH_ROOT_PASSWORD},
        ) as r,
    ):
        return str((await r.json())["token"])


@dataclass(frozen=True)
class Workload:
    name: str
    kind: str  # "put" or "range"
    clients: int
    serializable: bool = False


def parse_workloads(text: str, default_clients: int) -> list[Workload]:
    out = []
    for name in text.split(","):
        m = re.fullmatch(r"(put|range_lin|range_ser)(\d*)", name.strip())
        if m is None:
            raise SystemExit(f"unknown workload {name!r} (put<N>, range_lin<N>, range_ser<N>)")
        clients = int(m[2]) if m[2] else default_clients
        if not 1 <= clients <= 9999:  # put keys hold the client number in 4 digits
            raise SystemExit(f"{name}: clients must be 1..9999")
        kind = "put" if m[1] == "put" else "range"
        out.append(Workload(m[0], kind, clients, m[1] == "range_ser"))
    return out


@dataclass(frozen=True)
class Job:
    """What one client process runs: its share of a phase's clients."""

    urls: list[str]
    workload: Workload
    client_ids: list[int]
    value: bytes
    stored: int  # keys pre/<i> stored: what ranges read
    t_measure: float
    t_end: float
    client: str  # "lean", "aiohttp" or "grpc"
    auth: bool
    ca: str | None

    def keys(self, c: int) -> list[bytes]:
        """Client c's keys, all of one length (so are its requests)."""
        if self.workload.kind == "put":
            return [b"bench/%04d/%03d" % (c, n) for n in range(KEYS_PER_CLIENT)]
        width = bench_scale.key_width(self.stored)
        first = c * KEYS_PER_CLIENT
        return [
            bench_scale.preload_key((first + n) % self.stored, width)
            for n in range(KEYS_PER_CLIENT)
        ]

    def json_tail(self) -> bytes:
        """What follows the key's base64 in the JSON body."""
        if self.workload.kind == "put":
            return b'","value":"' + base64.b64encode(self.value) + b'"}'
        return b'","serializable":true}' if self.workload.serializable else b'"}'

    def path(self) -> str:
        return "/v3/kv/put" if self.workload.kind == "put" else "/v3/kv/range"


async def closed_loop(
    client_ids: list[int],
    request: Callable[[int, int], Awaitable[bool]],
    t_measure: float,
    t_end: float,
) -> tuple[int, int, list[float], float]:
    """Each client sends ``request(client, n)`` (True when answered OK) back to back until
    ``t_end``; what started after ``t_measure`` is counted. Also returns this process's CPU
    seconds between ``t_measure`` and ``t_end``."""
    lat: list[float] = []
    counts = [0, 0]
    cpu = [0.0, 0.0]

    async def meter() -> None:
        await asyncio.sleep(max(0.0, t_measure - time.time()))
        cpu[0] = time.process_time()
        await asyncio.sleep(max(0.0, t_end - time.time()))
        cpu[1] = time.process_time()

    async def client(c: int) -> None:
        n = 0
        while True:
            t0 = time.time()
            if t0 >= t_end:
                return
            ok = await request(c, n)
            t1 = time.time()
            if t0 >= t_measure:
                if ok:
                    counts[0] += 1
                    lat.append(t1 - t0)
                else:
                    counts[1] += 1
            n += 1

    await asyncio.gather(meter(), *(client(c) for c in client_ids))
    return counts[0], counts[1], lat, cpu[1] - cpu[0]


async def run_lean_clients(job: Job, token: str | None) -> tuple[int, int, list[float], float]:
    """JSON over bench_http: one keep-alive connection per client, opened at its first request
    (again after a failure); a request is its head, its key and the shared tail joined."""
    ctx = ssl.create_default_context(cafile=job.ca) if job.ca else None
    tail = job.json_tail()
    keys: dict[int, list[bytes]] = {}
    heads: dict[int, bytes] = {}
    addrs: dict[int, tuple[str, int]] = {}
    for c in job.client_ids:
        keys[c] = [base64.b64encode(k) for k in job.keys(c)]
        (length,) = {len(k) for k in keys[c]}  # one length: one Content-Length per client
        u = urlsplit(job.urls[c % len(job.urls)])
        assert u.hostname is not None and u.port is not None
        addrs[c] = (u.hostname, u.port)
        body_len = len(b'{"key":"') + length + len(tail)
        heads[c] = request_head(job.path(), u.netloc, body_len, token) + b'{"key":"'
    conns: dict[int, HttpConn] = {}

    async def request(c: int, n: int) -> bool:
        conn = conns.get(c)
        if conn is None or conn.closed:
            try:
                conn = conns[c] = await HttpConn.open(*addrs[c], ctx)
            except OSError:
                await asyncio.sleep(0.05)  # refused: the member is down; don't spin
                return False
        status = await conn.request(b"".join((heads[c], keys[c][n % KEYS_PER_CLIENT], tail)))
        return status == 200

    def close_all() -> None:  # a request unanswered 30 s after the window: an error
        for conn in conns.values():
            conn.close()

    watchdog = asyncio.get_running_loop().call_later(job.t_end + 30 - time.time(), close_all)
    try:
        return await closed_loop(job.client_ids, request, job.t_measure, job.t_end)
    finally:
        watchdog.cancel()
        close_all()


async def run_aiohttp_clients(job: Job, token: str | None) -> tuple[int, int, list[float], float]:
    """The same JSON requests through aiohttp's client (for comparison: far more CPU)."""
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = token
    tail = job.json_tail()
    bodies = {c: [b'{"key":"' + base64.b64encode(k) for k in job.keys(c)] for c in job.client_ids}
    conn = aiohttp.TCPConnector(limit=0, ssl=client_ssl(job.ca))
    session = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30))

    async def request(c: int, n: int) -> bool:
        url = job.urls[c % len(job.urls)] + job.path()
        try:
            body = bodies[c][n % KEYS_PER_CLIENT] + tail
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                return r.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    try:
        return await closed_loop(job.client_ids, request, job.t_measure, job.t_end)
    finally:
        await session.close()


async def run_grpc_clients(job: Job, token: str | None) -> tuple[int, int, list[float], float]:
    """gRPC (grpc.aio), replies left unparsed. A request is its key's fields and the shared
    rest (the value, or serializable) concatenated: protobuf merges concatenated messages."""
    import grpc
    from grpc import aio

    sys.path.insert(0, str(ROOT))
    from raftkv.api.grpcpb import rpc_pb2

    if job.ca is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(job.ca).read_bytes())
        channels = [aio.secure_channel(u.removeprefix("https://"), creds) for u in job.urls]
    else:
        channels = [aio.insecure_channel(u.removeprefix("http://")) for u in job.urls]
    w = job.workload
    method = "/etcdserverpb.KV/Put" if w.kind == "put" else "/etcdserverpb.KV/Range"
    calls = [ch.unary_unary(method) for ch in channels]  # bytes in, bytes out
    metadata = (("token", token),) if token is not None else None
    if w.kind == "put":
        msg: Callable[..., object] = rpc_pb2.PutRequest
        tail = rpc_pb2.PutRequest(value=job.value).SerializeToString()
    else:
        msg = rpc_pb2.RangeRequest
        tail = rpc_pb2.RangeRequest(serializable=w.serializable).SerializeToString()
    heads = {
        c: [msg(key=k).SerializeToString() for k in job.keys(c)]  # type: ignore[attr-defined]
        for c in job.client_ids
    }

    async def request(c: int, n: int) -> bool:
        try:
            body = heads[c][n % KEYS_PER_CLIENT] + tail
            await calls[c % len(calls)](body, timeout=30, metadata=metadata)
            return True
        except grpc.RpcError:
            return False

    try:
        return await closed_loop(job.client_ids, request, job.t_measure, job.t_end)
    finally:
        for ch in channels:
            await ch.close()


async def run_clients(job: Job) -> tuple[int, int, list[float], float]:
    token = await login(job.urls[0], job.ca) if job.auth else None
    run = {"lean": run_lean_clients, "aiohttp": run_aiohttp_clients, "grpc": run_grpc_clients}
    return await run[job.client](job, token)


def _worker(job: Job) -> tuple[int, int, list[float], float]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(run_clients(job))


def run_phase(template: Job, procs: int, seconds: float) -> Result:
    """The workload's clients spread over ``procs`` processes (one Python client process would
    itself be the bottleneck at a few thousand requests per second)."""
    clients = template.workload.clients
    procs = min(procs, clients)
    jobs = [replace(template, client_ids=list(range(p, clients, procs))) for p in range(procs)]
    with mp.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_worker, jobs)
    ops, errors = sum(p[0] for p in parts), sum(p[1] for p in parts)
    cpu = sum(p[3] for p in parts)
    lat = [x for p in parts for x in p[2]]
    return Result(ops, errors, seconds, lat, client_cpu_us=cpu / max(ops + errors, 1) * 1e6)


async def measured_phase(
    args: argparse.Namespace,
    c: LocalCluster,
    urls: list[str],
    w: Workload,
    value: bytes,
    stored: int,
) -> Result:
    """One phase, with the members' CPU sampled at the start and the end of its window."""
    t_measure = time.time() + 1.0 + args.warmup  # 1 s for the client processes to start
    t_end = t_measure + args.seconds
    client = "grpc" if args.grpc else "aiohttp" if args.aiohttp_client else "lean"
    job = Job(urls, w, [], value, stored, t_measure, t_end, client, args.auth, c.ca)
    phase = asyncio.create_task(asyncio.to_thread(run_phase, job, args.procs, args.seconds))
    await asyncio.sleep(max(0.0, t_measure - time.time()))
    cpu0 = _cpu_seconds(c.pids())
    await asyncio.sleep(max(0.0, t_end - time.time()))
    cpu1 = _cpu_seconds(c.pids())
    r = await phase
    if cpu0 is not None and cpu1 is not None:
        r.member_cpu_us = (cpu1 - cpu0) / max(r.ops + r.errors, 1) * 1e6
    return r


def stored_keys(args: argparse.Namespace, workloads: list[Workload]) -> int:
    """How many keys ``pre/<i>`` a round stores before its workloads."""
    if any(w.kind == "range" for w in workloads):
        return max(args.preload, RANGE_KEYS)
    return args.preload


async def bench_cluster(
    args: argparse.Namespace, kind: str, workdir: Path, workloads: list[Workload], rnd: int
) -> Round:
    """One system's round: a fresh cluster, the keys stored, every workload, the restart."""
    extra = args.extra.split() if args.extra else []
    c = LocalCluster(kind, args.etcd, workdir, extra, tls=args.tls)
    c.start()
    rd = Round()
    try:
        conn = aiohttp.TCPConnector(limit=0, ssl=client_ssl(c.ca))
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            leader = await wait_ready(session, c.client, 90)
            headers = None
            if args.auth:
                await enable_auth(session, leader)
                headers = {"Authorization": await login(leader, c.ca)}
            value = os.urandom(args.value_size)
            stored = stored_keys(args, workloads)
            if stored:
                before = [bench_scale.rss(p) for p in c.pids()]
                rd.preload_s = await bench_scale.preload(session, leader, stored, value, headers)
                await asyncio.sleep(1.0)  # the backends' batch commits (every 100 ms) are done
                after = [bench_scale.rss(p) for p in c.pids()]
                rd.rss_per_key = [
                    (a[0] - b[0]) / stored for a, b in zip(after, before, strict=True)
                ]
                rd.anon_per_key = [
                    (a[1] - b[1]) / stored for a, b in zip(after, before, strict=True)
                ]
            urls = [leader] if args.target == "leader" else c.client
            for w in workloads:
                rd.phases[w.name] = await measured_phase(args, c, urls, w, value, stored)
                print(phase_line(rnd, kind, w.name, rd.phases[w.name]), flush=True)
            if args.preload:
                leader = await wait_ready(session, c.client, 30, headers)  # it may have moved
                i = next(i for i, u in enumerate(c.client) if u != leader)
                last = bench_scale.preload_key(stored - 1, bench_scale.key_width(stored))
                token = (lambda: login(c.client[i], c.ca)) if args.auth else None
                rd.startup_s = await bench_scale.startup_seconds(
                    lambda: c.restart(i), session, c.client[i], last, token
                )
                print(scale_line(rnd, kind, rd, stored), flush=True)
    finally:
        c.stop()
    return rd


def _cpu_seconds(pids: list[int]) -> float | None:
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        for pid in pids:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    except OSError:
        return None
    return total


async def main_async(args: argparse.Namespace) -> int:
    kinds = ["raftkv", "etcd"] if args.only is None else [args.only]
    if "etcd" in kinds and not os.path.exists(args.etcd):
        print(f"etcd binary not found at {args.etcd} (run scripts/install-etcd.sh)")
        return 2
    workloads = parse_workloads(args.workloads, args.clients)
    stored = stored_keys(args, workloads)
    if stored * (args.value_size + 100) > (3 << 29) and "--quota-backend-bytes" not in args.extra:
        print(
            f"warning: {stored} keys of {args.value_size} bytes come near the default 2 GiB "
            "backend quota; pass e.g. --extra '--quota-backend-bytes 8589934592'"
        )
    client = "gRPC" if args.grpc else "JSON, aiohttp client" if args.aiohttp_client else "JSON"
    print(
        f"3 members each, workloads {','.join(w.name for w in workloads)}, {args.procs} client "
        f"processes, {args.value_size}-byte values, {args.seconds:g} s per phase "
        f"(+{args.warmup:g} s warm-up), {args.rounds} round(s), {client}"
        + (f", {stored} keys stored first" if stored else "")
        + (", auth enabled" if args.auth else "")
        + (", TLS" if args.tls else "")
        + "; latencies in ms",
        flush=True,
    )
    rounds: dict[str, list[Round]] = {k: [] for k in kinds}
    base = Path(tempfile.mkdtemp(prefix="raftkv-bench-"))
    try:
        for i in range(args.rounds):
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                d = base / f"{kind}-{i}"
                d.mkdir()
                rounds[kind].append(await bench_cluster(args, kind, d, workloads, i))
                if not args.keep:
                    shutil.rmtree(d, ignore_errors=True)  # 1M keys x 4 rounds x 2: disk
    finally:
        if args.keep:
            print(f"data and logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    for line in summary(rounds, [w.name for w in workloads], stored if args.preload else 0):
        print(line)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workloads", default=DEFAULT_WORKLOADS, help="comma-separated, in order")
    p.add_argument("--clients", type=int, default=64, help="clients of a workload without N")
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--seconds", type=float, default=10.0, help="measured window per phase")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds, each reported")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--preload", type=int, default=0, help="keys stored before the workloads")
    p.add_argument("--only", choices=["raftkv", "etcd"])
    clients = p.add_mutually_exclusive_group()
    clients.add_argument("--grpc", action="store_true", help="clients speak gRPC, not JSON")
    clients.add_argument(
        "--aiohttp-client", action="store_true", help="JSON through aiohttp's client"
    )
    p.add_argument("--auth", action="store_true", help="auth enabled, requests with a token")
    p.add_argument("--tls", action="store_true", help="https client and mutual-TLS peer links")
    p.add_argument("--target", choices=["all", "leader"], default="all")
    p.add_argument("--etcd", default=os.environ.get("RAFTKV_ETCD_BIN", DEFAULT_ETCD))
    p.add_argument("--extra", default="", help="extra flags for every member")
    p.add_argument("--keep", action="store_true", help="keep data dirs and logs")
    args = p.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    sys.exit(main())
