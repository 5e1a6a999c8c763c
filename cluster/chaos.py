"""Chaos: clients write and read through every member while a nemesis breaks the cluster;
then heal, wait for convergence, and check what the clients saw.

Checks, each a line of the verdict when it fails:
1. durability: every acknowledged write (put, successful txn compare-and-swap) is readable at
   the revision its answer gave, with the value written;
2. agreement: after healing, all members reach the same revision and report the same HashKV
   at it;
3. linearizability: the history of puts, gets and CASes, per key, has a legal order
   (cluster.linearizability); writes whose outcome is unknown (timeouts, connections lost after
   sending, error answers) may or may not have happened;
4. liveness: a leader is back within 30 s of every fault being undone.

With a history_path, the run's record (cluster.runlog: ops, failed requests, the nemesis log,
leader/term samples, what the checks found) is saved there and rendered into an HTML report
and a PNG next to it (cluster.report). The CLI is scripts/chaos.py (see its --help);
`run_chaos` is the library entry point.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import random
import ssl as ssl_module
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from cluster.client import Client, EtcdError, enable_auth
from cluster.linearizability import CheckResult, Op, check
from cluster.nemesis import FAULTS, ComposeTarget, LocalTarget, Nemesis
from cluster.report import write_report
from cluster.runlog import Failure, LeaderSample, RunLog

__all__ = ["ChaosResult", "Workload", "run_chaos"]

KEY_PREFIX = "chaos/"


@dataclass
class Ack:
    key: str
    value: bytes
    revision: int


class Workload:
    """Clients bound to endpoints, each issuing one operation at a time on a few keys."""

    def __init__(
        self,
        endpoints: list[str],
        clients_per_member: int = 2,
        keys: int = 8,
        timeout: float = 3.0,
        rng: random.Random | None = None,
        serializable_reads: bool = False,
        names: list[str] | None = None,
        ssl: ssl_module.SSLContext | None = None,
        user: tuple[str, str] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.ssl = ssl
        self.user = user  # with auth enabled: every client authenticates as this user
        self.names = names or endpoints  # what an op records as the member that served it
        # serializable reads may be stale: only to show that the checks catch that
        self.read_opts = {"serializable": True} if serializable_reads else {}
        self.keys = [f"{KEY_PREFIX}k{i}" for i in range(keys)]
        self.timeout = timeout
        self.rng = rng or random.Random()
        self.n_clients = clients_per_member * len(endpoints)
        self.history: list[Op] = []
        self.acks: list[Ack] = []
        self.failures: list[Failure] = []
        self._seq = itertools.count()
        self._stop = asyncio.Event()
        self.t0 = time.monotonic()  # history times are seconds since the workload was made

    def now(self) -> float:
        return time.monotonic() - self.t0

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        clients = [
            Client(ep, timeout=self.timeout, ssl=self.ssl, user=self.user) for ep in self.endpoints
        ]
        try:
            rngs = [random.Random(self.rng.random()) for _ in range(self.n_clients)]
            n = len(clients)
            await asyncio.gather(
                *(
                    self._client(i, clients[i % n], self.names[i % n], rngs[i])
                    for i in range(self.n_clients)
                )
            )
        finally:
            for c in clients:
                await c.close()

    async def _client(self, cid: int, client: Client, member: str, rng: random.Random) -> None:
        seen: dict[str, bytes | None] = {}
        while not self._stop.is_set():
            key = rng.choice(self.keys)
            r = rng.random()
            kind = "get" if r < 0.4 else ("put" if r < 0.7 else "cas")
            value = f"c{cid}-{next(self._seq)}".encode()
            expected = seen.get(key)
            t0 = self.now()
            try:
                if kind == "get":
                    kv = await client.get(key, **self.read_opts)
                    output = kv.value if kv else None
                    seen[key] = output
                    self.history.append(
                        Op(key, "get", t0, self.now(), output=output, client=cid, member=member)
                    )
                elif kind == "put":
                    resp = await client.put(key, value)
                    t1 = self.now()
                    self.history.append(
                        Op(key, "put", t0, t1, value=value, client=cid, member=member)
                    )
                    self.acks.append(Ack(key, value, resp["header"]["revision"]))
                    seen[key] = value
                else:
                    ok, rev = await client.cas(key, expected, value)
                    t1 = self.now()
                    self.history.append(
                        Op(
                            key,
                            "cas",
                            t0,
                            t1,
                            value=value,
                            expected=expected,
                            output=ok,
                            client=cid,
                            member=member,
                        )
                    )
                    if ok:
                        self.acks.append(Ack(key, value, rev))
                        seen[key] = value
                    else:
                        seen.pop(key, None)  # changed under us: read it again before a CAS
            except aiohttp.ClientConnectorError:
                # never sent: did not happen
                self.failures.append(Failure(self.now(), cid, member, kind, "refused"))
                await asyncio.sleep(0.1)
            except (TimeoutError, aiohttp.ClientError, EtcdError) as e:
                name = f"http {e.status}" if isinstance(e, EtcdError) else type(e).__name__
                timeout = isinstance(e, TimeoutError)
                self.failures.append(Failure(self.now(), cid, member, kind, name, timeout))
                if kind != "get":  # may or may not have been applied, then or later
                    self.history.append(
                        Op(key, kind, t0, None, value, expected, client=cid, member=member)
                    )
                    seen.pop(key, None)
                await asyncio.sleep(0.05)


@dataclass
class ChaosResult:
    ok: bool
    problems: list[str]
    ops: int
    unknown: int
    acked: int
    faults: dict[str, int]
    revision: int = 0
    hash: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    linearizability: str = ""
    report: Path | None = None  # the HTML report, when the run was saved

    def verdict(self) -> str:
        faults = ", ".join(f"{n} {k}" for k, n in sorted(self.faults.items())) or "no faults"
        head = f"{self.ops} ops ({self.unknown} unknown), {self.acked} acked writes, {faults}"
        if self.ok:
            return (
                f"chaos PASS: {head}; acked writes readable; members agree at revision "
                f"{self.revision} (hashkv {self.hash}); {self.linearizability}"
            )
        return f"chaos FAIL: {'; '.join(self.problems)} [{head}]"


def _session(ssl: ssl_module.SSLContext | None) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, ssl=ssl or True))


async def _converge(
    endpoints: list[str],
    timeout: float,
    ssl: ssl_module.SSLContext | None,
    user: tuple[str, str] | None = None,
) -> tuple[int, dict[str, int], str]:
    """Wait until every member reports the same revision and applied index; then HashKV."""
    deadline = time.monotonic() + timeout
    last = ""
    async with _session(ssl) as s:
        clients = [Client(ep, timeout=5, session=s, user=user) for ep in endpoints]
        while time.monotonic() < deadline:
            try:
                sts = await asyncio.gather(*(c.status() for c in clients))
            except (TimeoutError, aiohttp.ClientError, EtcdError) as e:
                last = f"status: {e!r}"
                await asyncio.sleep(0.3)
                continue
            revs = {int(st["header"]["revision"]) for st in sts}
            applied = {int(st.get("raftAppliedIndex", 0)) for st in sts}
            if len(revs) == 1 and len(applied) == 1:
                rev = revs.pop()
                hashes = await asyncio.gather(*(c.hashkv(rev) for c in clients))
                return rev, {ep: h["hash"] for ep, h in zip(endpoints, hashes, strict=True)}, ""
            last = f"revisions {sorted(revs)}, applied {sorted(applied)}"
            await asyncio.sleep(0.3)
    return 0, {}, f"members did not converge in {timeout:.0f}s ({last})"


async def _check_acks(
    endpoints: list[str],
    acks: list[Ack],
    ssl: ssl_module.SSLContext | None,
    user: tuple[str, str] | None = None,
) -> tuple[list[dict], list[str]]:
    """Read every acknowledged write back at its revision, spread over the members: the lost
    writes ({key, value, revision, read}) and the reads that failed."""
    lost: list[dict[str, Any]] = []
    failed: list[str] = []
    sem = asyncio.Semaphore(16)
    async with _session(ssl) as s:
        clients = [Client(ep, timeout=10, session=s, user=user) for ep in endpoints]

        async def one(i: int, ack: Ack) -> None:
            async with sem:
                for attempt in range(3):
                    try:
                        kv = await clients[(i + attempt) % len(clients)].get(
                            ack.key, revision=ack.revision
                        )
                        break
                    except (TimeoutError, aiohttp.ClientError, EtcdError) as e:
                        err = e
                else:
                    failed.append(f"reading {ack.key}@{ack.revision} failed: {err!r}")
                    return
                if kv is None or kv.value != ack.value or kv.mod_revision != ack.revision:
                    got = f"{kv.value.decode()}@{kv.mod_revision}" if kv else "nothing"
                    lost.append(
                        {
                            "key": ack.key,
                            "value": ack.value.decode(),
                            "revision": ack.revision,
                            "read": got,
                        }
                    )

        await asyncio.gather(*(one(i, a) for i, a in enumerate(acks)))
    return lost, failed


async def _final_reads(workload: Workload) -> None:
    """Read every key through every member once the cluster is quiet: part of the history."""
    async with _session(workload.ssl) as s:
        for ep, name in zip(workload.endpoints, workload.names, strict=True):
            c = Client(ep, timeout=10, session=s, user=workload.user)
            for key in workload.keys:
                t0 = workload.now()
                kv = await c.get(key)
                workload.history.append(
                    Op(
                        key,
                        "get",
                        t0,
                        workload.now(),
                        output=kv.value if kv else None,
                        client=-1,
                        member=name,
                    )
                )


async def _observe_leaders(
    target: LocalTarget | ComposeTarget, workload: Workload, out: list[LeaderSample]
) -> None:
    """Sample (leader, term) about twice a second until cancelled."""
    while True:
        t = workload.now()
        with contextlib.suppress(Exception):  # a sample missed during a fault is no news
            leader, term = await target.observe()
            out.append(LeaderSample(round(t, 3), leader, term))
        await asyncio.sleep(max(0.5 - (workload.now() - t), 0.05))


async def _report_progress(
    progress: Callable[[str], None], workload: Workload, nemesis: Nemesis, duration: float
) -> None:
    while True:
        fault = nemesis.current
        now = f"{fault.kind} {fault.target}" if fault else "none"
        progress(
            f"{min(workload.now(), duration):5.1f}/{duration:.0f}s  {len(workload.history)} ops"
            f"  {len(workload.failures)} failed  fault: {now}"
        )
        await asyncio.sleep(0.5)


T = TypeVar("T")


async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    """fn(*args) in a daemon thread: a run cancelled by Ctrl-C neither blocks on the checker
    nor waits for it at exit (the default executor's threads would be joined)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()

    def settle(result: T, exc: BaseException | None) -> None:
        if fut.done():  # cancelled meanwhile
            return
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    def work() -> None:
        try:
            result, exc = fn(*args), None
        except Exception as e:
            result, exc = None, e
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, result, exc)

    threading.Thread(target=work, name="linearizability", daemon=True).start()
    return await fut


