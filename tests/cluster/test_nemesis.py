"""The nemesis: every fault against stand-in members, and the docker compose commands."""

from __future__ import annotations

import os
import random
import stat
import sys
import time

import pytest

from cluster import LocalCluster
from cluster.nemesis import ALL_FAULTS, ComposeTarget, LocalTarget, Nemesis


async def test_every_fault_is_injected_and_undone(tmp_path, fake_member_cmd):
    async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd) as c:
        await c.wait_leader()
        lines: list[str] = []
        nemesis = Nemesis(
            LocalTarget(c),
            ALL_FAULTS,
            rng=random.Random(1),
            log=lines.append,
            interval=(0.0, 0.05),
            hold=(0.3, 0.4),
        )
        for fault in ALL_FAULTS:
            await nemesis.inject(fault, until=time.monotonic() + 10)
            assert await nemesis.wait_leader(timeout=10) is not None
        assert dict(nemesis.done) == dict.fromkeys(ALL_FAULTS, 1)
        assert [m.state() for m in c.members] == ["running"] * 3
        assert (await c.faults())["rules"] == []
        assert any(line.startswith("kill -9 m1 (leader)") for line in lines)
        await nemesis.run(until=time.monotonic() + 1.5)  # the loop ends on time
        assert sum(nemesis.done.values()) > len(ALL_FAULTS)


async def test_link_faults_are_skipped_without_proxies(tmp_path, fake_member_cmd):
    async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd, proxy=False) as c:
        lines: list[str] = []
        nemesis = Nemesis(LocalTarget(c), ALL_FAULTS, log=lines.append)
        assert nemesis.faults == ("kill-leader", "pause")
        assert "skipped" in lines[0]


@pytest.fixture
def docker_calls(tmp_path, monkeypatch):
    """A fake `docker` on PATH that records its arguments."""
    log = tmp_path / "docker.log"
    fake = tmp_path / "bin" / "docker"
    fake.parent.mkdir()
    fake.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n"
        "print('c0ffee' if 'ps' in sys.argv else '')\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    return lambda: log.read_text().splitlines() if log.exists() else []


async def test_compose_target_drives_docker_compose(docker_calls):
    t = ComposeTarget(
        ["http://localhost:2379", "http://localhost:22379", "http://localhost:32379"],
        ["m1", "m2", "m3"],
    )
    assert not t.supports("lossy") and t.supports("isolate")
    await t.kill("m2")
    await t.restart("m2")
    await t.pause("m3")
    await t.resume("m3")
    await t.isolate("m1")
    await t.heal_all()
    calls = docker_calls()
    base = "compose -f docker-compose.yml -p raftkv"
    assert calls[:5] == [
        f"{base} kill -s SIGKILL m2",
        f"{base} start m2",
        f"{base} pause m3",
        f"{base} unpause m3",
        f"{base} ps -q -a m1",
    ]
    assert calls[5] == "network disconnect raftkv_raftkv c0ffee"
    assert "network connect --alias m1 raftkv_raftkv c0ffee" in calls
    assert f"{base} unpause m1" in calls and f"{base} start m3" in calls


def test_compose_target_needs_one_service_per_endpoint():
    with pytest.raises(ValueError):
        ComposeTarget(["http://localhost:2379"], ["m1", "m2"])
