"""Side-by-side load test: the same put / range workload against a 3-member raftkv cluster and a
3-member real etcd 3.4 cluster, in one run, through the JSON gateway.

    python scripts/bench.py                       # both, 64 clients, 256-byte values, 10 s each
    python scripts/bench.py --only raftkv --seconds 5
    python scripts/bench.py --etcd /opt/etcd-reference/usr/bin/etcd
    python scripts/bench.py --grpc                # the same workload over etcd's gRPC API
    python scripts/bench.py --auth                # with auth enabled (a root user's token)
    python scripts/bench.py --tls --auth          # ... and TLS on every link (certs made here)

Each system gets its own fresh cluster on free loopback ports (data under a temp dir), started
one after the other so they never share the CPU. Clients are spread round-robin over the three
members' client URLs (``--target leader`` sends everything to the leader). Puts write
``bench/<client>/<n % 1000>`` with a 256-byte value; ranges are linearizable single-key reads
of keys the put phase wrote. Prints throughput, p50/p99/max latency, and raftkv/etcd ratios.
With ``--grpc`` the clients speak gRPC (grpc.aio, one channel per member per client process,
as clientv3 keeps one connection) to the same client URLs. With ``--auth`` both clusters get a
root user and auth enabled before the load; each client process authenticates once and sends
its simple token with every request (``Authorization`` header, gRPC ``token`` metadata), so
every request pays the permission checks.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ETCD = "/opt/etcd-reference/usr/bin/etcd"


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class LocalCluster:
    def __init__(
        self, kind: str, etcd_bin: str, workdir: Path, extra: list[str], tls: bool = False
    ) -> None:
        self.kind = kind
        self.etcd_bin = etcd_bin
        self.workdir = workdir
        self.extra = extra
        scheme = "https" if tls else "http"
        ports = free_ports(6)
        self.client = [f"{scheme}://127.0.0.1:{p}" for p in ports[0::2]]
        self.peer = [f"{scheme}://127.0.0.1:{p}" for p in ports[1::2]]
        self.procs: list[subprocess.Popen] = []
        self.ca: str | None = None  # with tls: the CA clients trust
        if tls:
            sys.path.insert(0, str(ROOT))
            from raftkv.tls import issue, make_ca

            ca = make_ca(str(workdir / "certs" / "ca"))
            self.ca = ca[0]
            self.cert = issue(*ca, str(workdir / "certs"), "member", ["127.0.0.1"])

    def start(self) -> None:
        ic = ",".join(f"m{i + 1}={u}" for i, u in enumerate(self.peer))
        for i in range(3):
            name = f"m{i + 1}"
            cmd = [self.etcd_bin] if self.kind == "etcd" else [sys.executable, "-m", "raftkv"]
            cmd += [
                "--name", name,
                "--data-dir", str(self.workdir / f"{name}.etcd"),
                "--listen-client-urls", self.client[i],
                "--advertise-client-urls", self.client[i],
                "--listen-peer-urls", self.peer[i],
                "--initial-advertise-peer-urls", self.peer[i],
                "--initial-cluster", ic,
                "--initial-cluster-token", f"bench-{self.kind}",
                "--initial-cluster-state", "new",
                *self.extra,
            ]  # fmt: skip
            if self.ca is not None:  # TLS on the client and the peer links, as etcd's docs
                crt, key = self.cert
                cmd += [
                    f"--cert-file={crt}", f"--key-file={key}",
                    f"--peer-cert-file={crt}", f"--peer-key-file={key}",
                    f"--peer-trusted-ca-file={self.ca}", "--peer-client-cert-auth",
                ]  # fmt: skip
            if self.kind == "etcd":
                cmd += ["--logger", "zap", "--log-level", "error"]
            env = dict(os.environ, PYTHONPATH=str(ROOT))
            log = open(self.workdir / f"{self.kind}-{name}.log", "wb")  # noqa: SIM115
            self.procs.append(
                subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=str(self.workdir))
            )
            log.close()

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]


async def wait_ready(session: aiohttp.ClientSession, urls: list[str], timeout: float) -> str:
    """Wait until every member reports the same leader; returns the leader's client URL."""
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
                ) as r:
                    if r.status == 200:
                        return ids[next(iter(leaders))]
        except (aiohttp.ClientError, KeyError, ValueError):
            pass
        await asyncio.sleep(0.3)
    raise RuntimeError(f"cluster at {urls} did not elect a leader within {timeout}s")


@dataclass
class Result:
    ops: int
    errors: int
    seconds: float
    lat: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    def pct(self, p: float) -> float:
        if not self.lat:
            return float("nan")
        s = sorted(self.lat)
        return s[min(len(s) - 1, int(p * len(s)))] * 1000


BENCH_ROOT_PASSWORD = "bench"


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


