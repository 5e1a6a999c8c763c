"""Start and stop local clusters for the differential tests: real etcd 3.4 (fetched by
scripts/install-etcd.sh) and raftkv (``python -m raftkv`` with etcd's flags), both with three
members on loopback ports and temporary data dirs. Everything started here is killed here."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from cluster.config import free_ports, member_flags
from tests.api import rawhttp

ROOT = Path(__file__).resolve().parents[2]


def etcd_binaries() -> tuple[str, str] | None:
    """(etcd, etcdctl) from the project's install script, or None when it cannot run."""
    script = ROOT / "scripts" / "install-etcd.sh"
    try:
        out = subprocess.run(
            ["bash", str(script)], capture_output=True, text=True, timeout=300, check=True
        ).stdout.split()
    except (subprocess.SubprocessError, OSError):
        return None
    return (out[0], out[1]) if len(out) >= 2 else None


def raftkv_available() -> str | None:
    """None when a raftkv member can be started, else the reason it cannot yet."""
    if importlib.util.find_spec("raftkv.server") is None:
        return "raftkv.server does not exist yet"
    if not (ROOT / "raftkv" / "__main__.py").exists():
        return "raftkv/__main__.py (the member entry point) does not exist yet"
    return None


@dataclass
class Cluster:
    kind: str
    client_urls: list[str]
    procs: list[subprocess.Popen] = field(default_factory=list)
    tmp: str = ""
    names: list[str] = field(default_factory=list)
    peer_urls: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.client_urls[0]

    def leader_url(self) -> str:
        for u in self.client_urls:
            r = rawhttp.request(u, "/v3/maintenance/status", b"{}")
            if r.status == 200:
                import json

                d = json.loads(r.body)
                if d.get("leader") == d["header"]["member_id"]:
                    return u
        return self.client_urls[0]

    def stop(self) -> None:
        for p in self.procs:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
        for p in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _wait_ready(c: Cluster, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for i, p in enumerate(c.procs):
            if p.poll() is not None:
                log = os.path.join(c.tmp, f"{c.names[i]}.log")
                with open(log, "rb") as f:
                    tail = f.read()[-2000:].decode("utf-8", "replace")
                raise RuntimeError(
                    f"{c.kind} member {c.names[i]} exited with {p.returncode}:\n{tail}"
                )
        try:
            if all(
                rawhttp.request(u, "/v3/kv/range", b'{"key":"AA=="}', timeout=2).status == 200
                for u in c.client_urls
            ):
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{c.kind} cluster not ready after {timeout}s; logs in {c.tmp}")


def _start(kind: str, argv0: list[str], members: int, extra: list[str], env: dict) -> Cluster:
    ports = free_ports(2 * members)
    names = [f"n{i + 1}" for i in range(members)]
    client = [f"http://127.0.0.1:{ports[i]}" for i in range(members)]
    peer = [f"http://127.0.0.1:{ports[members + i]}" for i in range(members)]
    initial = ",".join(f"{n}={u}" for n, u in zip(names, peer, strict=True))
    tmp = tempfile.mkdtemp(prefix=f"diff-{kind}-")
    c = Cluster(kind, client, tmp=tmp, names=names, peer_urls=peer)
    try:
        for i, n in enumerate(names):
            log = open(os.path.join(tmp, f"{n}.log"), "wb")  # noqa: SIM115 (lives with the process)
            c.procs.append(
                subprocess.Popen(
                    [
                        *argv0,
                        *member_flags(
                            n, os.path.join(tmp, n), client[i], peer[i], peer[i], initial
                        ),
                        "--initial-cluster-state",
                        "new",
                        *extra,
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, **env},
                )
            )
        _wait_ready(c, 60)
    except BaseException:
        c.stop()
        raise
    return c


def start_etcd(etcd: str, members: int = 3, extra: tuple[str, ...] = ()) -> Cluster:
    return _start("etcd", [etcd], members, ["--initial-cluster-token", "diff", *extra], {})


def start_raftkv(
    members: int = 3, extra: tuple[str, ...] = (), env: dict[str, str] | None = None
) -> Cluster:
    return _start(
        "raftkv",
        [sys.executable, "-m", "raftkv"],
        members,
        list(extra),
        {"PYTHONPATH": str(ROOT), **(env or {})},
    )
