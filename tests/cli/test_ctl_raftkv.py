"""raftkvctl against a real 3-member raftkv cluster: the everyday commands, the cluster views
(member list, endpoint status/health over all members) and failover when a member is down."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.api.clusters import ROOT, raftkv_available, start_raftkv

ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def cluster():
    why = raftkv_available()
    if why is not None:
        pytest.skip(f"raftkv not runnable: {why}")
    c = start_raftkv()
    try:
        yield c
    finally:
        c.stop()


def ctl(c, *args: str, stdin: str = "", endpoints: str | None = None) -> tuple[int, str, str]:
    eps = endpoints or ",".join(c.client_urls)
    p = subprocess.run(
        [sys.executable, "-m", "raftkv.cli.ctl", f"--endpoints={eps}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=60,
    )
    return p.returncode, p.stdout, p.stderr


def test_kv_commands(cluster) -> None:
    assert ctl(cluster, "put", "k1", "v1") == (0, "OK\n", "")
    assert ctl(cluster, "put", "k2", "v2") == (0, "OK\n", "")
    assert ctl(cluster, "get", "k", "--prefix") == (0, "k1\nv1\nk2\nv2\n", "")
    assert ctl(cluster, "get", "k", "--prefix", "--keys-only") == (0, "k1\n\nk2\n\n", "")
    txn = 'value("k1") = "v1"\n\nput k3 v3\nget k1\n\nput k4 v4\n\n'
    assert ctl(cluster, "txn", stdin=txn) == (0, "SUCCESS\n\nOK\n\nk1\nv1\n", "")
    assert ctl(cluster, "del", "k", "--prefix") == (0, "3\n", "")
    assert ctl(cluster, "get", "k1", "--rev", "100000")[0] == 1


def test_lease_commands(cluster) -> None:
    code, out, _ = ctl(cluster, "lease", "grant", "30")
    assert code == 0 and out.endswith("granted with TTL(30s)\n")
    lid = out.split()[1]
    assert ctl(cluster, "put", "lk", "v", f"--lease={lid}")[0] == 0
    code, out, _ = ctl(cluster, "lease", "timetolive", lid, "--keys")
    assert code == 0 and out.endswith(", attached keys([lk])\n")
    assert lid in ctl(cluster, "lease", "list")[1]
    assert ctl(cluster, "lease", "keep-alive", "--once", lid)[1] == (
        f"lease {lid} keepalived with TTL(30)\n"
    )
    assert ctl(cluster, "lease", "revoke", lid) == (0, f"lease {lid} revoked\n", "")
    assert ctl(cluster, "get", "lk") == (0, "", "")


def test_cluster_views(cluster) -> None:
    code, out, _ = ctl(cluster, "member", "list", "-w", "table")
    assert code == 0 and all(f" {n} | http" in out for n in ("n1", "n2", "n3"))
    code, out, _ = ctl(cluster, "endpoint", "status")
    rows = out.splitlines()
    assert code == 0 and len(rows) == 3
    assert sum(", true, false, " in r for r in rows) == 1  # exactly one leader
    code, out, _ = ctl(cluster, "endpoint", "health", "--cluster")
    assert code == 0 and out.count("is healthy: successfully committed proposal") == 3


def test_watch_sees_a_put(cluster) -> None:
    p = subprocess.Popen(
        [sys.executable, "-m", "raftkv.cli.ctl", f"--endpoints={cluster.url}", "watch", "wk"],
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        import time

        time.sleep(2.0)
        ctl(cluster, "put", "wk", "hello")
        line = [p.stdout.readline() for _ in range(3)]
        assert line == ["PUT\n", "wk\n", "hello\n"]
    finally:
        p.kill()
        p.wait()


def test_failover_skips_a_dead_member(cluster) -> None:
    victim = cluster.client_urls[0]
    idx = 0
    cluster.procs[idx].kill()
    cluster.procs[idx].wait()
    eps = ",".join(cluster.client_urls)  # the dead member first
    code, out, err = ctl(cluster, "put", "fo", "v", endpoints=eps)
    assert (code, out) == (0, "OK\n"), err
    assert ctl(cluster, "get", "fo", endpoints=eps) == (0, "fo\nv\n", "")
    assert victim in eps