async def closed_loop(
    client_ids: list[int],
    request: Callable[[int, int], Awaitable[bool]],
    t_measure: float,
    t_end: float,
) -> tuple[int, int, list[float]]:
    """Each client sends ``request(client, n)`` (True when answered OK) back to back until
    ``t_end``; what started after ``t_measure`` is counted."""
    lat: list[float] = []
    counts = [0, 0]

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

    await asyncio.gather(*(client(c) for c in client_ids))
    return counts[0], counts[1], lat


async def run_grpc_clients(
    urls: list[str],
    kind: str,
    client_ids: list[int],
    value: bytes,
    t_measure: float,
    t_end: float,
    token: str | None = None,
    ca: str | None = None,
) -> tuple[int, int, list[float]]:
    """``run_clients`` over gRPC: requests marshalled once per key, replies left unparsed."""
    import grpc
    from grpc import aio

    sys.path.insert(0, str(ROOT))
    from raftkv.api.grpcpb import rpc_pb2

    if ca is not None:
        creds = grpc.ssl_channel_credentials(root_certificates=Path(ca).read_bytes())
        channels = [aio.secure_channel(u.removeprefix("https://"), creds) for u in urls]
    else:
        channels = [aio.insecure_channel(u.removeprefix("http://")) for u in urls]
    method = "/etcdserverpb.KV/Put" if kind == "put" else "/etcdserverpb.KV/Range"
    calls = [ch.unary_unary(method) for ch in channels]  # bytes in, bytes out
    metadata = (("token", token),) if token is not None else None

    def body(key: bytes) -> bytes:
        if kind == "put":
            return rpc_pb2.PutRequest(key=key, value=value).SerializeToString()
        return rpc_pb2.RangeRequest(key=key).SerializeToString()

    bodies = {c: [body(f"bench/{c}/{n}".encode()) for n in range(1000)] for c in client_ids}

    async def request(c: int, n: int) -> bool:
        try:
            await calls[c % len(calls)](bodies[c][n % 1000], timeout=30, metadata=metadata)
            return True
        except grpc.RpcError:
            return False

    try:
        return await closed_loop(client_ids, request, t_measure, t_end)
    finally:
        for ch in channels:
            await ch.close()


async def post_ok(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict | None = None
) -> bool:
    """POST ``body``; whether the answer was a 200 (a refused connection counts as not)."""
    try:
        async with session.post(url, data=body, headers=headers) as r:
            await r.read()
            return r.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def run_clients(
    urls: list[str],
    kind: str,
    client_ids: list[int],
    value: bytes,
    t_measure: float,
    t_end: float,
    use_grpc: bool = False,
    auth: bool = False,
    ca: str | None = None,
) -> tuple[int, int, list[float]]:
    """One worker process: ``client_ids`` concurrent closed-loop clients (wall-clock window)."""
    token = await login(urls[0], ca) if auth else None
    if use_grpc:
        return await run_grpc_clients(urls, kind, client_ids, value, t_measure, t_end, token, ca)
    headers = {"Authorization": token} if token is not None else None
    val_b64 = base64.b64encode(value).decode()
    conn = aiohttp.TCPConnector(limit=0, ssl=client_ssl(ca))
    session = aiohttp.ClientSession(connector=conn, timeout=aiohttp.ClientTimeout(total=30))

    async def request(c: int, n: int) -> bool:
        url = urls[c % len(urls)] + ("/v3/kv/put" if kind == "put" else "/v3/kv/range")
        key = base64.b64encode(f"bench/{c}/{n % 1000}".encode()).decode()
        value = f',"value":"{val_b64}"' if kind == "put" else ""
        body = f'{{"key":"{key}"{value}}}'
        return await post_ok(session, url, body.encode(), headers)

    try:
        return await closed_loop(client_ids, request, t_measure, t_end)
    finally:
        await session.close()


def _worker(args: tuple) -> tuple[int, int, list[float]]:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(run_clients(*args))


def run_phase(
    urls: list[str],
    kind: str,
    clients: int,
    procs: int,
    seconds: float,
    value: bytes,
    warmup: float,
    use_grpc: bool = False,
    auth: bool = False,
    ca: str | None = None,
) -> Result:
    """``clients`` clients spread over ``procs`` processes (one Python client process would
    itself be the bottleneck at a few thousand requests per second)."""
    import multiprocessing as mp

    t_measure = time.time() + 1.0 + warmup  # 1 s for the workers to start
    t_end = t_measure + seconds
    jobs = [
        (urls, kind, list(range(p, clients, procs)), value, t_measure, t_end, use_grpc, auth, ca)
        for p in range(procs)
    ]
    with mp.get_context("fork").Pool(procs) as pool:
        parts = pool.map(_worker, jobs)
    lat = [x for _, _, part in parts for x in part]
    return Result(sum(p[0] for p in parts), sum(p[1] for p in parts), seconds, lat)


