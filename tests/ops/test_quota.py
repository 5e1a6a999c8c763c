"""Request limits, quota and the NOSPACE alarm on a real 3-member cluster, with the answers
etcd 3.4 gives (observed on etcd 3.4.23 with --quota-backend-bytes=300000: the expected
bodies below).

Fill past a small quota -> the put that does not fit fails with "database space exceeded" (429,
code 8) and the NOSPACE alarm is raised through Raft, so every member reports it (the
leader's, which refused the put; and, as in etcd's applyEntryNormal, that of any member whose
own db went over the quota while applying an earlier put); then puts,
lease grants and txns with a put fail, while reads, deletes, delete-only txns, compaction and
defragment work; disarming after compaction + defragment restores writes. No acknowledged
write is lost on the way."""

from __future__ import annotations

import os

import pytest

from cluster import LocalCluster
from tests.cluster.real import needs_server
from tests.ops.helpers import FAST, b64, call_error, eventually, scrape

pytestmark = [needs_server, pytest.mark.timeout(180)]

QUOTA = 1 << 20
NOSPACE = (429, 8, "etcdserver: mvcc: database space exceeded")
TOO_LARGE = (400, 3, "etcdserver: request is too large")
TOO_MANY_OPS = (400, 3, "etcdserver: too many operations in txn request")


async def test_nospace_alarm_blocks_writes_until_compact_defrag_disarm(tmp_path):
    limits = {"max_request_bytes": 48 * 1024, "max_txn_ops": 3}
    async with LocalCluster(3, tmp_path, quota_backend_bytes=QUOTA, **limits, **FAST) as c:
        leader = await c.wait_leader()
        cl = c.client(leader)
        # the request limits, with etcd's errors
        big = {"key": b64("big"), "value": b64(b"x" * 50 * 1024)}
        assert await call_error(cl, "kv/put", big) == TOO_LARGE
        ops = [{"request_put": {"key": b64(f"t{i}")}} for i in range(4)]
        assert await call_error(cl, "kv/txn", {"success": ops}) == TOO_MANY_OPS
        await cl.call("kv/txn", {"success": ops[:3]})
        value = os.urandom(30_000)
        acked: dict[str, int] = {}
        for i in range(200):
            try:
                r = await cl.put(f"k{i:03d}", value)
            except Exception as e:
                assert (e.status, e.code, e.message) == NOSPACE
                break
            acked[f"k{i:03d}"] = int(r["header"]["revision"])
        else:
            raise AssertionError("never ran out of space")
        assert len(acked) > 10

        leader_id = int((await cl.status())["header"]["member_id"])
        ids = {int((await c.client(m).status())["header"]["member_id"]) for m in c.members}
        # raised through Raft: every member knows
        for m in c.members:
            st = await eventually(
                lambda m=m: _status_with_errors(c, m, leader_id), what=f"{m.name} reports NOSPACE"
            )
            raised = {int(e.split()[0].removeprefix("memberID:")) for e in st["errors"]}
            assert leader_id in raised and raised <= ids
            assert sorted(st["errors"]) == sorted(f"memberID:{i} alarm:NOSPACE " for i in raised)
            listed = (await c.client(m).call("maintenance/alarm", {}))["alarms"]
            assert {int(a["memberID"]) for a in listed} <= ids
            assert all(a["alarm"] == "NOSPACE" for a in listed)

        follower = next(m for m in c.members if m is not leader)
        fc = c.client(follower)
        small = {"key": b64("x"), "value": b64("y")}
        assert await call_error(fc, "kv/put", small) == NOSPACE
        assert await call_error(cl, "lease/grant", {"TTL": 30}) == NOSPACE
        put_in_failure = {"failure": [{"request_put": small}]}
        assert await call_error(cl, "kv/txn", put_in_failure) == NOSPACE
        # reads, deletes and delete-only txns still work
        got = await fc.get("k000")
        assert got is not None and got.mod_revision == acked["k000"]
        r = await cl.call("kv/txn", {"success": [{"request_delete_range": {"key": b64("x")}}]})
        assert r["succeeded"] is True
        r = await cl.call("kv/deleterange", {"key": b64("k"), "range_end": b64("l")})
        # the put that failed was refused before Raft, or applied over the quota and answered
        # "database space exceeded" (etcd's quotaApplierV3): then it is there too
        assert int(r["deleted"]) in (len(acked), len(acked) + 1)
        await cl.call("kv/deleterange", {"key": b64("t"), "range_end": b64("u")})
        rev = int(r["header"]["revision"])

        await cl.call("kv/compaction", {"revision": rev, "physical": True})
        for m in c.members:
            assert await c.client(m).call("maintenance/defragment", {}) == {}
        sizes = [int((await c.client(m).status())["dbSize"]) for m in c.members]
        assert max(sizes) < QUOTA // 2, sizes
        # the alarm is still armed: writes still fail everywhere
        assert await call_error(fc, "kv/put", small) == NOSPACE

        await eventually(lambda: _disarm_all(cl, fc), what="every NOSPACE alarm disarmed")
        await eventually(lambda: _put_ok(c, follower), what="writes after disarm")
        for m in c.members:
            assert await c.client(m).health()
        await _check_metrics(c, leader_id)


