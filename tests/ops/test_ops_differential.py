"""Maintenance and membership routes, differentially: the same requests to a real etcd 3.4 and to
raftkv (3 members each, started by the API tests' harness, tests/api/clusters.py), compared
with its normalisation (tests/api/cases.py) after member ids and URLs, which differ between
the clusters, are replaced by their roles (``<leader>``, ``<follower>``, ``<peer:n1>``).

``python -m tests.ops.test_ops_differential`` prints the differences instead of asserting."""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import time

import pytest

from tests.api import exchange as C
from tests.api import rawhttp
from tests.api.clusters import Cluster, etcd_binaries, raftkv_available, start_etcd, start_raftkv

pytestmark = pytest.mark.timeout(240)

NOSPACE = '{"action":"ACTIVATE","memberID":"{leader}","alarm":"NOSPACE"}'
CORRUPT = '{{"action":"{a}","memberID":"{{follower}}","alarm":"CORRUPT"}}'
# (name, to, path, body): "to" is "leader" or "follower"; {leader}/{follower}/{leader_peer} are
# filled in per cluster. Run in order on one cluster: the alarm cases depend on each other.
CASES: list[tuple[str, str, str, str]] = [
    ("alarm_none", "leader", "/v3/maintenance/alarm", "{}"),
    ("defrag_leader", "leader", "/v3/maintenance/defragment", "{}"),
    ("defrag_follower", "follower", "/v3/maintenance/defragment", "{}"),
    ("alarm_activate", "follower", "/v3/maintenance/alarm", NOSPACE),
    ("alarm_get", "leader", "/v3/maintenance/alarm", '{"action":"GET"}'),
    ("alarm_get_corrupt", "leader", "/v3/maintenance/alarm", '{"action":"GET","alarm":2}'),
    ("put_nospace", "follower", "/v3/kv/put", '{"key":"eA==","value":"eQ=="}'),
    ("lease_nospace", "leader", "/v3/lease/grant", '{"TTL":30}'),
    ("health_nospace", "leader", "/health", ""),
    ("delete_nospace", "leader", "/v3/kv/deleterange", '{"key":"eA=="}'),
    (
        "alarm_deactivate",
        "leader",
        "/v3/maintenance/alarm",
        '{"action":"DEACTIVATE","memberID":"{leader}","alarm":"NOSPACE"}',
    ),
    (
        "alarm_deactivate_again",
        "leader",
        "/v3/maintenance/alarm",
        '{"action":"DEACTIVATE","memberID":"{leader}","alarm":"NOSPACE"}',
    ),
    (
        "alarm_activate_none",
        "leader",
        "/v3/maintenance/alarm",
        '{"action":"ACTIVATE","memberID":"{leader}"}',
    ),
    ("put_after_disarm", "leader", "/v3/kv/put", '{"key":"eA==","value":"eQ=="}'),
    # CORRUPT refuses every write and compaction (reads and read-only txns still work); with
    # NOSPACE raised too, disarming CORRUPT alone lets writes through (etcd's last swap wins)
    ("alarm_nospace_again", "leader", "/v3/maintenance/alarm", NOSPACE),
    ("alarm_corrupt", "follower", "/v3/maintenance/alarm", CORRUPT.format(a="ACTIVATE")),
    ("corrupt_put", "follower", "/v3/kv/put", '{"key":"eA==","value":"eQ=="}'),
    ("corrupt_delete", "leader", "/v3/kv/deleterange", '{"key":"eA=="}'),
    (
        "corrupt_txn",
        "leader",
        "/v3/kv/txn",
        '{"failure":[{"request_delete_range":{"key":"eA=="}}]}',
    ),
    ("corrupt_readonly_txn", "leader", "/v3/kv/txn", "{}"),
    ("corrupt_range", "follower", "/v3/kv/range", '{"key":"eA=="}'),
    ("corrupt_compaction", "leader", "/v3/kv/compaction", '{"revision":"1"}'),
    ("corrupt_lease_grant", "leader", "/v3/lease/grant", '{"TTL":30}'),
    ("corrupt_lease_revoke", "leader", "/v3/lease/revoke", '{"ID":"7"}'),
    ("corrupt_status", "leader", "/v3/maintenance/status", "{}"),
    ("corrupt_disarm", "leader", "/v3/maintenance/alarm", CORRUPT.format(a="DEACTIVATE")),
    ("put_with_nospace_listed", "leader", "/v3/kv/put", '{"key":"eA==","value":"eg=="}'),
    ("alarm_list_nospace", "follower", "/v3/maintenance/alarm", "{}"),
    (
        "nospace_disarm",
        "leader",
        "/v3/maintenance/alarm",
        '{"action":"DEACTIVATE","memberID":"{leader}","alarm":"NOSPACE"}',
    ),
    ("move_on_follower", "follower", "/v3/maintenance/transfer-leadership", '{"targetID":"1"}'),
    ("move_unknown", "leader", "/v3/maintenance/transfer-leadership", '{"targetID":"123"}'),
    ("move_none", "leader", "/v3/maintenance/transfer-leadership", "{}"),
    ("move_self", "leader", "/v3/maintenance/transfer-leadership", '{"targetID":"{leader}"}'),
    (
        "member_add_existing",
        "leader",
        "/v3/cluster/member/add",
        '{"peerURLs":["{leader_peer}"]}',
    ),
    ("member_add_bad_url", "leader", "/v3/cluster/member/add", '{"peerURLs":["foo"]}'),
    ("member_add_no_url", "leader", "/v3/cluster/member/add", "{}"),
    ("member_remove_unknown", "leader", "/v3/cluster/member/remove", '{"ID":"123"}'),
    ("member_promote_unknown", "leader", "/v3/cluster/member/promote", '{"ID":"123"}'),
    ("member_promote_voter", "leader", "/v3/cluster/member/promote", '{"ID":"{follower}"}'),
    (
        "member_update_unknown",
        "leader",
        "/v3/cluster/member/update",
        '{"ID":"123","peerURLs":["http://127.0.0.1:1"]}',
    ),
    (
        "member_update_existing_url",
        "leader",
        "/v3/cluster/member/update",
        '{"ID":"{follower}","peerURLs":["{leader_peer}"]}',
    ),
    (
        "member_add_learner",
        "leader",
        "/v3/cluster/member/add",
        '{"peerURLs":["http://127.0.0.1:1"],"isLearner":true}',
    ),
    (
        "member_add_second_learner",
        "leader",
        "/v3/cluster/member/add",
        '{"peerURLs":["http://127.0.0.1:2"],"isLearner":true}',
    ),
    ("member_promote_not_ready", "leader", "/v3/cluster/member/promote", '{"ID":"{learner}"}'),
    (
        "move_to_learner",
        "leader",
        "/v3/maintenance/transfer-leadership",
        '{"targetID":"{learner}"}',
    ),
    (  # a follower forwards a promotion to the leader, which decides
        "member_promote_on_follower",
        "follower",
        "/v3/cluster/member/promote",
        '{"ID":"{learner}"}',
    ),
    (
        "member_update_learner",
        "leader",
        "/v3/cluster/member/update",
        '{"ID":"{learner}","peerURLs":["http://127.0.0.1:3"]}',
    ),
    ("member_remove_learner", "leader", "/v3/cluster/member/remove", '{"ID":"{learner}"}'),
    ("member_remove_again", "leader", "/v3/cluster/member/remove", '{"ID":"{learner}"}'),
    ("member_list_after", "leader", "/v3/cluster/member/list", "{}"),
    ("move_ok", "leader", "/v3/maintenance/transfer-leadership", '{"targetID":"{follower}"}'),
]


