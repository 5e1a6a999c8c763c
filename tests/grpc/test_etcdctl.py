"""The real etcdctl 3.4 over gRPC against a 3-member raftkv and a 3-member etcd 3.4, side by side.

One script of etcdctl commands (put/get incl. ``-w json``, ``--prefix``, ``--rev``, del, txn,
watch one-shot, ``--prefix``, ``--rev`` and interactive, the lease commands, member list/add/
remove, endpoint status/health, compaction, defrag, alarm list, snapshot save, lock, move-leader,
refusals such as a revoked lease, a compacted revision and a too large request) runs against
both clusters; every command's exit code, stdout and stderr must be identical once ids, terms,
URLs, sizes and times are masked. Both clusters serve gRPC and JSON on the same client URL (the
gateway is used only to find the leader). The snapshot raftkv sent must be one ``raftkvctl
snapshot restore`` accepts.
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.api.clusters import Cluster, etcd_binaries
from tests.grpc.sides import Steps, assert_same, on_both

pytestmark = pytest.mark.timeout(240)


def _mask(text: str, c: Cluster, leader: str = "") -> str:
    """``leader``: name client URLs by role (whichever member won the election), the others
    alike; without it each by its member."""
    for i, u in enumerate(sorted(c.client_urls, key=lambda u: u != leader)):
        name = ("leader" if u == leader else "client") if leader else f"client{i + 1}"
        text = text.replace(u, f"<{name}>").replace(u.removeprefix("http://"), f"<{name}>")
    for i, u in enumerate(c.peer_urls):
        text = text.replace(u, f"<peer{i + 1}>")
    text = re.sub(r'"(cluster_id|member_id|raft_term|ID)":\d+', r'"\1":0', text)
    text = re.sub(r'"ts":"?[0-9.:TZ-]+"?', '"ts":0', text)
    text = re.sub(r"client-[0-9a-f-]{36}", "client-<uuid>", text)
    text = re.sub(r"\| +[0-9a-f]{12,16} \|", "| <id> |", text)  # table cells pad a short id
    # member, cluster and lease ids ("%16x" pads a short one)
    text = re.sub(r" *\b[0-9a-f]{12,16}\b", " <id>", text)
    text = re.sub(r"took = [0-9.]+[µm]?s", "took = <t>", text)
    text = re.sub(r"remaining\(\d+s\)", "remaining(<n>s)", text)
    # Go map order
    text = re.sub(
        r'ETCD_INITIAL_CLUSTER="([^"]*)"',
        lambda m: 'ETCD_INITIAL_CLUSTER="' + ",".join(sorted(m.group(1).split(","))) + '"',
        text,
    )
    return text


def _table_mask(text: str) -> str:
    """endpoint status -w table: DB SIZE, RAFT TERM/INDEX/APPLIED INDEX are the cluster's own."""
    out = []
    for line in text.splitlines():
        cells = line.split("|")
        if len(cells) == 12 and not line.startswith("|        ENDPOINT"):
            for i in (4, 7, 8, 9):
                cells[i] = " <n> "
        out.append("|".join(cells))
    return "\n".join(out) + "\n"


