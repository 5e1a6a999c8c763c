"""Membership changes on real processes under write load: grow 3 -> 5 (one voter, one learner
that is promoted once it has caught up), remove the leader, shrink back to 3; no acknowledged
write is lost, and every remaining member ends with the same keys, revision and hash."""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import aiohttp
import pytest

from cluster.client import EtcdError
from tests.api import rawhttp
from tests.cluster.real import needs_server
from tests.ops.growable import GrowableCluster
from tests.ops.helpers import FAST, b64, call_error, eventually
from tests.ops.helpers import member_ids as all_member_ids

pytestmark = [needs_server, pytest.mark.timeout(240)]

NOT_FOR_LEARNER = (503, 14, "etcdserver: rpc not supported for learner")
LEARNER_STREAM = (  # as etcd 3.4's gateway answered a stream on a learner (observed)
    b'{"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: rpc not supported for '
    b'learner","http_status":"Service Unavailable"}}'
)


class Writers:
    """Clients putting unique keys through the running members; what was acknowledged."""

    def __init__(self, c: GrowableCluster, n: int = 4) -> None:
        self.c = c
        self.acked: dict[str, int] = {}
        self.failed = 0
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run(i)) for i in range(n)]

    async def _run(self, w: int) -> None:
        i = 0
        while not self._stop.is_set():
            live = self.c.running
            if not live:
                await asyncio.sleep(0.1)
                continue
            m = random.choice(live)
            key = f"w{w}-{i:05d}"
            i += 1
            try:
                r = await self.c.client(m, timeout=15).put(key, key)
                self.acked[key] = int(r["header"]["revision"])
            except (EtcdError, OSError, TimeoutError, aiohttp.ClientError):
                self.failed += 1
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def _caught_up(c: GrowableCluster, name: str) -> bool:
    sts = await c.statuses()
    st, lead = sts.get(name), [s for s in sts.values() if s and s.get("leader")]
    if not st or not lead:
        return False
    top = max(int(s.get("raftIndex", 0)) for s in lead)
    return int(st.get("raftAppliedIndex", 0)) >= top - 5


async def test_grow_to_five_with_a_learner_remove_leader_and_shrink_under_load(tmp_path):
    c = GrowableCluster(
        5, tmp_path, initial=3, snapshot_count=200, experimental_snapshot_catchup_entries=50, **FAST
    )
    async with c:
        await c.wait_ready()
        writers = Writers(c)
        m4, m5 = c.member("m4"), c.member("m5")

        # grow: a voter, then a learner promoted once in sync
        leader = await c.wait_leader()
        await c.add(leader, m4)
        await eventually(lambda: _caught_up(c, "m4"), 60, "m4 catches up")
        # the leader keeps only 50 entries behind its snapshots: m4 started from a snapshot
        assert "applied_snapshot" in Path(m4.spec.log_path).read_text()
        leader = await c.wait_leader()
        learner_id = await c.add(leader, m5, learner=True)
        await eventually(lambda: _caught_up(c, "m5"), 60, "m5 catches up")
        st = await c.client(m5).status()
        assert int(st["header"]["member_id"]) == learner_id and st["isLearner"] is True
        # a learner serves status and serializable reads only (etcd's interceptor)
        assert await call_error(c.client(m5), "kv/put", {"key": b64("x")}) == NOT_FOR_LEARNER
        assert await call_error(c.client(m5), "kv/range", {"key": b64("x")}) == NOT_FOR_LEARNER
        await c.client(m5).call("kv/range", {"key": b64("x"), "serializable": True})
        for path in ("/v3/watch", "/v3/maintenance/snapshot"):  # and no streams at all
            r = await asyncio.to_thread(
                rawhttp.request, m5.endpoint, path, '{"create_request":{"key":"eA=="}}', timeout=5
            )
            assert (r.status, r.chunks) == (503, [LEARNER_STREAM]), path
        promote = {"ID": str(learner_id)}
        await eventually(
            lambda: c.client(random.choice(c.running)).call("cluster/member/promote", promote),
            30,
            "promote m5",
        )

        async def five_voters() -> bool:  # (member list is local: m4 may apply a moment later)
            members = (await c.client(m4).call("cluster/member/list", {}))["members"]
            names = {m.get("name") for m in members}
            learners = any(m.get("isLearner") for m in members)
            return names == {"m1", "m2", "m3", "m4", "m5"} and not learners

        await eventually(five_voters, 10, "five named voters")

        # remove the leader (asked on the leader itself): it steps down and stops
        leader = await c.wait_leader()
        ids = await all_member_ids(c)
        resp = await c.remove(leader, ids[leader.name])
        assert ids[leader.name] not in {int(m["ID"]) for m in resp["members"]}
        assert await leader.proc.wait(15), "the removed leader did not stop"
        new = await c.wait_leader()
        assert new is not leader

        # shrink back to three: remove m4 through a follower
        via = next(m for m in c.running if m is not new and m is not m4)
        await c.remove(via, ids["m4"])
        with contextlib.suppress(Exception):
            await m4.proc.wait(15)
        await asyncio.sleep(1.0)
        await writers.stop()
        assert len(writers.acked) > 50, (len(writers.acked), writers.failed)

        # every acknowledged write is there, on every remaining member, at the same state
        final = c.running
        assert len(final) == 3
        await eventually(lambda: _converged(c, final), 30, "members converge")
        for m in final:
            for key, rev in writers.acked.items():
                kv = await c.client(m).get(key, serializable=True)
                assert kv is not None and kv.mod_revision == rev, (m.name, key, rev, kv)
        members = (await c.client(final[0]).call("cluster/member/list", {}))["members"]
        assert sorted(m["name"] for m in members) == sorted(m.name for m in final)

        # a removed member that comes back with its old identity is refused and stops
        log = Path(m4.spec.log_path)
        mark = log.stat().st_size
        await c.restart(m4)
        assert await m4.proc.wait(20), "the removed member kept running"
        assert "permanently removed from the cluster" in log.read_text()[mark:]
        assert len(c.running) == 3


async def _converged(c: GrowableCluster, members) -> bool:
    sts = [await c.client(m).status() for m in members]
    revs = {int(s["header"]["revision"]) for s in sts}
    if len(revs) != 1:
        return False
    hashes = {(await c.client(m).hashkv())["hash"] for m in members}
    return len(hashes) == 1