async def _stop(task: asyncio.Task | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def run_chaos(
    target: LocalTarget | ComposeTarget,
    duration: float,
    *,
    faults: tuple[str, ...] = FAULTS,
    clients_per_member: int = 2,
    keys: int = 8,
    seed: int | None = None,
    history_path: Path | None = None,
    log: Callable[[str], None] = print,
    progress: Callable[[str], None] | None = None,
    converge_timeout: float = 60.0,
    serializable_reads: bool = False,
    user: tuple[str, str] | None = None,
) -> ChaosResult:
    """Drive `target` (nemesis.LocalTarget / ComposeTarget) for `duration` seconds and check;
    with history_path, save the run there and write its report next to it. `progress` hears a
    status line (elapsed, ops, current fault) every half second while the faults run. With
    `user` (name, password), auth is enabled first with it as root, and every client and check
    authenticates as it."""
    if seed is None:  # a seed all the same, so that the report says how to run this again
        seed = random.randrange(2**32)
    rng = random.Random(seed)
    endpoints = target.endpoints
    workload = Workload(
        endpoints,
        clients_per_member,
        keys,
        rng=random.Random(rng.random()),
        serializable_reads=serializable_reads,
        names=target.names,
        ssl=target.ssl,
        user=user,
    )
    nemesis = Nemesis(target, faults, rng=random.Random(rng.random()), log=log, clock=workload.now)
    run = RunLog(
        meta={
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "duration": duration,
            "seed": seed,
            "faults": list(nemesis.faults),
            "members": dict(zip(target.names, endpoints, strict=True)),
            "clients": workload.n_clients,
            "keys": keys,
            "serializable_reads": serializable_reads,
        },
        ops=workload.history,
        failures=workload.failures,
        faults=nemesis.faults_log,
    )
    t_start = time.monotonic()
    if user is not None:
        await enable_auth(endpoints[0], user, target.ssl)
    # start from a clean key space (an earlier run against the same cluster may have left keys)
    async with Client(endpoints[0], timeout=10, ssl=target.ssl, user=user) as c:
        await c.delete(KEY_PREFIX, KEY_PREFIX[:-1] + chr(ord(KEY_PREFIX[-1]) + 1))
    observer = asyncio.ensure_future(_observe_leaders(target, workload, run.leaders))
    reporter = (
        asyncio.ensure_future(_report_progress(progress, workload, nemesis, duration))
        if progress
        else None
    )
    work = asyncio.ensure_future(workload.run())
    try:
        try:
            await nemesis.run(until=t_start + duration)
        finally:
            await _stop(reporter)
            workload.stop()
            await asyncio.wait_for(work, timeout=30)
            log("healing")
            await target.heal_all()
            nemesis.healed()
        problems: list[str] = []
        if await nemesis.wait_leader(timeout=30) is None:
            problems.append("no leader 30 s after healing")
        rev, hashes, why = await _converge(endpoints, converge_timeout, target.ssl, user)
    finally:
        await _stop(observer)
    by_name = dict(zip(endpoints, target.names, strict=True))
    run.checks["agreement"] = {
        "revision": rev,
        "hashes": {by_name[e]: h for e, h in hashes.items()},
    }
    if why:
        problems.append(why)
    elif len(set(hashes.values())) != 1:
        problems.append(f"members disagree on hashkv at revision {rev}: {hashes}")
    lin: CheckResult | None = None
    if not problems:
        log(f"checking {len(workload.acks)} acknowledged writes")
        lost, unreadable = await _check_acks(endpoints, workload.acks, target.ssl, user)
        run.checks["lost"] = lost
        problems += _summarize(
            [
                f"acked write {w['key']}={w['value']!r}@{w['revision']} lost: read {w['read']}"
                for w in lost
            ]
            + unreadable
        )
        try:
            await _final_reads(workload)
        except (TimeoutError, aiohttp.ClientError, EtcdError) as e:
            problems.append(f"final reads failed: {e!r}")
        log(f"checking linearizability of {len(workload.history)} ops")
        lin = await _in_thread(check, workload.history)
        log(f"linearizability: {lin.summary()}")
        if not lin.ok:
            problems.append(lin.summary())
    slow = [round(s, 1) for s in nemesis.leaderless if s >= 30]
    if slow:
        problems.append(f"{len(slow)} faults left the cluster without a leader for 30 s")
    result = ChaosResult(
        ok=not problems,
        problems=problems,
        ops=len(workload.history),
        unknown=sum(op.unknown for op in workload.history),
        acked=len(workload.acks),
        faults=dict(nemesis.done),
        revision=rev,
        hash=next(iter(hashes.values()), 0),
        errors=dict(Counter(f.error for f in workload.failures)),
        linearizability=lin.summary() if lin else "",
    )
    if history_path is not None:
        run.checks.update(problems=problems, verdict=result.verdict())
        run.save(history_path)
        result.report = write_report(run, history_path, lin)
        log(f"history {history_path}; report {result.report}")
    return result


def _summarize(problems: list[str], limit: int = 5) -> list[str]:
    if len(problems) <= limit:
        return problems
    return [*problems[:limit], f"... and {len(problems) - limit} more"]
