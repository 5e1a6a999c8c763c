"""The faults chaos injects, against a LocalCluster or a docker compose cluster.

A Target names its members (m1, m2, ...) and can kill -9 / restart / pause / resume / isolate
one and heal everything; `leader()` asks the members, `observe()` also says the raft term. The
Nemesis loop picks a fault at random (each kind once per round), holds it for a while, undoes
it, waits for a leader, and logs it: as a line, and as a Fault (kind, target, start, end on the
run's clock) in `Nemesis.faults`; `Nemesis.current` is the fault in force, if any.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable

from cluster.client import Client
from cluster.local import LocalCluster
from cluster.runlog import Fault

__all__ = ["ALL_FAULTS", "FAULTS", "LINK_FAULTS", "ComposeTarget", "LocalTarget", "Nemesis"]

# the default set: kill -9 the leader (and restart it), SIGSTOP a member, isolate a member / the
# leader from its peers
FAULTS = ("kill-leader", "pause", "isolate", "isolate-leader")
# more, through the fault proxies (local clusters only): cut leader->follower one way, lose 30%
# of the messages on every link, add 100 ms to every link
LINK_FAULTS = ("one-way", "lossy", "slow")
ALL_FAULTS = FAULTS + LINK_FAULTS


class LocalTarget:
    """A LocalCluster: signals by PID, link cuts through its fault proxies."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.c = cluster
        self.names = [m.name for m in cluster.members]
        self.endpoints = cluster.endpoints
        self.ssl = cluster.ssl  # a TLS cluster's client context

    def supports(self, fault: str) -> bool:
        proxied = self.c.proxy_control is not None
        return proxied or fault not in ("isolate", "isolate-leader", *LINK_FAULTS)

    async def leader(self) -> str | None:
        m = await self.c.leader()
        return m.name if m else None

    async def observe(self) -> tuple[str | None, int]:
        sts = await self.c.statuses()
        m = await self.c.leader(sts)
        return (m.name if m else None), _max_term(sts.values())

    async def kill(self, name: str) -> None:
        await self.c.kill(name)

    async def restart(self, name: str) -> None:
        await self.c.restart(name)

    async def pause(self, name: str) -> None:
        await self.c.pause(name)

    async def resume(self, name: str) -> None:
        await self.c.resume(name)

    async def isolate(self, name: str) -> None:
        await self.c.isolate(name)

    async def cut_one_way(self, src: str, dst: str) -> None:
        await self.c.cut(src, dst, both=False)

    async def all_links(self, **rule: float) -> None:
        for a in self.names:
            for b in self.names:
                if a != b:
                    await self.c.proxy_control.set(a, b, **rule)

    async def heal_all(self) -> None:
        """Heal every link, resume paused members, restart dead ones."""
        if self.c.proxy_control is not None:
            await self.c.heal()
        for m in self.c.members:
            state = m.state()
            if state == "paused":
                await self.c.resume(m)
            elif state == "dead":
                await self.c.restart(m)


class ComposeTarget:
    """A docker compose cluster: `docker compose kill -s SIGKILL`, start, pause, unpause;
    isolation disconnects the container from the compose network (clients lose it too)."""

    def __init__(
        self,
        endpoints: list[str],
        services: list[str],
        compose_file: str = "docker-compose.yml",
        project: str = "raftkv",
        network: str = "raftkv",
    ) -> None:
        if len(endpoints) != len(services):
            raise ValueError("give one compose service per endpoint, in the same order")
        self.names = services
        self.endpoints = endpoints
        self.ssl = None  # (compose clusters are plain http)
        self.base = ["docker", "compose", "-f", compose_file, "-p", project]

        self.network = f"{project}_{network}"
        self._isolated: set[str] = set()
        self._ids: dict[int, str] = {}

    def supports(self, fault: str) -> bool:
        return fault not in LINK_FAULTS  # no proxies between compose members

    async def _run(self, *args: str) -> str:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: {err.decode().strip()}")
        return out.decode().strip()

    async def _container(self, name: str) -> str:
        return await self._run(*self.base, "ps", "-q", "-a", name)

    async def _statuses(self) -> list[dict | None]:
        async def status(i: int) -> dict | None:
            async with Client(self.endpoints[i], timeout=2) as c:
                try:
                    return await c.status()
                except Exception:
                    return None

        sts = await asyncio.gather(*(status(i) for i in range(len(self.names))))
        for i, st in enumerate(sts):
            if st:
                self._ids[int(st["header"]["member_id"])] = self.names[i]
        return sts

    def _leader(self, sts: list[dict | None]) -> str | None:
        votes = Counter(int(st.get("leader", 0)) for st in sts if st)
        for lid, n in votes.items():
            if lid and n > len(self.names) // 2 and lid in self._ids:
                return self._ids[lid]
        return None

    async def leader(self) -> str | None:
        return self._leader(await self._statuses())

    async def observe(self) -> tuple[str | None, int]:
        sts = await self._statuses()
        return self._leader(sts), _max_term(sts)

    async def kill(self, name: str) -> None:
        await self._run(*self.base, "kill", "-s", "SIGKILL", name)

    async def restart(self, name: str) -> None:
        await self._run(*self.base, "start", name)

    async def pause(self, name: str) -> None:
        await self._run(*self.base, "pause", name)

    async def resume(self, name: str) -> None:
        await self._run(*self.base, "unpause", name)

    async def isolate(self, name: str) -> None:
        await self._run(
            "docker", "network", "disconnect", self.network, await self._container(name)
        )
        self._isolated.add(name)

    async def heal_all(self) -> None:
        for name in sorted(self._isolated):
            cid = await self._container(name)
            await self._run("docker", "network", "connect", "--alias", name, self.network, cid)
        self._isolated.clear()
        for name in self.names:
            for cmd in ("unpause", "start"):
                with contextlib.suppress(RuntimeError):  # not paused / already running
                    await self._run(*self.base, cmd, name)


