"""Online defragment under write load: every member defragments while clients keep writing
through all of them; writes go on during it (the member's event loop is not stalled), the db
shrinks after a compaction, nothing acknowledged is lost and the members end identical."""

from __future__ import annotations

import asyncio
import time

import pytest

from cluster import LocalCluster
from tests.cluster.real import needs_server
from tests.ops.helpers import FAST, eventually

pytestmark = [needs_server, pytest.mark.timeout(180)]


async def test_defragment_every_member_under_write_load(tmp_path):
    async with LocalCluster(3, tmp_path, **FAST) as c:
        leader = await c.wait_leader()
        cl = c.client(leader)
        for i in range(400):  # history to compact away: 400 versions of 40 keys
            await cl.put(f"old{i % 40}", "v" * 1000)
        rev = int((await cl.status())["header"]["revision"])
        await cl.call("kv/compaction", {"revision": rev, "physical": True})

        acked: dict[str, int] = {}
        slowest = 0.0
        stop = asyncio.Event()

        async def writer(w: int) -> None:
            nonlocal slowest
            i = 0
            while not stop.is_set():
                m = c.members[(w + i) % 3]
                t0 = time.monotonic()
                r = await c.client(m).put(f"w{w}-{i}", "x" * 100)
                slowest = max(slowest, time.monotonic() - t0)
                acked[f"w{w}-{i}"] = int(r["header"]["revision"])
                i += 1

        tasks = [asyncio.create_task(writer(w)) for w in range(4)]
        await asyncio.sleep(0.5)
        for m in c.members:
            before = int((await c.client(m).status())["dbSize"])
            n0 = len(acked)
            assert await c.client(m, timeout=60).call("maintenance/defragment", {}) == {}
            after = int((await c.client(m).status())["dbSize"])
            assert after < before, (m.name, before, after)

            # writes go on: more are acknowledged soon after (a defrag of a small db can finish
            # before any single put does, so "during" cannot be asserted without a race)
            async def progressed(n0: int = n0) -> bool:
                return len(acked) > n0 + 4

            await eventually(progressed, 10.0, f"writes after {m.name}'s defragment")
        await asyncio.sleep(0.3)
        stop.set()
        await asyncio.gather(*tasks)
        assert slowest < 5.0, f"a put took {slowest:.2f}s during defragmentation"

        async def same() -> bool:
            hks = [await c.client(m).hashkv() for m in c.members]
            return len({(h["hash"], h["header"]["revision"]) for h in hks}) == 1

        await eventually(same, 20, "members identical after defragment")
        for m in c.members:
            got = await c.client(m).range("w", "x", serializable=True)
            assert {kv.key.decode(): kv.mod_revision for kv in got["kvs"]} == acked
