"""Recovery in-process: a member "crashes" (its backend batch never committed, tasks dropped,
files closed as a SIGKILL would leave them) and restarts from the same data dir: every write it
acknowledged is back, nothing is applied twice (revisions match), the consistent index is
where the log says."""

import asyncio

from cluster.config import free_ports
from raftkv.config import load_settings
from raftkv.pb import rpc
from raftkv.server.storage import open_member_storage
from raftkv.server.wiring import Member, build_member


def _cfg(tmp_path):
    cport, pport = free_ports(2)
    return load_settings(
        [
            "--name", "solo",
            "--data-dir", str(tmp_path / "solo.etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{cport}",
            "--advertise-client-urls", f"http://127.0.0.1:{cport}",
            "--listen-peer-urls", f"http://127.0.0.1:{pport}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
        ],
        env={},
    )  # fmt: skip


def _fatal(e):
    raise AssertionError(f"fatal: {e!r}")


async def _start(cfg) -> Member:
    s = build_member(cfg, open_member_storage(cfg), _fatal)
    s.backend._batch_interval = 3600.0  # keep writes in the uncommitted batch
    s.start()
    for _ in range(200):
        if s.node.is_leader and s.applier.applied_index >= s.node.committed > 0:
            return s
        await asyncio.sleep(0.02)
    raise AssertionError("no leader")


async def _crash(s: Member) -> None:
    """Drop everything without committing the backend batch (what SIGKILL leaves)."""
    s._stopped = True
    await s.housekeeping.stop()
    await s.read_index.stop()
    await s.node.stop()
    await s.transport.stop()
    s.node.wal.close()
    s.backend._db.close()


async def test_restart_replays_the_wal_over_an_uncommitted_backend(tmp_path):
    cfg = _cfg(tmp_path)
    s = await _start(cfg)
    revs = []
    for i in range(30):
        r = await s.server.put(rpc.PutRequest(key=f"k{i}".encode(), value=b"v%d" % i))
        revs.append(r.header.revision)
    await _crash(s)

    s2 = await _start(cfg)
    try:
        resp = await s2.server.range(rpc.RangeRequest(key=b"k", range_end=b"l"))
        assert resp.count == 30
        assert resp.header.revision == revs[-1]
        assert {kv.key: kv.mod_revision for kv in resp.kvs}[b"k29"] == revs[-1]
    finally:
        await s2.stop()


async def test_entries_below_the_consistent_index_are_not_applied_twice(tmp_path):
    cfg = _cfg(tmp_path)
    s = await _start(cfg)
    for i in range(10):
        await s.server.put(rpc.PutRequest(key=b"a", value=b"%d" % i))
    s.backend.commit()  # the first half reaches the page file with its consistent index
    ci = s.cindex.value
    last = None
    for i in range(10, 20):
        last = await s.server.put(rpc.PutRequest(key=b"a", value=b"%d" % i))
    await _crash(s)

    s2 = await _start(cfg)
    try:
        assert s2.cindex.value > ci
        got = await s2.server.range(rpc.RangeRequest(key=b"a"))
        kv = got.kvs[0]
        assert kv.value == b"19"
        assert kv.version == 20  # each put applied exactly once
        assert kv.mod_revision == last.header.revision
    finally:
        await s2.stop()


async def test_restart_from_a_snapshot_compacts_the_log(tmp_path):
    cfg = _cfg(tmp_path).model_copy(
        update={"snapshot_count": 20, "experimental_snapshot_catchup_entries": 5}
    )
    s = await _start(cfg)
    for i in range(60):
        await s.server.put(rpc.PutRequest(key=b"s%02d" % i, value=b"x"))
    for _ in range(250):  # snapshots are taken off the Ready loop: until the last is done
        if s.snapshots.snap_index > 40 and not s.snapshots._taking:
            break
        await asyncio.sleep(0.02)
    assert s.snapshots.snap_index > 40
    assert s.node.storage.first_index() > 1
    snap_index = s.snapshots.snap_index
    await s.stop()

    s2 = await _start(cfg)
    try:
        assert s2.snapshots.snap_index >= snap_index
        got = await s2.server.range(rpc.RangeRequest(key=b"s", range_end=b"t", count_only=True))
        assert got.count == 60
    finally:
        await s2.stop()


async def test_a_clean_stop_leaves_the_index_for_the_next_start_and_a_crash_does_not(tmp_path):
    cfg = _cfg(tmp_path)
    s = await _start(cfg)
    for i in range(50):
        await s.server.put(rpc.PutRequest(key=f"k{i % 20}".encode(), value=b"v%d" % i))
    await s.server.delete_range(rpc.DeleteRangeRequest(key=b"k3"))
    await s.stop()  # clean: the backend committed, then the index image written

    s2 = await _start(cfg)
    assert s2.kv.restored_from == "image"
    resp = await s2.server.range(rpc.RangeRequest(key=b"k", range_end=b"l"))
    assert resp.count == 19
    assert {kv.key: kv.version for kv in resp.kvs}[b"k1"] == 3
    await s2.server.put(rpc.PutRequest(key=b"k1", value=b"after"))
    await _crash(s2)

    s3 = await _start(cfg)  # after a crash: no image (the start took it), the ordinary rebuild
    try:
        assert s3.kv.restored_from == "backend"
        resp = await s3.server.range(rpc.RangeRequest(key=b"k1"))
        assert resp.kvs[0].value == b"after"
        assert resp.kvs[0].version == 4
    finally:
        await s3.stop()
