"""`python -m cluster` end to end with stand-in members: up, status, faults, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def cli(tmp_path, fake_member_cmd):
    env = {**os.environ, "RAFTKV_CLUSTER_DIR": str(tmp_path / "state")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        if args and args[0] == "up":
            # free ports: other test runs on this machine may hold 2379 on these IPs
            args = (*args, "--free-ports", "--member-cmd", " ".join(fake_member_cmd))
        p = subprocess.run(
            [sys.executable, "-m", "cluster", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and p.returncode != 0:
            raise AssertionError(f"{args}: exit {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    yield run
    run("down", check=False)  # whatever happened, leave nothing running


def test_up_status_faults_down(cli, tmp_path):
    up = cli("up", "--set", "heartbeat-interval=50")
    assert "cluster up: 3 members, leader m1" in up.stdout
    assert "endpoints: http://127.0.0.11:" in up.stdout
    assert "Unclosed" not in up.stderr
    # a second `up` refuses while the first cluster runs
    again = cli("up", check=False)
    assert again.returncode == 1 and "already running" in again.stderr

    status = cli("status").stdout.splitlines()
    assert status[0].split()[:4] == ["MEMBER", "ENDPOINT", "PROCESS", "ROLE"]
    rows = {line.split()[0]: line.split() for line in status[1:]}
    assert rows["m1"][3] == "leader" and rows["m2"][3] == "follower"
    assert rows["m2"][-1] == "m1"

    assert cli("leader").stdout.startswith("m1 http://127.0.0.11:")
    assert "kill m1: dead" in cli("kill", "m1").stdout
    assert "restart m1: running" in cli("restart", "m1").stdout
    assert "cut m2 -> m3" in cli("cut", "m2", "m3", "--one-way").stdout
    assert cli("faults").stdout.strip() == "m2->m3: cut (blackhole)"
    cli("latency", "m1", "m2", "20")
    cli("heal")
    assert cli("faults").stdout.strip() == "no faults"
    assert "pause m3: paused" in cli("pause", "m3").stdout
    assert "resume m3: running" in cli("resume", "m3").stdout
    logs = cli("logs", "m2").stdout
    assert "m2 | fake member m2 up" in logs

    state = tmp_path / "state" / "cluster.json"
    pids = [m["proc"]["pid"] for m in json.loads(state.read_text())["members"]]
    down = cli("down")
    assert "stopped: m1, m2, m3, proxy" in down.stdout
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert cli("down").stdout.strip() == "stopped: nothing was running"
    # `up` again starts the stopped cluster with its ports (and data); --fresh starts anew
    endpoints = up.stdout.split("endpoints: ")[1].strip()
    again = cli("up")
    assert "starting the stopped cluster" in again.stdout
    assert again.stdout.split("endpoints: ")[1].strip() == endpoints
    cli("down", "--clean")
    assert not state.exists()


def test_commands_without_a_cluster_explain(cli):
    p = cli("status", check=False)
    assert p.returncode == 1 and "start one with `up`" in p.stderr