async def _check_metrics(c: LocalCluster, leader_id: int) -> None:
    """/metrics on every member, under etcd's names, agreeing with what status says."""
    ids = {int((await c.client(m).status())["header"]["member_id"]) for m in c.members}
    leaders = 0
    for m in c.members:
        st = await c.client(m).status()
        ctype, got = await scrape(m.endpoint)
        assert ctype == "text/plain; version=0.0.4; charset=utf-8"
        assert got["etcd_server_has_leader"] == 1
        leaders += got["etcd_server_is_leader"]
        assert got["etcd_server_leader_changes_seen_total"] >= 1
        assert got["etcd_server_quota_backend_bytes"] == QUOTA
        assert got["etcd_server_proposals_applied_total"] >= int(st["raftAppliedIndex"])
        assert (
            got["etcd_server_proposals_committed_total"]
            >= got["etcd_server_proposals_applied_total"] - 1
        )
        assert got["etcd_server_proposals_pending"] >= 0
        assert got["etcd_server_proposals_failed_total"] >= 0
        # the db may grow between the status call and the scrape (a commit in between), never
        # shrink here: the scraped size lies between the sizes reported before and after it
        st_after = await c.client(m).status()
        assert (
            int(st["dbSize"]) <= got["etcd_mvcc_db_total_size_in_bytes"] <= int(st_after["dbSize"])
        )
        assert 0 < got["etcd_mvcc_db_total_size_in_use_in_bytes"] <= int(st_after["dbSize"])
        assert got["etcd_debugging_mvcc_watcher_total"] == 0
        assert got["etcd_disk_wal_fsync_duration_seconds_count"] > 0
        assert got["etcd_wal_fsync_duration_seconds_count"] > 0
        assert got["etcd_disk_backend_commit_duration_seconds_count"] > 0
        me, lead = int(st["header"]["member_id"]), int(st["leader"])
        # Raft traffic flows between the leader and each follower
        for peer in ids - {me} if me == lead else {lead}:
            assert got[f'etcd_network_peer_sent_bytes_total{{To="{peer:x}"}}'] > 0
            assert got[f'etcd_network_peer_received_bytes_total{{From="{peer:x}"}}'] > 0
        assert got[f'etcd_server_id{{server_id="{me:x}"}}'] == 1
    assert leaders == 1


async def _status_with_errors(c: LocalCluster, m, must: int) -> dict | None:
    st = await c.client(m).status()
    return st if any(f"memberID:{must} " in e for e in st.get("errors", [])) else None


async def _disarm_all(cl, fc) -> bool:
    """Disarm each listed alarm through a follower; True once none is left."""
    for a in (await cl.call("maintenance/alarm", {})).get("alarms", []):
        disarm = {"action": "DEACTIVATE", "memberID": a["memberID"], "alarm": "NOSPACE"}
        assert await fc.call("maintenance/alarm", disarm) == {"alarms": [a]}
    return await cl.call("maintenance/alarm", {"action": "GET"}) == {}


async def _put_ok(c: LocalCluster, m) -> bool:
    await c.client(m).put("after", "disarm")
    return True
