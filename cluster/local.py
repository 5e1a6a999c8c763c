"""LocalCluster: N member processes on loopback, their fault proxies, and the faults to inject.

    async with LocalCluster(size=3, base_dir=tmp_path, heartbeat_interval=50) as c:
        leader = await c.wait_leader()
        await c.client(leader).put("k", "v")
        await c.kill(leader); await c.restart(leader)
        await c.cut("m1", "m2")            # both directions; both=False for m1->m2 only
        await c.heal()

Layout under base_dir: cluster.json (the state: specs, PIDs, proxy control URL; what the CLI
reads back with LocalCluster.attach), data/<name>/ (data dirs), logs/<name>.log (each member's
stdout+stderr, appended across restarts), proxy.json/proxy.log (the proxy helper).
Members are addressed as a Member, a name ("m2") or a 1-based index (2).
Every process is started by this object and stopped by PID; `async with` stops all of them
even when the body raises, and without `detached=True` they also die with this process.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import signal
import ssl as ssl_module
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cluster.client import Client
from cluster.config import (
    CONFIGS_DIR,
    MemberSpec,
    client_ssl,
    config_file_for,
    free_port,
    make_certs,
    member_argv,
)
from cluster.process import Proc, spawn
from cluster.proxy_server import ProxyControl

__all__ = ["ClusterError", "LocalCluster", "Member"]

STATE_FILE = "cluster.json"
ETCD_CLIENT_PORT, ETCD_PEER_PORT, PROXY_PORT = 2379, 2380, 2381
# (-c rather than -m cluster.proxy_server: the package imports that module already)
_PROXY_MAIN = "import sys; from cluster.proxy_server import main; sys.exit(main())"


class ClusterError(Exception):
    pass


@dataclass(eq=False)
class Member:
    spec: MemberSpec
    proc: Proc | None = None
    id: int | None = None  # raft member id, learned from /v3/maintenance/status
    wiped: bool = False  # data dir removed: restart joins with --initial-cluster-state existing

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def endpoint(self) -> str:
        return self.spec.client_url

    def state(self) -> str:
        return self.proc.state() if self.proc else "dead"

    def __repr__(self) -> str:
        return f"<Member {self.name} {self.endpoint} {self.state()}>"


class LocalCluster:
    def __init__(
        self,
        size: int = 3,
        base_dir: str | Path | None = None,
        *,
        configs_dir: str | Path = CONFIGS_DIR,
        member_cmd: list[str] | None = None,
        ip_base: int = 10,
        proxy: bool = True,
        detached: bool = False,
        etcd_ports: bool = False,
        env: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
        tls: bool = False,
        **settings: object,
    ) -> None:
        """size members m1..mN; `settings` become member flags (heartbeat_interval=50 ->
        --heartbeat-interval=50). etcd_ports: try 2379/2380 (and 2381 for the proxy) on each
        member's IP before falling back to free ports (the CLI does, tests don't). tls: https
        and mutual TLS on every link, with a CA and certificates made in base_dir/certs (the
        fault proxy forwards the encrypted bytes; frame-aware drops then have no effect)."""
        if size < 1:
            raise ValueError("size must be >= 1")
        self.base_dir = Path(base_dir or ".cluster").resolve()
        self.configs_dir = Path(configs_dir)
        self.member_cmd = member_cmd
        self.proxy_enabled = proxy
        self.detached = detached
        self.env = env
        self.ready_timeout = ready_timeout
        self.settings = dict(settings)
        self.token = f"raftkv-local-{secrets.token_hex(4)}"
        self._attached = False
        self.proxy_proc: Proc | None = None
        self.proxy_control: ProxyControl | None = None
        self._clients: dict[tuple[str, float], Client] = {}
        self.members: list[Member] = []
        for i in range(1, size + 1):
            name, ip = f"m{i}", f"127.0.0.{ip_base + i}"

            taken: set[int] = set()

            def port(preferred: int, ip: str = ip, taken: set[int] = taken) -> int:
                for _ in range(20):  # probed ports are released again: never hand one out twice
                    p = free_port(ip, preferred if etcd_ports and preferred not in taken else None)
                    if p not in taken:
                        taken.add(p)
                        return p
                raise ClusterError(f"no free ports on {ip}")

            self.members.append(
                Member(
                    MemberSpec(
                        name=name,
                        ip=ip,
                        client_port=port(ETCD_CLIENT_PORT),
                        peer_port=port(ETCD_PEER_PORT),
                        proxy_port=port(PROXY_PORT) if proxy else None,
                        data_dir=str(self.base_dir / "data" / name),
                        log_path=str(self.base_dir / "logs" / f"{name}.log"),
                        config_file=str(config_file_for(name, self.configs_dir)),
                        certs_dir=str(self.base_dir / "certs") if tls else None,
                    )
                )
            )

    # ---- addressing
    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def member(self, m: Member | str | int) -> Member:
        if isinstance(m, Member):
            return m
        for member in self.members:
            if m in (member.name, member.endpoint) or m == self.members.index(member) + 1:
                return member
        raise KeyError(f"no member {m!r} (have {', '.join(x.name for x in self.members)})")

    @property
    def ssl(self) -> ssl_module.SSLContext | None:
        """What a client of this cluster needs to talk to it (None: plain http)."""
        certs = self.members[0].spec.certs_dir if self.members else None
        return client_ssl(certs) if certs else None

    def client(self, m: Member | str | int, timeout: float = 10.0) -> Client:
        """A cached client for member m (closed by stop())."""
        member = self.member(m)
        c = self._clients.get((member.name, timeout))
        if c is None:
            c = Client(member.endpoint, timeout=timeout, ssl=self.ssl)
            self._clients[(member.name, timeout)] = c
        return c

    # ---- state file
    def state(self) -> dict:
        return {
            "token": self.token,
            "settings": self.settings,
            "member_cmd": self.member_cmd,
            "configs_dir": str(self.configs_dir),
            "proxy": {
                "enabled": self.proxy_enabled,
                "proc": self.proxy_proc.to_json() if self.proxy_proc else None,
                "control": self.proxy_control.url if self.proxy_control else None,
            },
            "members": [
                {
                    "spec": m.spec.to_json(),
                    "proc": m.proc.to_json() if m.proc else None,
                    "id": m.id,
                    "wiped": m.wiped,
                }
                for m in self.members
            ],
        }

    def save_state(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.base_dir / (STATE_FILE + ".tmp")
        tmp.write_text(json.dumps(self.state(), indent=2))
        tmp.rename(self.base_dir / STATE_FILE)

    @classmethod
    def attach(cls, base_dir: str | Path) -> LocalCluster:
        """The cluster recorded in base_dir/cluster.json (started by another process)."""
        path = Path(base_dir).resolve() / STATE_FILE
        if not path.exists():
            raise ClusterError(f"no cluster state in {path.parent} (start one with `up`)")
        st = json.loads(path.read_text())
        self = cls.__new__(cls)
        self.base_dir = path.parent
        self.configs_dir = Path(st["configs_dir"])
        self.member_cmd = st["member_cmd"]
        self.proxy_enabled = st["proxy"]["enabled"]
        self.detached = True
        self._attached = True
        self.env = None
        self.ready_timeout = 60.0
        self.settings = st["settings"]
        self.token = st["token"]
        proxy = st["proxy"]
        self.proxy_proc = Proc.from_json(proxy["proc"]) if proxy["proc"] else None
        self.proxy_control = ProxyControl(proxy["control"]) if proxy["control"] else None
        self._clients = {}
        self.members = [
            Member(
                MemberSpec(**m["spec"]),
                Proc.from_json(m["proc"]) if m["proc"] else None,
                m["id"],
                m["wiped"],
            )
            for m in st["members"]
        ]
        return self

    # ---- lifecycle
    async def __aenter__(self) -> LocalCluster:
        try:
            await self.start()
            await self.wait_ready()
        except BaseException:
            await self.stop(grace=0)
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop(grace=0 if exc[0] is not None else 5.0)

    async def start(self) -> None:
        """Start the proxy helper and every member (does not wait for a leader).

        A new LocalCluster needs data dirs that are empty: members keep their cluster's
        membership (peer URLs) in their data, so an earlier cluster's data with this one's new
        ports would never elect. To start a stopped cluster again with its data, use
        LocalCluster.attach(base_dir).start()."""
        if not self._attached:
            used = [m.name for m in self.members if any(Path(m.spec.data_dir).glob("*"))]
            if used:
                raise ClusterError(
                    f"{self.base_dir} holds an earlier cluster's data ({', '.join(used)}): "
                    "use a fresh base_dir, or LocalCluster.attach(base_dir) to start it again"
                )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        certs = self.members[0].spec.certs_dir
        if certs:
            make_certs(Path(certs), [m.spec for m in self.members])
        if self.proxy_enabled:
            await self._start_proxy()
        for m in self.members:
            self._spawn(m)
        self.save_state()

    async def wait_ready(self, timeout: float | None = None) -> Member:
        """Until a leader is elected and every running member answers /health; the leader."""
        deadline = time.monotonic() + (timeout or self.ready_timeout)
        leader = await self.wait_leader(timeout=deadline - time.monotonic())
        while True:
            running = [m for m in self.members if m.state() == "running"]
            ok = await asyncio.gather(*(self._healthy(m) for m in running))
            if all(ok):
                return leader
            if time.monotonic() > deadline:
                bad = [m.name for m, h in zip(running, ok, strict=True) if not h]
                raise ClusterError(f"members not healthy: {bad}{self._log_tails(bad)}")
            await asyncio.sleep(0.1)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop every member and the proxy helper (by PID), close the clients."""
        await asyncio.gather(*(m.proc.stop(grace) for m in self.members if m.proc))
        if self.proxy_proc:
            await self.proxy_proc.stop(grace=2)
        await self.close_clients()
        if self.base_dir.exists():
            self.save_state()

    async def close_clients(self) -> None:
        for c in self._clients.values():
            await c.close()
        self._clients.clear()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ if self.env is None else self.env)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env

    async def _start_proxy(self) -> None:
        spec_path = self.base_dir / "proxy-spec.json"
        ready = self.base_dir / "proxy.json"
        ready.unlink(missing_ok=True)
        spec = {
            "members": [
                {
                    "name": m.name,
                    "ip": m.spec.ip,
                    "proxy_port": m.spec.proxy_port,
                    "peer_port": m.spec.peer_port,
                }
                for m in self.members
            ],
            "ready_file": str(ready),
        }
        spec_path.write_text(json.dumps(spec))
        self.proxy_proc = spawn(
            [sys.executable, "-c", _PROXY_MAIN, str(spec_path)],
            log_path=self.base_dir / "logs" / "proxy.log",
            env=self._env(),
            detached=self.detached,
        )
        deadline = time.monotonic() + 20
        while not ready.exists():
            if not self.proxy_proc.alive() or time.monotonic() > deadline:
                log = (self.base_dir / "logs" / "proxy.log").read_text()[-2000:]
                await self.proxy_proc.kill()
                raise ClusterError(f"fault proxy did not start:\n{log}")
            await asyncio.sleep(0.02)
        self.proxy_control = ProxyControl(json.loads(ready.read_text())["control"])

    def argv(self, m: Member) -> list[str]:
        return member_argv(
            m.spec,
            [x.spec for x in self.members],
            token=self.token,
            cluster_state="existing" if m.wiped else "new",
            settings=self.settings,
            member_cmd=self.member_cmd,
        )

    def _spawn(self, m: Member) -> None:
        Path(m.spec.data_dir).parent.mkdir(parents=True, exist_ok=True)
        m.proc = spawn(
            self.argv(m),
            log_path=Path(m.spec.log_path),
            cwd=self.base_dir,
            env=self._env(),
            detached=self.detached,
        )

    # ---- observation
    async def _status(self, m: Member, timeout: float = 2.0) -> dict | None:
        if m.state() != "running":
            return None
        try:
            st = await self.client(m).status(timeout=timeout)
        except Exception:
            return None
        m.id = int(st["header"]["member_id"])
        return st

    async def _healthy(self, m: Member) -> bool:
        try:
            return await self.client(m).health(timeout=2.0)
        except Exception:
            return False

    async def statuses(self) -> dict[str, dict | None]:
        """Each member's /v3/maintenance/status (None when down, paused or not answering)."""
        res = await asyncio.gather(*(self._status(m) for m in self.members))
        return {m.name: st for m, st in zip(self.members, res, strict=True)}

    def by_id(self, member_id: int) -> Member | None:
        return next((m for m in self.members if m.id == member_id), None)

    async def leader(self, sts: dict[str, dict | None] | None = None) -> Member | None:
        """The member a majority of the cluster follows and which says it leads, else None
        (judged from `sts`, statuses() just taken, when given)."""
        sts = sts if sts is not None else await self.statuses()
        votes: dict[int, int] = {}
        for st in sts.values():
            if st and int(st.get("leader", 0)):
                votes[int(st["leader"])] = votes.get(int(st["leader"]), 0) + 1
        quorum = len(self.members) // 2 + 1
        for lid, n in votes.items():
            m = self.by_id(lid)
            st = sts.get(m.name) if m else None
            if n >= quorum and st and int(st["header"]["member_id"]) == int(st.get("leader", 0)):
                return m
        return None

    async def wait_leader(self, timeout: float = 30.0) -> Member:
        deadline = time.monotonic() + timeout
        while True:
            if (m := await self.leader()) is not None:
                return m
            dead = [x.name for x in self.members if x.proc and not x.proc.alive()]
            if len(dead) == len(self.members):
                raise ClusterError("every member has exited" + self._log_tails(dead))
            if time.monotonic() > deadline:
                raise ClusterError(
                    f"no leader after {timeout:.0f}s (dead: {dead or 'none'})"
                    + self._log_tails([x.name for x in self.members])
                )
            await asyncio.sleep(0.1)

    def _log_tails(self, names: list[str], lines: int = 8) -> str:
        out = []
        for n in names:
            path = Path(self.member(n).spec.log_path)
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"\n--- {n} log tail ---\n" + "\n".join(tail))
        return "".join(out)

    # ---- process faults
    async def kill(self, m: Member | str | int) -> Member:
        """kill -9."""
        member = self.member(m)
        if member.proc:
            await member.proc.kill()
        self.save_state()
        return member

    async def stop_member(self, m: Member | str | int, grace: float = 5.0) -> Member:
        """SIGTERM (SIGKILL after `grace` s)."""
        member = self.member(m)
        if member.proc:
            await member.proc.stop(grace)
        self.save_state()
        return member

    async def restart(self, m: Member | str | int) -> Member:
        """Start the member again with its data dir (killing it first if it still runs)."""
        member = self.member(m)
        if member.proc and member.proc.alive():
            await member.proc.kill()
        self._spawn(member)
        self.save_state()
        return member

    async def pause(self, m: Member | str | int) -> Member:
        """SIGSTOP."""
        member = self.member(m)
        if not (member.proc and member.proc.signal(signal.SIGSTOP)):
            raise ClusterError(f"{member.name} is not running")
        await self._wait_state(member, "paused")
        return member

    async def resume(self, m: Member | str | int) -> Member:
        """SIGCONT."""
        member = self.member(m)
        if member.proc:
            member.proc.signal(signal.SIGCONT)
            await self._wait_state(member, "running")
        return member

    async def _wait_state(self, m: Member, state: str) -> None:
        for _ in range(200):
            if m.state() in (state, "dead"):
                return
            await asyncio.sleep(0.01)

    async def wipe(self, m: Member | str | int) -> Member:
        """Kill the member and delete its data dir; restart() then rejoins it as 'existing'."""
        member = await self.kill(m)
        shutil.rmtree(member.spec.data_dir, ignore_errors=True)
        member.wiped = True
        self.save_state()
        return member

    # ---- link faults (through the proxy helper)
    def _proxy(self) -> ProxyControl:
        if self.proxy_control is None:
            raise ClusterError("this cluster runs without fault proxies (proxy=False)")
        return self.proxy_control

    def _links(self, a: Member | str | int, b: Member | str | int | None, both: bool):
        src = self.member(a).name
        dsts = [self.member(b).name] if b is not None else [x.name for x in self.members]
        for dst in dsts:
            if dst == src:
                continue
            yield src, dst
            if both:
                yield dst, src

    async def cut(
        self,
        a: Member | str | int,
        b: Member | str | int | None = None,
        both: bool = True,
        mode: str = "blackhole",
    ) -> None:
        """Cut the peer link a->b (and b->a when both); b=None: a and every other member."""
        for src, dst in self._links(a, b, both):
            await self._proxy().set(src, dst, cut=True, mode=mode)

    async def isolate(self, m: Member | str | int, mode: str = "blackhole") -> None:
        await self.cut(m, None, both=True, mode=mode)

    async def heal(
        self,
        a: Member | str | int | None = None,
        b: Member | str | int | None = None,
        both: bool = True,
    ) -> None:
        """Clear every fault on a->b (and b->a); a=None: on all links."""
        if a is None:
            await self._proxy().heal()
            return
        for src, dst in self._links(a, b, both):
            await self._proxy().heal(src, dst)

    async def latency(
        self, a: Member | str | int, b: Member | str | int, ms: float, both: bool = False
    ) -> None:
        for src, dst in self._links(a, b, both):
            await self._proxy().set(src, dst, latency_ms=ms)

    async def drop(
        self, a: Member | str | int, b: Member | str | int, share: float, both: bool = False
    ) -> None:
        """Break this share of a->b's traffic (per chunk: the connection is closed instead)."""
        for src, dst in self._links(a, b, both):
            await self._proxy().set(src, dst, drop=share)

    async def faults(self) -> dict:
        return await self._proxy().faults()