# Then, on the same cluster, with one follower killed: etcd's strict reconfiguration check.
DEGRADED: list[tuple[str, str, str, str]] = [
    ("down_add_voter", "leader", "/v3/cluster/member/add", '{"peerURLs":["http://127.0.0.1:7"]}'),
    (
        "down_add_learner",
        "leader",
        "/v3/cluster/member/add",
        '{"peerURLs":["http://127.0.0.1:8"],"isLearner":true}',
    ),
    ("down_remove_live", "leader", "/v3/cluster/member/remove", '{"ID":"{follower}"}'),
    ("down_remove_down", "leader", "/v3/cluster/member/remove", '{"ID":"{down}"}'),
    ("down_list", "follower", "/v3/cluster/member/list", "{}"),
]


def _status(url: str) -> dict:
    return json.loads(rawhttp.request(url, "/v3/maintenance/status", b"{}").body)


def run(c: Cluster, started: float, cases=CASES, kill_one: bool = False) -> dict[str, dict]:
    leader = c.leader_url()
    follower, other = (u for u in c.client_urls if u != leader)
    ids = {"leader": _status(leader)["header"]["member_id"]}
    ids["follower"] = _status(follower)["header"]["member_id"]
    if kill_one:
        ids["down"] = _status(other)["header"]["member_id"]
        c.procs[c.client_urls.index(other)].kill()
        time.sleep(1.0)  # the others see its peer connections break
    names = {u: f"client:{n}" for u, n in zip(c.client_urls, c.names, strict=True)}
    names.update({u: f"peer:{n}" for u, n in zip(c.peer_urls, c.names, strict=True)})
    members = json.loads(rawhttp.request(leader, "/v3/cluster/member/list", b"{}").body)
    peer_of = {m["ID"]: m["peerURLs"][0] for m in members["members"]}
    fill = {
        "{leader}": ids["leader"],
        "{follower}": ids["follower"],
        "{leader_peer}": peer_of[ids["leader"]],
        "{down}": ids.get("down", ""),
    }
    out = {}
    for name, to, path, body in cases:
        if name == "member_add_existing":
            # etcd's strict reconfig check wants every peer connected for 5 s (HealthInterval)
            time.sleep(max(0.0, started + 5.5 - time.monotonic()))
        for k, v in fill.items():
            body = body.replace(k, v)
        url = leader if to == "leader" else follower
        method = "GET" if path == "/health" else "POST"
        case = {"name": name, "path": path, "body": body, "method": method}
        reply = C.send(url, case)
        text = reply.body.decode()
        if name == "member_add_learner" and reply.status == 200:
            fill["{learner}"] = json.loads(text)["member"]["ID"]
            ids["learner"] = fill["{learner}"]
        for role, mid in ids.items():
            text = text.replace(f'"{mid}"', f'"<{role}>"').replace(f"memberID:{mid} ", f"<{role}>")
        reply.body = text.encode()
        norm = C.normalize(reply, case, names)
        if path.startswith("/v3/cluster/member/") and reply.status == 200:
            norm["body"] = _members_by_role(norm["body"])
        if path in ("/v3/maintenance/alarm", "/v3/maintenance/status") and reply.status == 200:
            norm["body"] = _alarms_sorted(norm["body"])
        out[name] = norm
    return out