class Ctl:
    def __init__(self, etcdctl: str, c: Cluster, log: Steps) -> None:
        self.etcdctl = etcdctl
        self.c = c
        self.leader = c.leader_url()
        self.env = {**os.environ, "ETCDCTL_API": "3"}
        self.log = log

    def argv(self, args: list[str], endpoints: str | None) -> list[str]:
        return [self.etcdctl, f"--endpoints={endpoints or self.leader}", *args]

    def run(
        self,
        label: str,
        *args: str,
        stdin: str = "",
        endpoints: str | None = None,
        table: bool = False,
        unordered: bool = False,
    ) -> subprocess.CompletedProcess:
        p = subprocess.run(
            self.argv(list(args), endpoints),
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
        )
        out = _mask(p.stdout, self.c, "" if unordered else self.leader)
        if unordered or table:  # members are listed by id, and ids are each cluster's own
            out = "\n".join(sorted(out.splitlines()))
        self.log.append((label, (p.returncode, _table_mask(out) if table else out, self._err(p))))
        return p

    def _err(self, p: subprocess.CompletedProcess) -> str:
        # etcdctl's zap lines name the caller and the retry; their times and targets are masked
        return _mask(p.stderr, self.c, self.leader)

    def stream(self, label: str, *args: str, stdin: str = "", until: str = "") -> None:
        """A command that does not end by itself (watch): its output once it printed
        ``until`` (or after a moment), then SIGINT."""
        p = subprocess.Popen(
            self.argv(list(args), None),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=self.env,
        )
        assert p.stdin is not None and p.stdout is not None
        try:
            p.stdin.write(stdin.encode())
            p.stdin.flush()
            fd = p.stdout.fileno()
            deadline = time.monotonic() + (10 if until else 1.5)
            raw = b""
            while time.monotonic() < deadline and not (until and until.encode() in raw):
                if select.select([fd], [], [], 0.05)[0]:
                    chunk = os.read(fd, 65536)
                    if not chunk:
                        break
                    raw += chunk
            time.sleep(0.3)  # anything that would follow wrongly
            p.send_signal(signal.SIGINT)
            p.wait(timeout=10)  # before stdin closes (interactive watch would report the EOF)
            rest, err_b = p.communicate(timeout=10)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        got = (raw + rest).decode()
        err = err_b.decode()
        self.log.append((label, (_mask(got, self.c, self.leader), _mask(err, self.c, self.leader))))


def _lease_id(out: str) -> str:
    m = re.search(r"lease ([0-9a-f]+) granted", out)
    assert m, out
    return m.group(1)


def _member_ids(out: str) -> list[str]:
    return [line.split(",")[0] for line in out.splitlines() if line]


