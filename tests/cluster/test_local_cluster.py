"""LocalCluster against stand-in member processes (tests/cluster/fake_member.py).

The stand-in follows the smallest-named member it hears from over the peer links (which go
through the fault proxies), so elections here are a toy, but the processes, flags, configs,
proxies and the PID bookkeeping are the real ones.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cluster import ClusterError, LocalCluster
from cluster.config import CONFIGS_DIR


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


async def settle(c: LocalCluster, name: str) -> None:
    for _ in range(50):
        leader = await c.leader()
        if leader is not None and leader.name == name:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"leader is {await c.leader()}, expected {name}")


async def test_members_start_from_configs_on_their_own_ips(tmp_path, fake_member_cmd):
    async with LocalCluster(
        3, tmp_path, member_cmd=fake_member_cmd, heartbeat_interval=50, pre_vote=False
    ) as c:
        assert [m.spec.ip for m in c.members] == ["127.0.0.11", "127.0.0.12", "127.0.0.13"]
        assert len(set(c.endpoints)) == 3
        assert (await c.wait_leader()).name == "m1"
        st = await c.client("m2").status()
        # the compose config file is read; flags override addresses and add settings
        assert st["fake"]["config"]["name"] == "m2"
        assert st["fake"]["config"] == __import__("yaml").safe_load(
            (CONFIGS_DIR / "m2.yaml").read_text()
        )
        assert st["fake"]["extra"] == ["--heartbeat-interval=50", "--pre-vote=false"]
        argv = c.argv(c.member("m2"))
        assert f"--config-file={CONFIGS_DIR / 'm2.yaml'}" in argv
        m = c.member(2)
        assert f"--initial-advertise-peer-urls=http://127.0.0.12:{m.spec.proxy_port}" in argv
        assert f"--listen-peer-urls=http://127.0.0.12:{m.spec.peer_port}" in argv
        assert (tmp_path / "cluster.json").exists()
        assert "fake member m2 up" in Path(m.spec.log_path).read_text()


async def test_kill_restart_pause_resume(tmp_path, fake_member_cmd):
    async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd) as c:
        leader = await c.wait_leader()
        pid = leader.proc.pid
        await c.kill(leader)
        assert leader.state() == "dead" and not alive(pid)
        assert (await c.wait_leader()).name == "m2"
        await c.restart(leader)
        assert leader.state() == "running" and leader.proc.pid != pid
        await settle(c, "m1")
        await c.pause("m3")
        assert c.member("m3").state() == "paused"
        assert (await c.statuses())["m3"] is None
        await c.resume("m3")
        assert c.member("m3").state() == "running"
        assert (await c.statuses())["m3"] is not None


async def test_link_faults_go_through_the_proxies(tmp_path, fake_member_cmd):
    async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd) as c:
        await c.wait_leader()
        await c.isolate("m1")
        await settle(c, "m2")  # m2 and m3 no longer hear m1
        sts = await c.statuses()
        assert int(sts["m1"]["leader"]) == c.member("m1").id  # m1 only hears itself
        faults = await c.faults()
        assert {(r["src"], r["dst"]) for r in faults["rules"]} == {
            ("m1", "m2"),
            ("m2", "m1"),
            ("m1", "m3"),
            ("m3", "m1"),
        }
        await c.heal()
        await settle(c, "m1")
        # one direction only: m2 stops hearing m1, m3 still does
        await c.cut("m1", "m2", both=False)
        await asyncio.sleep(0.6)
        sts = await c.statuses()
        assert int(sts["m2"]["leader"]) == c.member("m2").id
        assert int(sts["m3"]["leader"]) == c.member("m1").id
        await c.heal("m1", "m2")
        await c.latency("m1", "m3", 50, both=True)
        await c.drop("m2", "m3", 0.1)
        rules = (await c.faults())["rules"]
        assert {(r["src"], r["dst"], r["latency_ms"], r["drop"]) for r in rules} == {
            ("m1", "m3", 50.0, 0.0),
            ("m3", "m1", 50.0, 0.0),
            ("m2", "m3", 0.0, 0.1),
        }


async def test_wipe_deletes_data_and_rejoins_as_existing(tmp_path, fake_member_cmd):
    async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd) as c:
        m3 = c.member("m3")
        Path(m3.spec.data_dir).mkdir(parents=True, exist_ok=True)
        (Path(m3.spec.data_dir) / "marker").write_text("x")
        await c.wipe(m3)
        assert m3.state() == "dead" and not Path(m3.spec.data_dir).exists()
        await c.restart(m3)
        assert "--initial-cluster-state=existing" in c.argv(m3)
        await c.wait_ready()
        assert (await c.client(m3).status())["fake"]["state"] == "existing"


async def test_nothing_is_left_running_when_the_body_fails(tmp_path, fake_member_cmd):
    pids = []
    with pytest.raises(RuntimeError):
        async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd) as c:
            pids = [m.proc.pid for m in c.members] + [c.proxy_proc.pid]
            await c.pause("m2")  # a stopped process must die too
            raise RuntimeError("test body failed")
    assert pids and not any(alive(p) for p in pids)


async def test_attach_reads_the_state_of_a_running_cluster(tmp_path, fake_member_cmd):
    async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd) as c:
        other = LocalCluster.attach(tmp_path)
        assert other.endpoints == c.endpoints
        assert [m.proc.pid for m in other.members] == [m.proc.pid for m in c.members]
        assert (await other.wait_leader()).name == "m1"
        await other.kill("m3")  # by PID, from the state file alone
        assert c.member("m3").state() == "dead"
        await other.close_clients()


async def test_a_new_cluster_refuses_an_earlier_clusters_data(tmp_path, fake_member_cmd):
    (tmp_path / "data" / "m2" / "member").mkdir(parents=True)
    with pytest.raises(ClusterError, match="earlier cluster's data"):
        async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd):
            pass


async def test_a_member_that_cannot_start_fails_fast_with_its_log(tmp_path):
    cmd = ["/bin/sh", "-c", "echo 'no such member'; exit 3", "sh"]
    with pytest.raises(ClusterError, match="no such member"):
        async with LocalCluster(3, tmp_path, member_cmd=cmd, ready_timeout=20):
            pass


async def test_no_proxy_mode_advertises_real_peer_ports(tmp_path, fake_member_cmd):
    async with LocalCluster(3, tmp_path, member_cmd=fake_member_cmd, proxy=False) as c:
        assert c.proxy_proc is None
        m = c.member("m1")
        assert f"--initial-advertise-peer-urls={m.spec.listen_peer_url}" in c.argv(m)
        with pytest.raises(ClusterError, match="without fault proxies"):
            await c.cut("m1", "m2")
