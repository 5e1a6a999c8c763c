"""Members killed with SIGKILL, restarted, and wiped: no acknowledged write is lost, a new
leader takes over, a restarted member catches up from its WAL, a wiped one by a snapshot."""

import threading
import time

import pytest

from tests.server.harness import b64


def _writer(member, prefix: str, acked: list, stop: threading.Event) -> None:
    i = 0
    while not stop.is_set():
        key = f"{prefix}{i:05d}"
        try:
            status, _resp = member.call(
                "/v3/kv/put", {"key": b64(key), "value": b64("v")}, timeout=10
            )
        except OSError:
            status = 0
        if status == 200:
            acked.append(key)
        else:
            time.sleep(0.05)
        i += 1


def _count(member, prefix: str, **kw) -> int:
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    resp = member.ok(
        "/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "count_only": True, **kw}
    )
    return int(resp.get("count", 0))


def _keys(member, prefix: str) -> set[str]:
    import base64

    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    resp = member.ok("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end), "keys_only": True})
    return {base64.b64decode(kv["key"]).decode() for kv in resp.get("kvs", [])}


def test_kill9_leader_under_load_loses_no_acknowledged_write_and_it_catches_up(make_cluster):
    c = make_cluster(3)
    c.start()
    leader = c.wait_leader()
    followers = c.followers(leader)
    acked: list[str] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_writer, args=(f, f"k{j}/", acked, stop))
        for j, f in enumerate(followers)
    ]
    for t in threads:
        t.start()
    time.sleep(1.5)
    leader.kill9()
    new_leader = c.wait_leader(among=followers)
    assert new_leader is not leader
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(30)
    assert len(acked) > 20
    for j, _f in enumerate(followers):
        present = _keys(new_leader, f"k{j}/")
        missing = {k for k in acked if k.startswith(f"k{j}/")} - present
        assert not missing, f"acknowledged writes lost: {sorted(missing)[:10]}"
    # the old leader restarts from its WAL and catches up
    c.start(leader)
    rev = int(new_leader.put("after", "restart")["header"]["revision"])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        st = leader.status()
        if st and int(st["header"]["revision"]) >= rev:
            break
        time.sleep(0.2)
    assert int(leader.get("after", serializable=True)["header"]["revision"]) >= rev
    assert _keys(leader, "k0/") == _keys(new_leader, "k0/")
    # every member holds the same history up to that revision
    hashes = {m.name: m.ok("/v3/maintenance/hashkv", {"revision": rev})["hash"] for m in c.members}
    assert len(set(hashes.values())) == 1, hashes


@pytest.mark.parametrize("state", ["new", "existing"])
def test_wiped_follower_rejoins_by_snapshot(make_cluster, state):
    c = make_cluster(3, ["--snapshot-count", "50", "--experimental-snapshot-catchup-entries", "10"])
    c.start()
    leader = c.wait_leader()
    victim = c.followers(leader)[0]
    for i in range(120):
        leader.put(f"s/{i:04d}", "x" * 100)
    victim.kill9()
    import shutil

    shutil.rmtree(victim.data_dir)
    for i in range(120, 200):
        leader.put(f"s/{i:04d}", "y" * 100)
    c.start(victim, ["--initial-cluster-state", state])
    deadline = time.monotonic() + 60
    n = 0
    while time.monotonic() < deadline:
        try:
            n = _count(victim, "s/", serializable=True)
        except (AssertionError, OSError):
            n = 0
        if n == 200:
            break
        time.sleep(0.3)
    assert n == 200, victim.log()[-3000:]
    assert "applied_snapshot" in victim.log()
    assert "saved_snapshot" in leader.log()
    # and it keeps following the log afterwards
    rev = int(leader.put("s/after", "z")["header"]["revision"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if int(victim.get("s/after", serializable=True)["header"]["revision"]) >= rev:
            break
        time.sleep(0.2)
    assert victim.get("s/after", serializable=True).get("kvs")


def test_single_member_restart_after_kill9_keeps_every_acknowledged_write(make_cluster):
    c = make_cluster(1)
    c.start()
    m = c.wait_leader()
    revs = [int(m.put(f"r/{i}", str(i))["header"]["revision"]) for i in range(50)]
    lid = m.ok("/v3/lease/grant", {"TTL": 600})["ID"]
    m.kill9()  # within the backend's 100 ms batch: the tail is only in the WAL
    c.start(m)
    c.wait_leader()
    assert _count(m, "r/") == 50
    got = m.get("r/49")
    assert int(got["kvs"][0]["mod_revision"]) == revs[-1]
    assert int(got["header"]["revision"]) == revs[-1]
    assert m.ok("/v3/lease/timetolive", {"ID": lid})["grantedTTL"] == "600"
    # a clean stop exits 0
    assert m.terminate() == 0


def test_member_with_a_damaged_db_refuses_to_start_and_names_the_file(make_cluster):
    import os
    import subprocess

    c = make_cluster(1)
    c.start()
    m = c.wait_leader()
    for i in range(200):
        m.put(f"d/{i:04d}", "v" * 200)
    assert m.terminate() == 0
    db = m.data_dir / "member" / "snap" / "db"
    size = os.path.getsize(db)
    with open(db, "r+b") as f:
        for off in range(2 * 4096 + 100, size, 4096):
            f.seek(off)
            b = f.read(1)
            f.seek(off)
            f.write(bytes([b[0] ^ 0xFF]))
    c.start(m)
    try:
        rc = m.proc.wait(60)
    except subprocess.TimeoutExpired:
        raise AssertionError("a member with a damaged db kept running") from None
    err = m.log()
    assert rc == 1
    assert "Traceback" not in err
    assert "db" in err
