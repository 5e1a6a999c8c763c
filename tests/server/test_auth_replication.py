"""Auth state on a real 3-member raftkv cluster: replicated by the log, carried to a wiped
member by a snapshot (the users, roles and enabled flag are in the snapshot's db), and kept
across a kill -9 of every member."""

from __future__ import annotations

import shutil
import time

from tests.server.harness import Member, b64

ROOT_PW = "rootpw"


def _login(m: Member, name: str, password: str) -> str:
    return m.ok("/v3/auth/authenticate", {"name": name, "password": password})["token"]


def _setup(m: Member) -> None:
    m.ok("/v3/auth/user/add", {"name": "root", "password": ROOT_PW})
    m.ok("/v3/auth/user/grant", {"user": "root", "role": "root"})
    m.ok("/v3/auth/role/add", {"name": "app"})
    perm = {"permType": "READWRITE", "key": b64("app/"), "range_end": b64("app0")}
    m.ok("/v3/auth/role/grant", {"name": "app", "perm": perm})
    m.ok("/v3/auth/user/add", {"name": "alice", "password": "pw"})
    m.ok("/v3/auth/user/grant", {"user": "alice", "role": "app"})
    m.ok("/v3/auth/enable")


def _eventually(check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def _assert_enforced(m: Member) -> None:
    status, resp = m.call("/v3/kv/range", {"key": b64("app/1"), "serializable": True})
    assert status == 400 and resp["message"] == "etcdserver: user name is empty", resp
    tok = _login(m, "alice", "pw")
    got = m.ok("/v3/kv/range", {"key": b64("app/1"), "serializable": True}, token=tok)
    assert got.get("kvs", [{}])[0].get("value") == b64("v"), got
    status, resp = m.call("/v3/kv/put", {"key": b64("other"), "value": b64("x")}, token=tok)
    assert status == 403 and resp["message"] == "etcdserver: permission denied", resp


def test_a_wiped_member_gets_the_auth_state_by_snapshot_and_all_keep_it(make_cluster):
    c = make_cluster(
        3,
        [
            "--snapshot-count", "40", "--experimental-snapshot-catchup-entries", "5",
            "--bcrypt-cost", "4",
        ],
    )  # fmt: skip
    c.start()
    leader = c.wait_leader()
    victim = c.followers(leader)[0]
    victim.kill9()
    shutil.rmtree(victim.data_dir)
    _setup(leader)
    root = _login(leader, "root", ROOT_PW)
    leader.ok("/v3/kv/put", {"key": b64("app/1"), "value": b64("v")}, token=root)
    for i in range(120):  # past --snapshot-count: the log before the auth changes is dropped
        leader.ok("/v3/kv/put", {"key": b64(f"fill/{i}"), "value": b64("x")}, token=root)
    c.start(victim, ["--initial-cluster-state", "existing"])
    _eventually(lambda: _assert_enforced(victim))
    assert "applied_snapshot" in victim.log()
    users = victim.ok("/v3/auth/user/list", token=_login(victim, "root", ROOT_PW))["users"]
    assert users == ["alice", "root"]

    for m in c.members:
        m.kill9()
    for m in c.members:
        c.start(m)
    c.wait_leader()
    for m in c.members:
        _eventually(lambda m=m: _assert_enforced(m))
    assert all("rootpw" not in m.log() and '"pw"' not in m.log() for m in c.members)