def _max_term(sts: Iterable[dict | None]) -> int:
    terms = (int(st.get("raftTerm", st["header"].get("raft_term", 0))) for st in sts if st)
    return max(terms, default=0)


class Nemesis:
    def __init__(
        self,
        target: LocalTarget | ComposeTarget,
        faults: tuple[str, ...] = FAULTS,
        rng: random.Random | None = None,
        log: Callable[[str], None] = lambda s: None,
        interval: tuple[float, float] = (1.0, 2.5),
        hold: tuple[float, float] = (2.0, 4.0),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.t = target
        if skipped := [f for f in faults if not target.supports(f)]:
            log(f"this cluster can't do {', '.join(skipped)}: skipped")
            faults = tuple(f for f in faults if target.supports(f))
        if not faults:
            raise ValueError("no faults to inject on this target")
        self.faults = faults
        self.rng = rng or random.Random()
        self.log = log
        self.interval = interval
        self.hold = hold
        self.clock = clock  # the times of the Fault records
        self.done: Counter[str] = Counter()
        self.faults_log: list[Fault] = []
        self.current: Fault | None = None
        self.leaderless: list[float] = []  # seconds without a leader after a fault was undone

    async def wait_leader(self, timeout: float = 30.0) -> str | None:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if (leader := await self.t.leader()) is not None:
                return leader
            await asyncio.sleep(0.2)
        return None

    async def run(self, until: float) -> None:
        """Inject faults until time.monotonic() >= until (each one is undone before the next)."""
        deck: list[str] = []
        while time.monotonic() < until:
            await asyncio.sleep(self.rng.uniform(*self.interval))
            if time.monotonic() >= until:
                break
            if not deck:  # every fault once per round, in a random order
                deck = self.rng.sample(self.faults, len(self.faults))
            fault = deck.pop()
            await self.inject(fault, until)
            t0 = time.monotonic()
            if await self.wait_leader() is None:
                self.log("no leader 30 s after the fault was undone")
                self.leaderless.append(30.0)
            else:
                self.leaderless.append(time.monotonic() - t0)

    async def inject(self, fault: str, until: float) -> None:
        hold = min(self.rng.uniform(*self.hold), max(until - time.monotonic(), 0.5))
        if fault in ("kill-leader", "isolate-leader", "one-way"):
            victim = await self.wait_leader(timeout=10)
            if victim is None:
                self.log(f"{fault}: no leader to hit, skipped")
                return
        else:
            victim = self.rng.choice(self.t.names)
        self.done[fault] += 1
        if fault == "kill-leader":
            self.log(f"kill -9 {victim} (leader); restart in {hold:.1f}s")
            do, undo = self.t.kill(victim), lambda: self.t.restart(victim)
        elif fault == "pause":
            self.log(f"pause {victim} for {hold:.1f}s")
            do, undo = self.t.pause(victim), lambda: self.t.resume(victim)
        elif fault == "one-way":
            dst = self.rng.choice([n for n in self.t.names if n != victim])
            self.log(f"cut {victim} (leader) -> {dst} one way for {hold:.1f}s")
            do, undo = self.t.cut_one_way(victim, dst), self.t.heal_all
            victim = f"{victim}->{dst}"
        elif fault in ("lossy", "slow"):
            rule = {"drop": 0.3} if fault == "lossy" else {"latency_ms": 100.0}
            self.log(f"{fault} links ({rule}) for {hold:.1f}s")
            victim = "all links"
            do, undo = self.t.all_links(**rule), self.t.heal_all
        else:
            what = "leader " if fault == "isolate-leader" else ""
            self.log(f"isolate {what}{victim} for {hold:.1f}s")
            do, undo = self.t.isolate(victim), self.t.heal_all
        self.current = Fault(fault, victim, self.clock())
        self.faults_log.append(self.current)
        try:
            await do
            await asyncio.sleep(hold)
            await undo()
            self.current.end = self.clock()
        finally:
            self.current = None  # cut short: end stays None until the caller heals (healed())

    def healed(self) -> None:
        """The caller's heal_all() ended whatever fault a cancelled run left in force."""
        for f in self.faults_log:
            if f.end is None:
                f.end = self.clock()
