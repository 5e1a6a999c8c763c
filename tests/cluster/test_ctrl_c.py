"""Ctrl-C (SIGINT) leaves nothing behind: no process, checked by PID (and /proc start time), and
no data dir, checked by path, for a chaos run, a foreground `python -m cluster up` (following
the logs, or still waiting for a leader), and the durability tests under pytest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.process import Proc
from tests.cluster.real import needs_server

ROOT = Path(__file__).resolve().parents[2]


def _procs(state_dir: Path) -> list[Proc]:
    """The members and the proxy helper a LocalCluster recorded in its state file."""
    state = json.loads((state_dir / "cluster.json").read_text())
    procs = [Proc.from_json(m["proc"]) for m in state["members"]]
    return [*procs, Proc.from_json(state["proxy"]["proc"])]


def _interrupt(p: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    p.send_signal(signal.SIGINT)
    try:
        return p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()


@pytest.mark.timeout(120)
@needs_server
def test_ctrl_c_stops_the_chaos_run_and_removes_its_cluster(tmp_path):
    base = tmp_path / "cluster"
    p = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "scripts" / "chaos.py"),
            "--duration=60",
            "--faults=pause",
            f"--base-dir={base}",
            f"--history={tmp_path / 'history.jsonl'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        for line in p.stdout:  # interrupt while a member is SIGSTOPped
            seen.append(line)
            if "] pause m" in line:
                break
        else:
            raise AssertionError("".join(seen) + p.stderr.read())
        procs = _procs(base)
        assert all(proc.alive() for proc in procs)
        out, err = _interrupt(p)
    finally:
        if p.poll() is None:
            p.kill()  # its members die with it (PR_SET_PDEATHSIG)
    assert p.returncode == 130, out + err
    assert "chaos interrupted: stopped every process it started" in err
    assert [proc.pid for proc in procs if proc.alive()] == []
    assert not base.exists()


@pytest.fixture
def up(tmp_path):
    """Start `python -m cluster up` in the foreground; afterwards, whatever the test did, stop
    the process and every member it recorded (they run detached: nothing else would)."""
    started: list[subprocess.Popen] = []

    def start(member_cmd: list[str], *extra: str) -> subprocess.Popen:
        env = {**os.environ, "RAFTKV_CLUSTER_DIR": str(tmp_path / "state")}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        argv = [sys.executable, "-m", "cluster", "up", "--free-ports", *extra]
        argv += ["--member-cmd", " ".join(member_cmd)]
        p = subprocess.Popen(
            argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(p)
        return p

    yield start
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()
    if (tmp_path / "state" / "cluster.json").exists():
        for proc in _procs(tmp_path / "state"):
            proc.signal(signal.SIGKILL)


def test_ctrl_c_on_up_follow_stops_the_cluster_and_removes_its_state_dir(
    tmp_path, up, fake_member_cmd
):
    p = up(fake_member_cmd, "--follow")
    for line in p.stdout:
        if line.startswith("endpoints: "):
            break
    procs = _procs(tmp_path / "state")
    assert all(proc.alive() for proc in procs)
    out, err = _interrupt(p)
    assert p.returncode == 130, out + err
    assert "interrupted: stopped every process of the cluster; removed" in err
    assert [proc.pid for proc in procs if proc.alive()] == []
    assert not (tmp_path / "state").exists()


def test_ctrl_c_while_up_waits_for_a_leader_leaves_nothing_behind(tmp_path, up):
    # members that never answer: `up` is still waiting for a leader when Ctrl-C comes
    p = up([sys.executable, "-c", "'import time; time.sleep(120)'"])
    state = tmp_path / "state" / "cluster.json"
    for _ in range(300):
        if state.exists():
            break
        time.sleep(0.05)
    procs = _procs(tmp_path / "state")
    assert all(proc.alive() for proc in procs) and p.poll() is None
    out, err = _interrupt(p)
    assert p.returncode == 130, out + err
    assert [proc.pid for proc in procs if proc.alive()] == []
    assert not (tmp_path / "state").exists()


def _members_under(path: Path) -> list[int]:
    """PIDs of the processes whose command line names a path under `path` (a member's
    --data-dir): how the harness of tests/server is seen from outside."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"pytest" not in argv[1:3] and any(str(path).encode() in a for a in argv):
            pids.append(int(proc.name))
    return pids


@pytest.mark.timeout(120)
@needs_server
def test_ctrl_c_on_the_durability_tests_leaves_no_member_and_no_data_dir(tmp_path):
    base = tmp_path / "pytest"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={base}",
            "tests/server/test_failures.py::"
            "test_kill9_leader_under_load_loses_no_acknowledged_write_and_it_catches_up",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(members := _members_under(base)) < 3:
        assert time.monotonic() < deadline and p.poll() is None, p.communicate()[0]
        time.sleep(0.1)
    out, _ = _interrupt(p)  # pytest's own teardown stops the harness' members
    assert "KeyboardInterrupt" in out, out
    assert [pid for pid in members if Path(f"/proc/{pid}").exists()] == []
    assert list(base.rglob("*.etcd")) == []  # tmp_path_retention_policy = "failed" (pyproject)
