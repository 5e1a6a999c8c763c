"""Real ``python -m raftkv`` member processes on free loopback ports, for integration tests.

Every process started here is remembered and killed (by PID) when the test's cluster is
closed, whatever happened; data dirs live under pytest's tmp_path.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cluster.config import MEMBER_CMD, free_ports, member_flags

ROOT = Path(__file__).resolve().parents[2]


def b64(s: str | bytes) -> str:
    if isinstance(s, str):
        s = s.encode()
    return base64.b64encode(s).decode()


def unb64(s: str) -> str:
    return base64.b64decode(s).decode()


class Member:
    def __init__(self, name: str, client_port: int, peer_port: int, data_dir: Path) -> None:
        self.name = name
        self.client_port = client_port
        self.peer_port = peer_port
        self.data_dir = data_dir
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{name}.log"
        self.id = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def args(self, initial_cluster: str, extra: list[str]) -> list[str]:
        return [
            *MEMBER_CMD,
            *member_flags(
                self.name,
                str(self.data_dir),
                self.url,
                self.peer_url,
                self.peer_url,
                initial_cluster,
            ),
            *extra,
        ]

    def start(self, initial_cluster: str, extra: list[str]) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT), RAFTKV_LOG_FORMAT="console")
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            self.args(initial_cluster, extra), stdout=log, stderr=log, env=env, cwd=str(ROOT)
        )
        log.close()

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                return self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()
        return self.proc.returncode if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # --- client calls ---------------------------------------------------------------------

    def call(
        self, path: str, body: dict | None = None, timeout: float = 15.0, token: str = ""
    ) -> tuple[int, Any]:
        data = json.dumps(body or {}).encode()
        headers = {"Authorization": token} if token else {}
        req = urllib.request.Request(self.url + path, data=data, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                return e.code, json.loads(raw)
            except ValueError:
                return e.code, raw.decode(errors="replace")

    def ok(
        self, path: str, body: dict | None = None, timeout: float = 15.0, token: str = ""
    ) -> Any:
        status, resp = self.call(path, body, timeout, token)
        assert status == 200, f"{self.name} {path} {body}: {status} {resp}"
        return resp

    def put(self, key: str, value: str, **kw: Any) -> dict:
        return self.ok("/v3/kv/put", {"key": b64(key), "value": b64(value), **kw})

    def get(self, key: str, **kw: Any) -> dict:
        return self.ok("/v3/kv/range", {"key": b64(key), **kw})

    def status(self, timeout: float = 3.0) -> dict | None:
        try:
            status, resp = self.call("/v3/maintenance/status", {}, timeout)
        except (OSError, urllib.error.URLError):
            return None
        return resp if status == 200 else None


class Cluster:
    def __init__(self, tmp: Path, n: int = 3, extra: list[str] | None = None) -> None:
        ports = free_ports(2 * n)
        self.members = [
            Member(f"m{i + 1}", ports[2 * i], ports[2 * i + 1], tmp / f"m{i + 1}.etcd")
            for i in range(n)
        ]
        self.extra = list(extra or [])
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start(self, m: Member | None = None, extra: list[str] | None = None) -> None:
        for mm in [m] if m is not None else self.members:
            mm.start(self.initial_cluster, self.extra + list(extra or []))

    def close(self) -> None:
        for m in self.members:
            m.kill9()

    def wait_leader(self, timeout: float = 60.0, among: list[Member] | None = None) -> Member:
        """The member that all live members (or ``among``) agree is the leader."""
        deadline = time.monotonic() + timeout
        members = among or [m for m in self.members if m.alive]
        last: Any = None
        while time.monotonic() < deadline:
            st = {m.name: m.status() for m in members}
            last = st
            leaders = {int(s["leader"]) for s in st.values() if s and s.get("leader")}
            if len(leaders) == 1 and all(st.values()):
                lid = leaders.pop()
                for m in self.members:
                    s = st.get(m.name)
                    if s and int(s["header"]["member_id"]) == lid:
                        for mm in members:
                            mm.id = int(st[mm.name]["header"]["member_id"])
                        return m
            time.sleep(0.2)
        logs = "\n".join(f"--- {m.name}\n{m.log()[-3000:]}" for m in self.members)
        raise AssertionError(f"no leader within {timeout}s: {last}\n{logs}")

    def followers(self, leader: Member) -> list[Member]:
        return [m for m in self.members if m is not leader and m.alive]
