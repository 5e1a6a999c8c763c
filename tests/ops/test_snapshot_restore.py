"""``raftkvctl snapshot save`` on a live cluster under writes, ``raftkvctl snapshot restore``
into the data dirs of a new 3-member cluster: the new cluster has a new identity and serves
exactly the keys, values, revisions and leases the old one had at the snapshot's revision."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys

import pytest

from cluster import LocalCluster
from tests.cluster.real import needs_server
from tests.ops.growable import GrowableCluster
from tests.ops.helpers import FAST

pytestmark = [needs_server, pytest.mark.timeout(180)]


def ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raftkv.cli.ctl", *args], capture_output=True, text=True, timeout=60
    )


async def _all(c: LocalCluster, m, revision: int = 0) -> tuple[int, list]:
    r = await c.client(m).range(b"\x00", b"\x00", revision=revision)
    return int(r["header"]["revision"]), r["kvs"]


async def test_snapshot_save_restore_into_a_new_cluster(tmp_path):
    async with LocalCluster(3, tmp_path / "old", **FAST) as old:
        leader = await old.wait_leader()
        cl = old.client(leader)
        lease = await cl.call("lease/grant", {"TTL": 600})
        for i in range(300):
            await cl.put(f"k{i % 120:03d}", f"v{i}")
        await cl.put("leased", "x", lease=lease["ID"])
        await cl.delete("k007")

        async def load() -> None:
            i = 0
            while True:
                await cl.put(f"load{i % 50}", str(i))
                i += 1

        writer = asyncio.create_task(load())
        snap = tmp_path / "backup.db"
        follower = next(m for m in old.members if m is not leader)
        p = await asyncio.to_thread(
            ctl, f"--endpoints={follower.endpoint}", "snapshot", "save", str(snap)
        )
        writer.cancel()
        assert p.returncode == 0, p.stderr
        assert p.stdout == f"Snapshot saved at {snap}\n"
        data = snap.read_bytes()
        assert len(data) % 512 == 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]
        p = await asyncio.to_thread(ctl, "snapshot", "status", str(snap), "-w", "json")
        status = json.loads(p.stdout)
        assert status["totalSize"] == len(data) - 32 and status["totalKey"] > 120
        snap_rev = status["revision"]
        old_cluster_id = int((await cl.status())["header"]["cluster_id"])

        new = GrowableCluster(3, tmp_path / "new", initial=3, **FAST)
        initial = ",".join(f"{m.name}={m.spec.advertise_peer_url}" for m in new.members)
        for m in new.members:
            p = await asyncio.to_thread(
                ctl,
                "snapshot", "restore", str(snap),
                f"--data-dir={m.spec.data_dir}",
                f"--name={m.name}",
                f"--initial-cluster={initial}",
                f"--initial-cluster-token={new.token}",
                f"--initial-advertise-peer-urls={m.spec.advertise_peer_url}",
            )  # fmt: skip
            assert p.returncode == 0, p.stderr
        p = await asyncio.to_thread(
            ctl, "snapshot", "restore", str(snap), f"--data-dir={new.members[0].spec.data_dir}"
        )
        assert p.returncode == 1 and "exists" in p.stderr

        async with new:
            await new.wait_ready()
            st = await new.client(1).status()
            assert int(st["header"]["cluster_id"]) != old_cluster_id
            rev, kvs = await _all(new, 1)
            assert rev == snap_rev
            # the old cluster at the snapshot's revision, key by key
            old_rev, old_kvs = await _all(old, leader, revision=rev)
            assert old_rev >= rev
            assert kvs == old_kvs and len(kvs) > 100
            assert any(kv.key == b"leased" and kv.lease == int(lease["ID"]) for kv in kvs)
            assert not any(kv.key == b"k007" for kv in kvs)
            for m in new.members:
                assert (await _all(new, m))[1] == kvs
            members = (await new.client(2).call("cluster/member/list", {}))["members"]
            assert sorted(x["name"] for x in members) == ["m1", "m2", "m3"]
            # and it takes writes after the restored revision
            r = await new.client(3).put("after", "restore")
            assert int(r["header"]["revision"]) == rev + 1


def test_snapshot_command_errors_as_etcdctl(tmp_path):
    """etcdctl 3.4's messages and exit codes (observed): argument counts, several endpoints,
    a missing file, a file without the sha256 trailer, a data dir that exists."""
    p = ctl("snapshot", "save")
    assert (p.returncode, p.stderr) == (128, "Error: snapshot save expects one argument\n")
    p = ctl("snapshot", "restore")
    assert (p.returncode, p.stderr) == (
        128,
        "Error: snapshot restore requires exactly one argument\n",
    )
    p = ctl("--endpoints=http://127.0.0.1:1,http://127.0.0.1:2", "snapshot", "save", "x.db")
    assert p.returncode == 5
    assert p.stderr == (
        "Error: snapshot must be requested to one selected node, not multiple "
        "[http://127.0.0.1:1 http://127.0.0.1:2]\n"
    )
    missing = tmp_path / "nonexist.db"
    p = ctl("snapshot", "status", str(missing))
    assert (p.returncode, p.stderr) == (1, f"Error: stat {missing}: no such file or directory\n")
    p = ctl("snapshot", "restore", str(missing), f"--data-dir={tmp_path / 'd'}")
    assert (p.returncode, p.stderr) == (1, f"Error: open {missing}: no such file or directory\n")
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"\x01" * 100_000)
    p = ctl("snapshot", "restore", str(bad), f"--data-dir={tmp_path / 'd'}")
    assert (p.returncode, p.stderr) == (
        1,
        "Error: snapshot missing hash but --skip-hash-check=false\n",
    )
    p = ctl("snapshot", "status", str(bad))
    assert (p.returncode, p.stderr) == (1, "Error: invalid database\n")
    (tmp_path / "d").mkdir()
    p = ctl("snapshot", "restore", str(bad), f"--data-dir={tmp_path / 'd'}")
    assert (p.returncode, p.stderr) == (1, f'Error: data-dir "{tmp_path / "d"}" exists\n')
