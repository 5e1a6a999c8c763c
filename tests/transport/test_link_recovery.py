"""Peer links come back by themselves after faults that leave no trace on the socket: a link
blackholed (nothing delivered, nothing answered, no reset) for longer than every stream
timeout, a link whose connections stay silent for good after the heal (the proxy's "stale"
cut: a path whose address changed, where TCP reports nothing for many minutes), and a member
paused (SIGSTOP) for over 10 s. After the heal / resume the member catches up with the leader
(same raftIndex and raftAppliedIndex) within a bounded time, without a restart."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from cluster import LocalCluster
from tests.cluster.real import needs_server
from tests.ops.helpers import eventually

pytestmark = [needs_server, pytest.mark.timeout(120)]

FAULT_S = 11.0  # longer than the transport's stream timeouts (5 s) and the link watchdog (10 s)
CATCH_UP_S = 10.0


async def _load(c: LocalCluster, stop: asyncio.Event) -> None:
    """Puts through every member until ``stop``; failures (no quorum, paused member) ignored."""

    async def one(w: int) -> None:
        i = 0
        while not stop.is_set():
            m = c.members[(w + i) % len(c.members)]
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.client(m, timeout=2).put(f"k{w}", f"v{i}"), 2)
            i += 1
            await asyncio.sleep(0.01)

    await asyncio.gather(*(one(w) for w in range(3)))


async def _caught_up(c: LocalCluster, name: str) -> None:
    # written after the fault: it reaches the member only through the healed links
    leader = await c.wait_leader()
    await c.client(leader).put("probe", "x")

    async def same() -> bool:
        leader = await c.leader()
        sts = await c.statuses()
        if leader is None or not sts[leader.name] or not sts[name]:
            return False
        lead, me = sts[leader.name], sts[name]
        return (me["raftIndex"], me["raftAppliedIndex"]) == (
            lead["raftIndex"],
            lead["raftAppliedIndex"],
        )

    await eventually(same, timeout=CATCH_UP_S, what=f"{name} caught up with the leader")


async def _under_load(c: LocalCluster, fault, undo, name: str) -> None:
    stop = asyncio.Event()
    load = asyncio.create_task(_load(c, stop))
    try:
        await asyncio.sleep(0.5)
        await fault()
        await asyncio.sleep(FAULT_S)
        await undo()
        await asyncio.sleep(0.5)
    finally:
        stop.set()
        await load
    await _caught_up(c, name)


async def test_isolated_follower_catches_up_though_its_old_connections_stay_silent(tmp_path):
    # The incident: a follower is partitioned away; after the heal the leader redials it (its
    # connections were reset) and probes it, but the follower's own connections stay silent
    # for good (the proxy's "stale" cut: TCP reports nothing for many minutes). Its answers
    # to the probes are lost until its own timeouts make it redial.
    async with LocalCluster(3, tmp_path) as c:
        leader = await c.wait_leader()
        f = next(m for m in c.members if m.name != leader.name)

        async def isolate() -> None:
            await c.cut(f, None, both=False, mode="stale")  # f -> every peer
            for m in c.members:
                if m is not f:
                    await c.cut(m, f, both=False, mode="blackhole")

        await _under_load(c, isolate, c.heal, f.name)


async def test_follower_catches_up_after_a_long_blackhole_of_its_links(tmp_path):
    async with LocalCluster(3, tmp_path) as c:
        leader = await c.wait_leader()
        f = next(m for m in c.members if m.name != leader.name)
        await _under_load(
            c,
            lambda: c.cut(f, leader, both=True, mode="blackhole"),
            lambda: c.heal(f, leader, both=True),
            f.name,
        )


async def test_follower_catches_up_after_a_long_pause(tmp_path):
    async with LocalCluster(3, tmp_path) as c:
        leader = await c.wait_leader()
        f = next(m for m in c.members if m.name != leader.name)
        await _under_load(c, lambda: c.pause(f), lambda: c.resume(f), f.name)


async def test_paused_leader_catches_up_as_a_follower(tmp_path):
    async with LocalCluster(3, tmp_path) as c:
        leader = await c.wait_leader()
        await _under_load(c, lambda: c.pause(leader), lambda: c.resume(leader), leader.name)