async def bench_cluster(args: argparse.Namespace, kind: str, workdir: Path) -> dict:
    extra = args.extra.split() if args.extra else []
    c = LocalCluster(kind, args.etcd, workdir, extra, tls=args.tls)
    c.start()
    out: dict = {}
    try:
        conn = aiohttp.TCPConnector(limit=0, force_close=False, ssl=client_ssl(c.ca))
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(connector=conn, timeout=timeout) as session:
            leader = await wait_ready(session, c.client, 90)
            if args.auth:
                await enable_auth(session, leader)
            urls = [leader] if args.target == "leader" else c.client
            value = os.urandom(args.value_size)
            cpu0 = _cpu_seconds(c.pids())
            for phase in ("put", "range"):
                r = await asyncio.to_thread(
                    run_phase,
                    urls,
                    phase,
                    args.clients,
                    args.procs,
                    args.seconds,
                    value,
                    args.warmup,
                    args.grpc,
                    args.auth,
                    c.ca,
                )
                out[phase] = r
                if phase == "put":
                    cpu1 = _cpu_seconds(c.pids())
                    if cpu0 is not None and cpu1 is not None and r.ops:
                        # ops over warm-up + window, at the measured rate (approximately)
                        total = r.rate * (args.seconds + args.warmup)
                        out["put_cpu_us"] = (cpu1 - cpu0) / max(total, 1) * 1e6
    finally:
        c.stop()
    return out


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


def _line(name: str, phase: str, r: Result) -> str:
    return (
        f"{name:7s} {phase:5s} {r.rate:9.0f} ops/s   p50 {r.pct(0.5):7.1f} ms   "
        f"p99 {r.pct(0.99):7.1f} ms   max {r.pct(1.0):7.1f} ms   errors {r.errors}"
    )


async def main_async(args: argparse.Namespace) -> int:
    kinds = ["raftkv", "etcd"] if args.only is None else [args.only]
    if "etcd" in kinds and not os.path.exists(args.etcd):
        print(f"etcd binary not found at {args.etcd} (run scripts/install-etcd.sh)")
        return 2
    rounds: dict[str, list[dict]] = {k: [] for k in kinds}
    base = Path(tempfile.mkdtemp(prefix="raftkv-bench-"))
    print(
        f"3 members each, {args.clients} clients in {args.procs} processes, "
        f"{args.value_size}-byte values, {args.seconds:g} s per phase, {args.rounds} round(s), "
        + ("gRPC" if args.grpc else "JSON gateway")
        + (", auth enabled" if args.auth else "")
        + (", TLS" if args.tls else "")
    )
    try:
        # Rounds alternate the systems, so a change in the machine's load hits both alike.
        for i in range(args.rounds):
            for kind in kinds if i % 2 == 0 else kinds[::-1]:
                d = base / f"{kind}-{i}"
                d.mkdir()
                res = await bench_cluster(args, kind, d)
                rounds[kind].append(res)
                for phase in ("put", "range"):
                    print(f"[round {i + 1}] " + _line(kind, phase, res[phase]))
    finally:
        if args.keep:
            print(f"data and logs kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    print("--- median over rounds")
    med: dict[str, dict[str, tuple[float, float, float]]] = {}
    for kind in kinds:
        med[kind] = {}
        for phase in ("put", "range"):
            rs = [r[phase] for r in rounds[kind]]
            rate = statistics.median(r.rate for r in rs)
            p50 = statistics.median(r.pct(0.5) for r in rs)
            p99 = statistics.median(r.pct(0.99) for r in rs)
            med[kind][phase] = (rate, p50, p99)
            print(f"{kind:7s} {phase:5s} {rate:9.0f} ops/s   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
        cpus = [r["put_cpu_us"] for r in rounds[kind] if "put_cpu_us" in r]
        if cpus:
            print(f"{kind:7s} put CPU per op, all 3 members: {statistics.median(cpus):.0f} us")
    if len(kinds) == 2:
        print("--- raftkv / etcd (medians)")
        for phase in ("put", "range"):
            a, b = med["raftkv"][phase], med["etcd"][phase]
            print(
                f"{phase:5s} throughput x{a[0] / max(b[0], 1e-9):.2f}   "
                f"p50 x{a[1] / max(b[1], 1e-9):.2f}   p99 x{a[2] / max(b[2], 1e-9):.2f}"
            )
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--procs", type=int, default=2, help="client processes")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (median shown)")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--value-size", type=int, default=256)
    p.add_argument("--only", choices=["raftkv", "etcd"])
    p.add_argument("--grpc", action="store_true", help="clients speak gRPC, not JSON")
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
