"""raftkvctl against etcdctl: both tools talk to the same real etcd 3.4 (one member: output
formats do not depend on cluster size, and it starts in a second), and their stdout, stderr
and exit codes must be equal. Commands whose output carries a revision run back to back on an
unchanged store; writes are replayed on reset state. Plus failover on a fake server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from cluster.config import free_ports
from tests.api.clusters import ROOT, etcd_binaries, start_etcd

ENV = {**os.environ, "ETCDCTL_API": "3", "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def etcd():
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcd")
    c = start_etcd(bins[0], members=1)
    try:
        yield c.url, bins[1]
    finally:
        c.stop()


def _run(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=ENV, timeout=30)
    err = "".join(ln + "\n" for ln in p.stderr.splitlines() if not ln.startswith('{"level"'))
    return p.returncode, p.stdout, err


def both(etcd, args: list[str], stdin: str = "") -> tuple[tuple, tuple]:
    url, etcdctl = etcd
    e = _run([etcdctl, f"--endpoints={url}", *args], stdin)
    r = _run([sys.executable, "-m", "raftkv.cli.ctl", f"--endpoints={url}", *args], stdin)
    return e, r


def ctl(etcd, args: list[str]) -> str:
    url, etcdctl = etcd
    return _run([etcdctl, f"--endpoints={url}", *args])[1]


def _seed(etcd) -> None:
    ctl(etcd, ["del", "", "--from-key"])
    for k, v in [("k1", "v1"), ("k2", "v2"), ("k3", ""), ("x", "multi\nline")]:
        ctl(etcd, ["put", k, v])


READS = [
    ["get", "k1"],
    ["get", "k", "--prefix"],
    ["get", "k", "--prefix", "-w", "json"],
    ["get", "k", "--prefix", "--keys-only"],
    ["get", "k", "--prefix", "--limit", "1", "-w", "json"],
    ["get", "k", "--prefix", "--print-value-only"],
    ["get", "k", "--prefix", "--order", "DESCEND", "--sort-by", "VALUE"],
    ["get", "k1", "k3"],
    ["get", "k2", "--from-key"],
    ["get", "nope"],
    ["get", "nope", "-w", "json"],
    ["get", "x"],
    ["get", "x", "--hex"],
    ["get", "k", "--prefix", "-w", "table"],
    ["get", "k", "--prefix", "-w", "fields"],
    ["get", "x", "-w", "fields"],
    ["get", "k1", "--rev", "100000"],
    ["member", "list"],
    ["member", "list", "-w", "table"],
    ["member", "list", "-w", "json"],
    ["endpoint", "status"],
    ["endpoint", "status", "-w", "table"],
    ["endpoint", "status", "-w", "json"],
    ["lease", "list"],
    ["lease", "timetolive", "1234"],
    ["lease", "timetolive", "1234", "-w", "json"],
    ["defrag"],
    ["alarm", "list"],
    ["alarm", "list", "-w", "json"],
    ["alarm", "disarm"],
    ["move-leader"],
    ["move-leader", "zz"],
]


@pytest.mark.parametrize("args", READS, ids=[" ".join(a) for a in READS])
def test_read_output_matches_etcdctl(etcd, args: list[str]) -> None:
    if args == READS[0]:
        _seed(etcd)
    e, r = both(etcd, args)
    assert r == e


WRITES = [
    (["put", "k1", "new"], ""),
    (["put", "k1", "new", "--prev-kv"], ""),
    (["put", "k1", "new", "-w", "json"], ""),
    (["del", "k1"], ""),
    (["del", "k", "--prefix", "--prev-kv"], ""),
    (["del", "nope"], ""),
    (["del", "k", "--prefix", "-w", "json"], ""),
    (["txn"], 'value("k1") = "v1"\n\nput k2 v9\nget k1\ndel nope\n\nput k3 v3\n\n'),
    (["txn"], 'value("k1") = "zz"\n\nput k2 v9\n\nput k3 v3 --prev-kv\nget k --prefix\n\n'),
    (["txn", "-w", "json"], 'mod("k1") > "0"\nversion("k1") = "1"\n\ndel k2\nget k1\n\n\n'),
    (["txn", "-w", "fields"], 'value("k1") = "v1"\n\nget k1\nput k1 y\ndel k2\n\n\n'),
    (["put", "k1", "z", "--prev-kv", "-w", "fields"], ""),
    (["del", "k", "--prefix", "--prev-kv", "-w", "fields"], ""),
    (["txn", "-i"], 'create("k9") = "0"\n\nput k9 v\n\n\n'),
    (["txn"], 'value("k1") = "v1"\n\nput k2 v2\n'),
    (["txn"], 'bogus("k1") = "v1"\n\n\n\n'),
    (["txn"], 'value("k1") = "v1"\n\nfoo k2 v2\n\n\n'),
    (["compaction", "1000000"], ""),
]


@pytest.mark.parametrize("args,stdin", WRITES, ids=[" ".join(a) for a, _ in WRITES])
def test_write_output_matches_etcdctl(etcd, args: list[str], stdin: str) -> None:
    url, etcdctl = etcd
    _seed(etcd)
    e = _run([etcdctl, f"--endpoints={url}", *args], stdin)
    _seed(etcd)  # the same store again, at later revisions
    r = _run([sys.executable, "-m", "raftkv.cli.ctl", f"--endpoints={url}", *args], stdin)
    assert _norm_revs(r) == _norm_revs(e)


def _norm_revs(t: tuple[int, str, str]) -> tuple[int, str, str]:
    out = re.sub(r'"(revision|mod_revision|create_revision)":\d+', r'"\1":N', t[1])
    out = re.sub(r'"(Prev)?(Revision|ModRevision|CreateRevision)" : \d+', r'"\1\2" : N', out)
    return (t[0], out, t[2])


def test_watch_and_lease_flows_match_etcdctl(etcd) -> None:
    url, etcdctl = etcd
    _seed(etcd)
    procs = []
    for tool in ([etcdctl], [sys.executable, "-m", "raftkv.cli.ctl"]):
        for extra in ([], ["-w", "json"]):
            procs.append(
                subprocess.Popen(
                    [*tool, f"--endpoints={url}", "watch", "w", "--prefix", "--prev-kv", *extra],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    env=ENV,
                )
            )
    time.sleep(3.0)  # both tools connected and watching
    for args in (
        ["put", "w1", "a"],
        ["put", "w", "a"],
        ["put", "w", "b"],
        ["del", "w", "--prefix"],
    ):
        ctl(etcd, args)
    time.sleep(1.0)
    outs = []
    for p in procs:
        p.terminate()
        outs.append(p.communicate(timeout=10)[0])
    assert outs[2] == outs[0] and outs[0].count("PUT") == 3
    assert outs[3] == outs[1]
    # a lease round trip
    lid = ctl(etcd, ["lease", "grant", "30"]).split()[1]
    e, r = both(etcd, ["lease", "keep-alive", "--once", lid])
    assert r == e
    e, r = both(etcd, ["lease", "keep-alive", "--once", "1234"])
    assert r == e
    rev = json.loads(ctl(etcd, ["get", "k1", "-w", "json"]))["header"]["revision"]
    ctl(etcd, ["compaction", str(rev)])
    e, r = both(etcd, ["watch", "k1", "--rev", "1"])
    assert (r[0], r[2]) == (e[0], e[2])


def test_failover_to_next_endpoint(etcd) -> None:
    url, _ = etcd
    dead = f"http://127.0.0.1:{free_ports(1)[0]}"
    code, out, err = _run(
        [sys.executable, "-m", "raftkv.cli.ctl", f"--endpoints={dead},{url}", "put", "fo", "x"]
    )
    assert (code, out, err) == (0, "OK\n", "")
    code, out, _ = _run([sys.executable, "-m", "raftkv.cli.ctl", f"--endpoints={dead}", "get", "a"])
    assert code == 1


BAD_ARGS = [
    "put",
    "get",
    "del",
    "del a b c",
    "watch",
    "compaction",
    "compaction abc",
    "lease grant",
    "lease grant abc",
    "lease revoke",
    "lease revoke zz",
    "lease timetolive",
    "lease timetolive zz",
    "lease keep-alive",
    "lease keep-alive zz",
    "put sk3",
]


@pytest.mark.parametrize("cmd", BAD_ARGS)
def test_bad_arguments_like_etcdctl(etcd, cmd: str) -> None:
    e, r = both(etcd, cmd.split())
    assert r == e


def test_put_value_from_stdin(etcd) -> None:
    url, _ = etcd
    code, out, _ = _run(
        [sys.executable, "-m", "raftkv.cli.ctl", f"--endpoints={url}", "put", "sk"], "a\nb"
    )
    assert (code, out) == (0, "OK\n")
    e, r = both(etcd, ["get", "sk", "-w", "json"])
    assert r == e and '"value":"YQpi"' in r[1]


def test_member_add_update_remove_like_etcdctl(etcd) -> None:
    """A learner (it never starts, and a learner does not count for quorum)."""

    def run(tool: list[str], port: int) -> list[str]:
        url, _etcdctl = etcd
        code, out, err = _run(
            [
                *tool,
                f"--endpoints={url}",
                "member",
                "add",
                "lrn",
                f"--peer-urls=http://127.0.0.1:{port}",
                "--learner",
            ]
        )
        assert code == 0, (tool, out, err)
        mid = out.split()[1]
        # %16x pads a short ID with spaces: fold them too
        out = re.sub(r" +" + mid + " ", " <id> ", out)
        lines = out.replace(f":{port}", ":<port>").splitlines()
        # members are listed in ID order, and IDs are random: compare the set
        lines = [
            "ETCD_INITIAL_CLUSTER=" + ",".join(sorted(ln.split("=", 1)[1].strip('"').split(",")))
            if ln.startswith("ETCD_INITIAL_CLUSTER=")
            else ln
            for ln in lines
        ]
        for args in (["update", mid, f"--peer-urls=http://127.0.0.1:{port + 1}"], ["remove", mid]):
            code, o, err = _run([*tool, f"--endpoints={url}", "member", *args])
            assert code == 0, (tool, args, o, err)
            lines.append(re.sub(r" +" + mid + " ", " <id> ", o))
        return lines

    _url, etcdctl = etcd
    e = run([etcdctl], free_ports(1)[0])
    r = run([sys.executable, "-m", "raftkv.cli.ctl"], free_ports(1)[0])
    assert r == e


@pytest.mark.parametrize(
    "cmd",
    ["member add", "member add x", "member remove", "member remove zz", "member promote 1234"],
)
def test_member_errors_like_etcdctl(etcd, cmd: str) -> None:
    e, r = both(etcd, cmd.split())
    assert r == e