def script(ctl: Ctl, tmp: Path) -> None:
    c = ctl.c
    all_eps = ",".join(c.client_urls)
    ctl.run("put", "put", "foo", "bar")
    ctl.run("put2", "put", "foo2", "baz")
    ctl.run("put-prev", "put", "foo", "bar2", "--prev-kv")
    ctl.run("get", "get", "foo")
    ctl.run("get-json", "get", "foo", "-w", "json")
    ctl.run("get-prefix", "get", "--prefix", "foo")
    ctl.run("get-prefix-json", "get", "--prefix", "foo", "-w", "json", "--limit", "1")
    ctl.run("get-rev", "get", "foo", "--rev=2")
    ctl.run("get-keys-only", "get", "--prefix", "f", "--keys-only")
    ctl.run("get-missing", "get", "nothing")
    ctl.run("get-all-endpoints", "get", "foo", endpoints=all_eps)
    ctl.run("get-serializable", "get", "foo", "--consistency=s")
    ctl.run("del", "del", "foo2")
    ctl.run("del-missing", "del", "foo2")
    ctl.run(
        "txn-success", "txn", stdin='value("foo") = "bar2"\n\nput foo bar3\nget foo\n\nput no x\n\n'
    )
    ctl.run("txn-failure", "txn", stdin='value("foo") = "zzz"\n\nput no x\n\nget foo\n\n')
    ctl.run("txn-json", "txn", "-w", "json", stdin='mod("foo") > "0"\n\nget foo\n\n\n')
    ctl.stream("watch-rev", "watch", "foo", "--rev=1", until="bar3")
    ctl.stream("watch-prefix-rev", "watch", "--prefix", "foo", "--rev=2", until="bar3")
    ctl.stream(
        "watch-interactive",
        "watch",
        "-i",
        stdin="watch --prefix fo --rev=3\n",
        until="bar3",
    )
    ctl.stream("watch-prev-kv", "watch", "foo", "--rev=4", "--prev-kv", until="bar3")
    p = ctl.run("lease-grant", "lease", "grant", "100")
    lid = _lease_id(p.stdout)
    ctl.run("put-lease", "put", "leased", "v", f"--lease={lid}")
    ctl.run("lease-ttl", "lease", "timetolive", lid)
    ctl.run("lease-ttl-keys", "lease", "timetolive", lid, "--keys")
    ctl.run("lease-keepalive-once", "lease", "keep-alive", "--once", lid)
    ctl.run("lease-list", "lease", "list")
    ctl.run("lease-revoke", "lease", "revoke", lid)
    ctl.run("lease-ttl-expired", "lease", "timetolive", lid)
    ctl.run("lease-revoke-again", "lease", "revoke", lid)
    ctl.run("lease-keepalive-unknown", "lease", "keep-alive", "--once", lid)
    ctl.run("get-leased-gone", "get", "leased")
    p = ctl.run("member-list", "member", "list", unordered=True)
    ids = _member_ids(p.stdout)
    ctl.run("member-list-table", "member", "list", "-w", "table", unordered=True)
    ctl.run("endpoint-status", "endpoint", "status", "-w", "table", endpoints=all_eps, table=True)
    ctl.run("endpoint-health", "endpoint", "health", endpoints=ctl.leader)
    ctl.run("alarm-list", "alarm", "list")
    ctl.run("compaction", "compaction", "5")
    ctl.run("get-compacted", "get", "foo", "--rev=2")
    ctl.run("compaction-again", "compaction", "3")
    ctl.run("compaction-future", "compaction", "1000")
    ctl.stream("watch-compacted", "watch", "foo", "--rev=2", until="compacted")
    ctl.run("defrag", "defrag")
    # over --max-request-bytes (1.5 MiB), under etcdctl's own 2 MiB send limit
    ctl.run("too-large", "put", "big", stdin="x" * 1_600_000)
    ctl.run("empty-key-range", "get", "", "--prefix", "--keys-only", "--limit=2")
    (tmp / c.kind).mkdir()
    p = ctl.run("snapshot-save", "snapshot", "save", str(tmp / c.kind / "snap.db"))
    out = p.stdout.replace(str(tmp / c.kind), "<tmp>")
    ctl.log[-1] = ("snapshot-save", (p.returncode, out))
    ctl.run("get-from-key-sorted", "get", "--from-key", "", "--sort-by=MODIFY", "--order=DESCEND",
            "--keys-only")  # fmt: skip
    ctl.run("lock", "lock", "l1", "echo", "hello")  # a lease, a txn and a watch underneath
    ctl.run("del-prefix-prev-kv", "del", "--prefix", "", "--prev-kv")
    # move-leader: from the leader to another member (etcdctl finds the leader itself)
    st = subprocess.run(
        ctl.argv(["endpoint", "status", "-w", "fields"], ctl.leader),
        capture_output=True,
        text=True,
        env=ctl.env,
        timeout=30,
    ).stdout
    leader_id = int(re.search(r'"Leader" : (\d+)', st).group(1))  # type: ignore[union-attr]
    target = next(i for i in ids if int(i, 16) != leader_id)
    ctl.run("move-leader", "move-leader", target, endpoints=all_eps)
    ctl.run("move-leader-not-leader", "move-leader", target, endpoints=ctl.leader)
    ctl.leader = c.leader_url()
    time.sleep(5.5)  # etcd's HealthInterval: the new leader's peer links count as healthy
    ctl.run("member-add", "member", "add", "newbie", "--peer-urls=http://127.0.0.1:1", "--learner")
    p = subprocess.run(
        ctl.argv(["member", "list"], None), capture_output=True, text=True, env=ctl.env, timeout=30
    )
    new_id = next(line.split(",")[0] for line in p.stdout.splitlines() if "127.0.0.1:1," in line)
    ctl.run("member-list-learner", "member", "list", unordered=True)
    ctl.run("member-remove", "member", "remove", new_id)
    ctl.run("member-remove-again", "member", "remove", new_id)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcd")
    tmp = tmp_path_factory.mktemp("etcdctl")
    got: dict[str, Any] = on_both(lambda c, steps: script(Ctl(bins[1], c, steps), tmp))
    got["tmp"] = tmp
    return got


def test_etcdctl_sees_raftkv_as_etcd(runs: dict[str, Any]) -> None:
    assert_same(runs)


def test_etcdctl_snapshot_is_restorable(runs: dict[str, Any]) -> None:
    snap = runs["tmp"] / "raftkv" / "snap.db"
    data = snap.read_bytes()
    assert len(data) > 4096
    p = subprocess.run(
        [sys.executable, "-m", "raftkv.cli.ctl", "snapshot", "restore", str(snap),
         f"--data-dir={runs['tmp'] / 'restored'}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert (runs["tmp"] / "restored" / "member" / "snap" / "db").exists()
