"""A real 3-member cluster answering the etcd gateway: writes through any member (followers
forward through Raft), linearizable reads everywhere, txn, delete, compact, leases, watch."""

import json
import socket
import time

import pytest

from tests.server.harness import Cluster, b64, unb64


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("api"), 3)
    c.start()
    try:
        c.wait_leader()
        yield c
    finally:
        c.close()


def test_members_agree_on_one_leader_and_list_every_member(cluster):
    leader = cluster.wait_leader()
    resp = leader.ok("/v3/cluster/member/list")
    assert "revision" not in resp["header"]
    names = sorted(m.get("name") for m in resp["members"])
    assert names == ["m1", "m2", "m3"]
    ids = {int(m["ID"]) for m in resp["members"]}
    assert ids == {m.id for m in cluster.members}
    for m in cluster.members:
        h = m.ok("/v3/maintenance/status")["header"]
        assert h["cluster_id"] == resp["header"]["cluster_id"]


def test_write_through_a_follower_is_forwarded_and_readable_everywhere(cluster):
    leader = cluster.wait_leader()
    follower = cluster.followers(leader)[0]
    resp = follower.put("fwd", "v1")
    assert int(resp["header"]["member_id"]) == follower.id
    rev = int(resp["header"]["revision"])
    for m in cluster.members:
        got = m.get("fwd")
        assert unb64(got["kvs"][0]["value"]) == "v1"
        assert int(got["header"]["revision"]) >= rev
        assert int(got["header"]["member_id"]) == m.id
        assert got["header"]["raft_term"] == resp["header"]["raft_term"]


def test_put_prev_kv_delete_and_range_prefix(cluster):
    m = cluster.members[0]
    m.put("p/a", "1")
    m.put("p/b", "2")
    r = m.put("p/a", "3", prev_kv=True)
    assert unb64(r["prev_kv"]["value"]) == "1"
    got = m.ok("/v3/kv/range", {"key": b64("p/"), "range_end": b64("p0")})
    assert [unb64(kv["key"]) for kv in got["kvs"]] == ["p/a", "p/b"]
    assert got["count"] == "2"
    d = m.ok("/v3/kv/deleterange", {"key": b64("p/a"), "prev_kv": True})
    assert d["deleted"] == "1"
    assert unb64(d["prev_kvs"][0]["value"]) == "3"
    assert "kvs" not in m.get("p/a")


def test_txn_compare_and_swap(cluster):
    m = cluster.members[1]
    m.put("cas", "old")
    txn = {
        "compare": [{"key": b64("cas"), "result": "EQUAL", "target": "VALUE", "value": b64("old")}],
        "success": [{"request_put": {"key": b64("cas"), "value": b64("new")}}],
        "failure": [{"request_range": {"key": b64("cas")}}],
    }
    r = m.ok("/v3/kv/txn", txn)
    assert r["succeeded"] is True
    r = m.ok("/v3/kv/txn", txn)
    assert "succeeded" not in r
    assert unb64(r["responses"][0]["response_range"]["kvs"][0]["value"]) == "new"


def test_compaction_makes_old_revisions_unreadable(cluster):
    m = cluster.members[2]
    r1 = int(m.put("cmp", "a")["header"]["revision"])
    m.put("cmp", "b")
    m.ok("/v3/kv/compaction", {"revision": r1 + 1, "physical": True})
    status, err = m.call("/v3/kv/range", {"key": b64("cmp"), "revision": r1})
    assert status == 400 and err["code"] == 11
    assert err["message"] == "etcdserver: mvcc: required revision has been compacted"


def test_serializable_read_on_a_follower(cluster):
    leader = cluster.wait_leader()
    leader.put("ser", "x")
    f = cluster.followers(leader)[0]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        got = f.get("ser", serializable=True)
        if got.get("kvs"):
            break
        time.sleep(0.05)
    assert unb64(got["kvs"][0]["value"]) == "x"


def test_lease_grant_attach_keepalive_via_follower_and_revoke(cluster):
    leader = cluster.wait_leader()
    f = cluster.followers(leader)[0]
    g = f.ok("/v3/lease/grant", {"TTL": 30})
    lid = g["ID"]
    assert g["TTL"] == "30"
    f.put("leased", "v", lease=lid)
    ttl = f.ok("/v3/lease/timetolive", {"ID": lid, "keys": True})
    assert ttl["grantedTTL"] == "30"
    assert 0 < int(ttl["TTL"]) <= 30
    assert [unb64(k) for k in ttl["keys"]] == ["leased"]
    assert lid in [x["ID"] for x in leader.ok("/v3/lease/leases").get("leases", [])]
    ka = f.ok("/v3/lease/keepalive", {"ID": lid})
    assert ka["result"]["TTL"] == "30"
    f.ok("/v3/lease/revoke", {"ID": lid})
    assert "kvs" not in leader.get("leased")
    status, err = f.call("/v3/lease/revoke", {"ID": lid})
    assert status == 404 and err["code"] == 5


def test_lease_expiry_deletes_its_keys(cluster):
    leader = cluster.wait_leader()
    lid = leader.ok("/v3/lease/grant", {"TTL": 2})["ID"]
    leader.put("short", "v", lease=lid)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and leader.get("short").get("kvs"):
        time.sleep(0.25)
    assert "kvs" not in leader.get("short")
    assert leader.ok("/v3/lease/timetolive", {"ID": lid})["TTL"] == "-1"


def _watch_lines(member, body: dict, n: int, timeout: float = 15.0) -> list[dict]:
    s = socket.create_connection(("127.0.0.1", member.client_port), timeout=timeout)
    data = json.dumps(body).encode()
    s.sendall(
        b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
    )
    buf = b""
    out: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < n and time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            for line in buf.split(b"\n"):
                line = line.strip()
                if line.startswith(b"{") and line.endswith(b"}"):
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        continue
                    if obj not in out:
                        out.append(obj)
    finally:
        s.close()
    return out


def test_watch_sees_history_with_complete_headers(cluster):
    m = cluster.members[0]
    r = int(m.put("w/1", "a")["header"]["revision"])
    m.put("w/2", "b")
    lines = _watch_lines(
        m,
        {"create_request": {"key": b64("w/"), "range_end": b64("w0"), "start_revision": r}},
        2,
    )
    assert lines[0]["result"]["created"] is True
    h = lines[0]["result"]["header"]
    assert int(h["member_id"]) == m.id and h["cluster_id"] and h["raft_term"]
    events = [e for line in lines[1:] for e in line["result"].get("events", [])]
    assert [unb64(e["kv"]["key"]) for e in events] == ["w/1", "w/2"]


def test_hash_and_health(cluster):
    leader = cluster.wait_leader()
    leader.put("h", "1")
    time.sleep(0.5)
    assert all(isinstance(m.ok("/v3/maintenance/hash")["hash"], int) for m in cluster.members)
    import urllib.request

    with urllib.request.urlopen(leader.url + "/health", timeout=5) as r:
        assert json.loads(r.read()) == {"health": "true"}
