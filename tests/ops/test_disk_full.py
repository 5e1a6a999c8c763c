"""A full disk (ENOSPC injected with a failpoint, raftkv/failpoint.py's ``enospc`` action) while
a member writes its page file, then its WAL: the member stops by itself with a clear message,
the others go on, and once "space is freed" (restarted without the failpoint) it recovers and
catches up with nothing lost or damaged."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cluster import LocalCluster
from tests.cluster.real import needs_server
from tests.ops.helpers import FAST, eventually

pytestmark = [needs_server, pytest.mark.timeout(180)]


async def _restart_with(c: LocalCluster, name: str, failpoints: str | None) -> None:
    env = dict(os.environ)
    if failpoints:
        env["RAFTKV_FAILPOINTS"] = failpoints
    c.env = env
    try:
        await c.restart(name)
    finally:
        c.env = None


async def _same_state(c: LocalCluster) -> bool:
    hks = [await c.client(m).hashkv() for m in c.members]
    revs = {int(h["header"]["revision"]) for h in hks}
    return len(revs) == 1 and len({h["hash"] for h in hks}) == 1


@pytest.mark.parametrize(
    "failpoint",
    ["backend.after_page_write=enospc@3", "wal.before_write=enospc@20"],
    ids=["page_file", "wal"],
)
async def test_member_stops_on_a_full_disk_and_catches_up_after(tmp_path, failpoint):
    async with LocalCluster(3, tmp_path, **FAST) as c:
        leader = await c.wait_leader()
        victim = next(m for m in c.members if m is not leader)
        await _restart_with(c, victim.name, failpoint)
        await c.wait_ready()
        log = Path(victim.spec.log_path)
        mark = log.stat().st_size

        written = {}
        i = 0
        while victim.proc.alive() and i < 3000:
            key = f"k{i:04d}"
            r = await c.client(leader).put(key, "x" * 200)
            written[key] = int(r["header"]["revision"])
            i += 1
            if i % 50 == 0:
                await victim.proc.wait(0.2)  # the page file commits every 100 ms
        assert await victim.proc.wait(10), "the member did not stop on a full disk"
        assert victim.proc.returncode() == 1
        tail = log.read_text(errors="replace")[mark:]
        assert "No space left on device" in tail
        assert "is full" in tail and "free space, then restart this member" in tail

        # the others keep serving
        await c.client(leader).put("while-down", "1")

        await _restart_with(c, victim.name, None)  # space freed
        await c.wait_ready()
        await eventually(lambda: _same_state(c), 30, "the member catches up")
        for key in (*list(written)[:: max(len(written) // 50, 1)], "while-down"):
            kv = await c.client(victim).get(key, serializable=True)
            assert kv is not None, key