def _alarms_sorted(body: str) -> str:
    """etcd lists alarms in Go map order (random across types): compare them as sets."""
    d = json.loads(body)
    for key in ("alarms", "errors"):
        if key in d:
            d[key] = sorted(d[key], key=lambda x: json.dumps(x, sort_keys=True))
    return json.dumps(d, separators=(",", ":"))


def _members_by_role(body: str) -> str:
    """Members named by role (which of n1..n3 leads differs between the two clusters)."""
    d = json.loads(body)
    for m in d.get("members", []):
        if not m["ID"].startswith("<"):
            m["ID"] = "<other>"
        if m.get("name"):
            m["name"] = m["ID"]
            m["peerURLs"] = [f"peer:{m['ID']}"]
            m["clientURLs"] = [f"client:{m['ID']}"]
    d["members"] = sorted(d.get("members", []), key=lambda m: m["ID"])
    return json.dumps(d, separators=(",", ":"))


def snapshot_shape(c: Cluster) -> dict:
    """A snapshot stream's shape: status, headers, line fields and blob sizes, sha256 check."""
    big = base64.b64encode(b"v" * 40_000).decode()
    for _ in range(3):  # > 2 blobs on both sides, whatever their empty db's size
        rawhttp.request(c.leader_url(), "/v3/kv/put", json.dumps({"key": "c25hcA==", "value": big}))
    r = rawhttp.request(c.url, "/v3/maintenance/snapshot", b"{}", timeout=30)
    lines = [json.loads(x)["result"] for x in r.body.split(b"\n") if x.strip()]
    blobs = [base64.b64decode(x["blob"]) for x in lines]
    data = b"".join(blobs[:-1])
    return {
        "status": r.status,
        "chunked": r.chunked,
        "header_names": sorted(h for h in r.headers if h != "date"),
        "fields": sorted({tuple(x) for x in lines}),
        "full_blobs_are_32k": all(len(b) == 32 * 1024 for b in blobs[:-2]),
        "remaining_counts_down": all(
            int(x.get("remaining_bytes", 0)) == len(data) - sum(map(len, blobs[: i + 1]))
            for i, x in enumerate(lines[:-1])
        ),
        "sha256_trailer": hashlib.sha256(data).digest() == blobs[-1],
    }


@pytest.fixture(scope="module")
def replies() -> dict[str, dict]:
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcd")
    why = raftkv_available()
    if why is not None:
        pytest.skip(f"raftkv side not runnable: {why}")
    out = {}
    for kind, start in (("etcd", lambda: start_etcd(bins[0])), ("raftkv", start_raftkv)):
        c = start()
        try:
            out[kind] = {"cases": run(c, time.monotonic()), "snapshot": snapshot_shape(c)}
            out[kind]["cases"].update(run(c, 0.0, DEGRADED, kill_one=True))
        finally:
            c.stop()
    return out


@pytest.mark.parametrize("name", [c[0] for c in CASES + DEGRADED])
def test_route_matches_etcd(replies: dict, name: str) -> None:
    assert replies["raftkv"]["cases"][name] == replies["etcd"]["cases"][name]


def test_snapshot_stream_has_etcds_shape(replies: dict) -> None:
    assert replies["raftkv"]["snapshot"] == replies["etcd"]["snapshot"]
    assert replies["raftkv"]["snapshot"]["sha256_trailer"]


if __name__ == "__main__":
    bins = etcd_binaries()
    assert bins is not None
    res = {}
    for kind, start in (("etcd", lambda: start_etcd(bins[0])), ("raftkv", start_raftkv)):
        c = start()
        try:
            res[kind] = {"cases": run(c, time.monotonic()), "snapshot": snapshot_shape(c)}
            res[kind]["cases"].update(run(c, 0.0, DEGRADED, kill_one=True))
        finally:
            c.stop()
    for name, *_ in CASES + DEGRADED:
        e, r = res["etcd"]["cases"][name], res["raftkv"]["cases"][name]
        mark = "ok  " if e == r else "DIFF"
        sys.stdout.write(f"{mark} {name}" + ("" if e == r else f"\n  etcd:   {e}\n  raftkv: {r}"))
        sys.stdout.write("\n")
    same = res["etcd"]["snapshot"] == res["raftkv"]["snapshot"]
    sys.stdout.write(
        f"snapshot same={same}\n{res['etcd']['snapshot']}\n{res['raftkv']['snapshot']}\n"
    )
