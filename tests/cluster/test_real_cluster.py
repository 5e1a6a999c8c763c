"""LocalCluster against the real member (`python -m raftkv`): faults move leadership, data
survives, the status table reads real members."""

from __future__ import annotations

import asyncio

import pytest

from cluster import LocalCluster
from cluster.cli import status_table
from tests.cluster.real import needs_server

pytestmark = [needs_server, pytest.mark.timeout(120)]

FAST = {"heartbeat_interval": 50, "election_timeout": 500}


async def new_leader(c: LocalCluster, old, timeout: float = 20.0):
    for _ in range(int(timeout * 10)):
        leader = await c.leader()
        if leader is not None and leader is not old:
            return leader
        await asyncio.sleep(0.1)
    raise AssertionError(f"no new leader (statuses: {await c.statuses()})")


async def test_leader_kill_isolation_and_wipe_on_real_members(tmp_path):
    async with LocalCluster(3, tmp_path, **FAST) as c:
        leader = await c.wait_leader()
        await c.client(leader).put("k", "v1")

        await c.kill(leader)
        second = await new_leader(c, leader)
        follower = next(m for m in c.members if m not in (leader, second))
        await c.client(follower).put("k", "v2")  # forwarded to the new leader
        await c.restart(leader)
        await c.wait_ready()
        assert (await c.client(leader).get("k")).value == b"v2"

        await c.isolate(second)  # the isolated leader loses its quorum; the others elect
        third = await new_leader(c, second)
        assert third is not second
        await c.client(third).put("k", "v3")
        await c.heal()
        await c.wait_ready()
        for _ in range(50):
            sts = await c.statuses()
            if len({int(s["raftAppliedIndex"]) for s in sts.values()}) == 1:
                break
            await asyncio.sleep(0.1)
        assert (await c.client(second).get("k")).value == b"v3"

        await c.wipe(follower)  # rejoins empty, is caught up by the leader
        await c.restart(follower)
        await c.wait_ready()
        assert (await c.client(follower).get("k")).value == b"v3"

        table = await status_table(c)
        rows = [line.split() for line in table.splitlines()[1:]]
        assert sorted(r[3] for r in rows) == ["follower", "follower", "leader"]
        assert {r[-1] for r in rows} == {(await c.leader()).name}


async def test_one_way_cut_and_latency_keep_the_cluster_serving(tmp_path):
    async with LocalCluster(3, tmp_path, **FAST) as c:
        leader = await c.wait_leader()
        others = [m for m in c.members if m is not leader]
        await c.latency(leader, others[0], 30, both=True)
        await c.cut(leader, others[1], both=False)  # the leader can't reach others[1]
        for i in range(5):
            resp = await c.client(others[0]).put("k", str(i))
            assert resp["header"]["revision"] > 1
        await c.heal()
        await c.wait_ready()
        assert (await c.client(others[1]).get("k")).value == b"4"
