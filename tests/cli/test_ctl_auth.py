"""The user / role / auth commands and ``--user``, four ways: the same command sequence runs on
four fresh one-member clusters: etcdctl (gRPC) against etcd 3.4 (the reference), raftkvctl
(the JSON gateway) against etcd 3.4 and against raftkv, and etcdctl against raftkv's gRPC
API. Each command's stdout, stderr and exit code must be the reference's."""

from __future__ import annotations

import concurrent.futures
import re
import sys

import pytest

from tests.api.clusters import etcd_binaries, raftkv_available, start_etcd, start_raftkv
from tests.cli.test_ctl import _run

pytestmark = pytest.mark.timeout(300)

FLAGS = ("--bcrypt-cost", "4")
ROOT = ["--user", "root:rootpw"]
U = ["--user", "u:upw"]

# (argv, stdin)
SEQUENCE: list[tuple[list[str], str]] = [
    (["user", "list"], ""),
    (["user", "add", "root:rootpw"], ""),
    (["user", "add", "u", "--new-user-password=upw"], ""),
    (["user", "add", "w", "--interactive=false"], "wpw\n"),
    (["user", "add", "nopw", "--no-password"], ""),
    (["user", "add", ":x"], ""),
    (["user", "add"], ""),
    (["user", "add", "u:again"], ""),
    (["role", "add", "r"], ""),
    (["role", "add", "r"], ""),
    (["role", "add"], ""),
    (["role", "grant-permission", "r", "read", "a/", "--prefix"], ""),
    (["role", "grant-permission", "r", "readwrite", "b", "c"], ""),
    (["role", "grant-permission", "r", "WRITE", "k"], ""),
    (["role", "grant-permission", "r", "read", "z", "--from-key"], ""),
    (["role", "grant-permission", "r", "read", "", "--prefix"], ""),
    (["role", "grant-permission", "r", "bogus", "k"], ""),
    (["role", "grant-permission", "r", "read"], ""),
    (["role", "grant-permission", "r", "read", "a", "b", "--prefix"], ""),
    (["role", "grant-permission", "r", "read", "a", "--prefix", "--from-key"], ""),
    (["role", "grant-permission", "nope", "read", "a"], ""),
    (["role", "get", "r"], ""),
    (["role", "get", "r", "-w", "json"], ""),
    (["role", "get", "nope"], ""),
    (["role", "list"], ""),
    (["user", "grant-role", "u", "r"], ""),
    (["user", "grant-role", "u", "nope"], ""),
    (["user", "grant-role", "u"], ""),
    (["user", "get", "u"], ""),
    (["user", "get", "u", "--detail"], ""),
    (["user", "get", "nope"], ""),
    (["user", "list"], ""),
    (["user", "revoke-role", "u", "nope"], ""),
    (["role", "revoke-permission", "r", "k"], ""),
    (["role", "revoke-permission", "r", "b", "c"], ""),
    (["role", "revoke-permission", "r", "z", "--from-key"], ""),
    (["role", "revoke-permission", "r", "", "--prefix"], ""),
    (["role", "revoke-permission", "r", "k"], ""),
    (["role", "revoke-permission", "r"], ""),
    (["auth", "enable"], ""),  # root has no root role yet: etcdctl adds and grants it
    (["auth", "enable", "x"], ""),
    (["user", "list"], ""),
    (["user", "list", *ROOT], ""),
    (["user", "list", "--user", "root", "--password", "rootpw"], ""),
    (["user", "list", "--user", "root:wrong"], ""),
    (["user", "list", "--user", "who:x"], ""),
    (["user", "list", *U], ""),
    (["user", "get", "u", *U], ""),
    (["role", "get", "r", *U], ""),
    (["put", "a/1", "x", *U], ""),
    (["get", "a/1", *U], ""),
    (["put", "a/1", "x", *ROOT], ""),
    (["get", "a/1", *U], ""),
    (["get", "a/1"], ""),
    (["user", "passwd", "u", "--interactive=false", *ROOT], "newpw\n"),
    (["get", "a/1", *U], ""),
    (["get", "a/1", "--user", "u:newpw"], ""),
    (["user", "delete", "root", *ROOT], ""),
    (["user", "revoke-role", "root", "root", *ROOT], ""),
    (["role", "delete", "root", *ROOT], ""),
    (["auth", "disable", *U], ""),
    (["auth", "disable", *ROOT], ""),
    (["user", "list", *U], ""),  # (auth off: the login is skipped)
    (["user", "revoke-role", "root", "root"], ""),
    (["auth", "enable"], ""),  # the root role exists now: etcdctl's retry fails
    (["user", "delete", "w"], ""),
    (["user", "delete", "w"], ""),
    (["role", "delete", "r"], ""),
    (["role", "delete", "r"], ""),
    (["user", "get", "u"], ""),
]


_IDS = re.compile(r'"(cluster_id|member_id)":\d+')


def _sequence(argv0: list[str], url: str) -> list[tuple[int, str, str]]:
    out = []
    for args, stdin in SEQUENCE:
        code, stdout, stderr = _run([*argv0, f"--endpoints={url}", *args], stdin)
        out.append((code, _IDS.sub(r'"\1":N', stdout), stderr))
    return out


@pytest.fixture(scope="module")
def outputs() -> dict[str, list[tuple[int, str, str]]]:
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcd")
    why = raftkv_available()
    if why is not None:
        pytest.skip(why)
    ctl = [sys.executable, "-m", "raftkv.cli.ctl"]
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        starts = [
            ex.submit(start_etcd, bins[0], 1, FLAGS),
            ex.submit(start_etcd, bins[0], 1, FLAGS),
            ex.submit(start_raftkv, 1, FLAGS),
            ex.submit(start_raftkv, 1, FLAGS),
        ]
        try:
            clusters = [f.result() for f in starts]
            runs = {
                "etcdctl@etcd": ex.submit(_sequence, [bins[1]], clusters[0].url),
                "raftkvctl@etcd": ex.submit(_sequence, ctl, clusters[1].url),
                "raftkvctl@raftkv": ex.submit(_sequence, ctl, clusters[2].url),
                "etcdctl@raftkv": ex.submit(_sequence, [bins[1]], clusters[3].url),
            }
            return {k: f.result() for k, f in runs.items()}
        finally:
            for f in starts:
                if f.exception() is None:
                    f.result().stop()


@pytest.mark.parametrize("i", range(len(SEQUENCE)), ids=[" ".join(a) for a, _ in SEQUENCE])
def test_auth_commands_match_etcdctl(outputs, i: int) -> None:
    want = outputs["etcdctl@etcd"][i]
    for run in ("raftkvctl@etcd", "raftkvctl@raftkv", "etcdctl@raftkv"):
        assert outputs[run][i] == want, run
