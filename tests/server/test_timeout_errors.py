"""Which "request timed out" a write gets, as etcd 3.4's parseProposeCtxErr chooses: a
follower whose link to the leader is down answers "possibly due to connection lost"."""

from __future__ import annotations

import asyncio

import pytest

from cluster import LocalCluster
from cluster.client import EtcdError
from tests.cluster.real import needs_server
from tests.ops.helpers import FAST

pytestmark = [needs_server, pytest.mark.timeout(60)]


async def test_write_through_a_follower_cut_from_the_leader_times_out_due_to_connection_lost(
    tmp_path,
):
    async with LocalCluster(3, tmp_path, **FAST) as c:
        leader = await c.wait_leader()
        f = next(m for m in c.members if m.name != leader.name)
        await c.client(f).put("before", "x")
        # f still hears the leader, but nothing it sends arrives (its proposals included)
        await c.cut(f, leader, both=False, mode="blackhole")
        await asyncio.sleep(1.0)
        with pytest.raises(EtcdError) as e:
            await c.client(f, timeout=20).put("k", "v")
        assert e.value.message == "etcdserver: request timed out, possibly due to connection lost"
        await c.heal()
        # and a write through the leader, whose links are fine, goes through
        await c.client(leader).put("after", "y")
