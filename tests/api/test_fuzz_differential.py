"""Differential fuzzing: seeded random request sequences sent, in the same order, to a real
etcd 3.4 and to raftkv (both fresh 3-member clusters; requests go to the leader, some writes
and linearizable reads to a follower), with the normalised replies compared one by one
(status, framing, body bytes; cluster_id / member_id / raft_term set aside, a ticking lease
TTL masked -- see exchange.py).

The key space is small (a handful of keys under three prefixes) so that puts, deletes, txns,
leases, compactions and watches keep running into each other. Puts, ranges (limits, revisions
past / compacted / future, every sort, filters, keys/count only, serializable), deletes, txns
(every compare target and result, over keys and ranges, missing keys, nested txns, duplicate
keys), compactions, leases (grant, revoke, time-to-live with keys, leases, keep-alive) and
watches (history from a start revision, prev_kv, filters, progress and cancel, and writes made
while the watch is open). Timing is kept out of the answers: leases live far longer than a run,
writes made under an open watch wait until it has sent its history, and a follower's write is
given a moment to reach the leader. Where etcd 3.4's members disagree among themselves (see
``Gen._etcd_divergence``) raftkv answers as the member that was asked.

A sequence depends only on its seed, never on the replies, so a failure replays exactly:

    RAFTKV_FUZZ_BASE=<base> RAFTKV_FUZZ_SEEDS=<n> pytest tests/api/test_fuzz_differential.py

runs sequences ``<base>:0 .. <base>:<n-1>`` in that order on one pair of clusters (revisions,
compactions and leases carry over from one sequence to the next; each sequence ends by revoking
its leases). CI runs a fixed, small number of sequences (< 60 s on 2 cores); set
RAFTKV_FUZZ_SEEDS higher locally (``RAFTKV_FUZZ_BASE=random`` picks a fresh base).

``python -m tests.api.test_fuzz_differential --print <base>:<i>`` prints one sequence.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.api import exchange as X
from tests.api import rawhttp
from tests.api.clusters import Cluster
from tests.api.test_differential import _both, _side, _url_names

BASE = os.environ.get("RAFTKV_FUZZ_BASE", "7")
SEEDS = int(os.environ.get("RAFTKV_FUZZ_SEEDS", "4"))
OPS = int(os.environ.get("RAFTKV_FUZZ_OPS", "60"))

KEYS = [b"a", b"a\x00", b"a/1", b"a/2", b"a/3", b"b", b"b/1", b"c", b"\xff\x01"]
# a bigger family, filled by one txn now and then: sorts over more than 12 kvs (Go's sort.Sort
# is not stable beyond 12) and ties in create/mod revisions
BULK = [b"m/%02d" % i for i in range(16)]
# range ends: the prefixes' ends, every key >= key, keys of the space, and a few odd ones
ENDS = [b"a0", b"a\x00", b"a/2", b"b0", b"c", b"d", b"\x00", b"\xff\xff", b"a/", b"b"]
VALUES = [b"", b"1", b"2", b"10", b"v", b"zz"]
LEASES = [11, 12, 13]
# far apart, so leases expire in the order of their TTLs while a run lasts (LeaseLeases sorts
# by remaining time) and none expires before its sequence revokes it
TTLS = [600, 1200, 2400]
SORT_ORDERS = ["NONE", "ASCEND", "DESCEND", 0, 1, 2, 3]  # 3: no sort, but no limit either
SORT_TARGETS = ["KEY", "VERSION", "CREATE", "MOD", "VALUE", 0, 1, 2, 3, 4]
TARGETS = ["VERSION", "CREATE", "MOD", "VALUE", "LEASE"]
RESULTS = ["EQUAL", "GREATER", "LESS", "NOT_EQUAL", 0, 1, 2, 3]
_TARGET_FIELD = {
    "VERSION": "version",
    "CREATE": "create_revision",
    "MOD": "mod_revision",
    "VALUE": "value",
    "LEASE": "lease",
}
# a stream quiet that long has said everything it had (etcd syncs unsynced watchers every
# 100 ms); writes made while a watch is open wait for that
STREAM_IDLE = 0.5
FOLLOWER_SETTLE = 0.1


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


class Gen:
    """A random request sequence; ``hint`` follows the store's revision roughly (each request
    that may write counts the share of them that do), so revisions asked for land near the
    live ones -- past, compacted and future alike."""

    def __init__(
        self, seed: str, hint: float, pinned: bool = False, compacted: set[int] | None = None
    ) -> None:
        self.seed = seed
        self.r = random.Random(seed)
        self.hint = hint
        self.pinned = pinned  # everything to the leader from now on (see txn_req)
        # revisions compaction was asked at: no watch starts exactly there, where etcd shows a
        # tombstone of that revision or not depending on whether its backend has committed the
        # compaction's deletes yet (its reads see them only then, within 100 ms)
        self.compacted = set() if compacted is None else compacted
        self.ops: list[dict] = []

    # --- pieces ---

    def key(self) -> bytes:
        return self.r.choice(BULK) if self.r.random() < 0.12 else self.r.choice(KEYS)

    def int_field(self, n: int) -> int | str:
        return str(n) if self.r.random() < 0.3 else n

    def rev(self) -> int:
        r = self.r
        hint = int(self.hint)
        x = r.random()
        if x < 0.45:
            return max(1, hint - r.randint(0, 5))
        if x < 0.55:
            return hint + r.randint(1, 3)  # a future revision
        if x < 0.6:
            return r.randint(-3, 0)  # the current one for a range, compacted in a txn
        return r.randint(1, hint + 1)

    def key_range(self, d: dict) -> dict:
        r = self.r
        d["key"] = b64(self.key())
        x = r.random()
        if x < 0.12:
            d["key"], d["range_end"] = b64(b"m/"), b64(b"m0")
        elif x < 0.45:
            d["range_end"] = b64(r.choice(ENDS))
        elif x < 0.5:
            d["range_end"] = b64(b"\x00")
        return d

    def range_req(self) -> dict:
        r = self.r
        d = self.key_range({})
        if r.random() < 0.3:
            d["limit"] = self.int_field(r.randint(-1, 4))
        if r.random() < 0.3:
            d["revision"] = self.int_field(self.rev())
        if r.random() < 0.35:
            d["sort_order"] = r.choice(SORT_ORDERS)
        if r.random() < 0.35:
            d["sort_target"] = r.choice(SORT_TARGETS)
        for f in ("keys_only", "count_only", "serializable"):
            if r.random() < 0.12:
                d[f] = True
        for f in ("min_mod_revision", "max_mod_revision", "min_create_revision"):
            if r.random() < 0.08:
                d[f] = self.int_field(self.rev())
        if r.random() < 0.08:
            d["max_create_revision"] = self.int_field(self.rev())
        return d

    def put_req(self) -> dict:
        r = self.r
        d: dict[str, Any] = {"key": b64(self.key())}
        v = r.choice(VALUES)
        if v:
            d["value"] = b64(v)
        if r.random() < 0.4:
            d["prev_kv"] = True
        if r.random() < 0.3:
            d["lease"] = self.int_field(r.choice(LEASES))
        if r.random() < 0.12:
            d["ignore_value"] = True
            if r.random() < 0.8:
                d.pop("value", None)
        if r.random() < 0.12:
            d["ignore_lease"] = True
            if r.random() < 0.8:
                d.pop("lease", None)
        return d

    def delete_req(self) -> dict:
        d = self.key_range({})
        if self.r.random() < 0.5:
            d["prev_kv"] = True
        return d

    def compare(self) -> dict:
        r = self.r
        t = r.choice(TARGETS)
        d: dict[str, Any] = {"key": b64(self.key())}
        if r.random() < 0.25:
            d["range_end"] = b64(r.choice(ENDS))
        d["target"] = t if r.random() < 0.8 else TARGETS.index(t)
        d["result"] = r.choice(RESULTS)
        field = _TARGET_FIELD[t]
        if t == "VALUE":
            v = r.choice(VALUES)
            if v:
                d["value"] = b64(v)
        elif t == "LEASE":
            d["lease"] = r.choice([0, *LEASES])
        elif t == "VERSION":
            d["version"] = r.randint(0, 4)
        else:
            d[field] = r.choice([0, self.rev()])
        x = r.random()
        if x < 0.06:
            d["target"] = r.choice([5, 7])  # unknown: compared as equal (etcd's zero result)
        elif x < 0.12:
            d["result"] = r.choice([4, 9])  # unknown: the compare holds
        elif x < 0.2 and field in d:
            # the value in another member of the target oneof: compared with the zero value
            other = r.choice([f for f in _TARGET_FIELD.values() if f != field])
            v = d.pop(field)
            d[other] = (
                b64(r.choice(VALUES)) if other == "value" else (v if isinstance(v, int) else 1)
            )
        return d

    def request_op(self, depth: int) -> dict:
        r = self.r
        x = r.random()
        if x < 0.3:
            return {"request_range": self.range_req()}
        if x < 0.65:
            return {"request_put": self.put_req()}
        if x < 0.9 or depth >= 2:
            return {"request_delete_range": self.delete_req()}
        return {"request_txn": self.txn_req(depth + 1)}

    def txn_req(self, depth: int = 0) -> dict:
        r = self.r
        d: dict[str, Any] = {}
        n = r.choice([0, 1, 1, 2, 3])
        if n:
            d["compare"] = [self.compare() for _ in range(n)]
        for branch in ("success", "failure"):
            k = r.choice([0, 1, 1, 2, 3])
            if k:
                d[branch] = [self.request_op(depth) for _ in range(k)]
        if depth == 0:
            self._etcd_divergence(d)
        return d

    def _etcd_divergence(self, txn: dict) -> None:
        """etcd 3.4 applies a write txn without its top-level ranges on every member but the
        one the client asked (removeNeedlessRangeReqs): when such a range is at a compacted
        or future revision, that member refuses the txn and the others apply its writes.
        raftkv refuses it everywhere. Such txns stay rare, and once one is sent every later
        request goes to the leader (where etcd's answers are the ones raftkv gives)."""
        ops = [*txn.get("success", ()), *txn.get("failure", ())]
        if all("request_range" in op for op in ops):
            return  # read-only: served by one member, nothing replicated
        ranges = [op["request_range"] for op in ops if "request_range" in op]
        if not any("revision" in q for q in ranges):
            return
        if self.r.random() < 0.8:
            for q in ranges:
                q.pop("revision", None)
        else:
            self.pinned = True

    def watch_req(self) -> dict:
        r = self.r
        c = self.key_range({})
        if r.random() < 0.8:
            rev = max(1, int(self.hint) - r.randint(0, 12)) if r.random() < 0.8 else self.rev()
            while rev in self.compacted:
                rev += 1
            c["start_revision"] = self.int_field(rev)
        if r.random() < 0.5:
            c["prev_kv"] = True
        if r.random() < 0.2:
            c["filters"] = r.choice([["NOPUT"], ["NODELETE"], [0], [1], ["NOPUT", "NODELETE"]])
        if r.random() < 0.15:
            c["watch_id"] = r.randint(1, 9)
        if r.random() < 0.03:
            c["start_revision"] = r.randint(-2, 0)
        return {"create_request": c}

    # --- operations ---

    def add(self, path: str, body: dict | str, writes: float = 0.0, **kw: Any) -> None:
        text = body if isinstance(body, str) else json.dumps(body, separators=(",", ":"))
        # through a follower (forwarded): what does not depend on how far it has applied
        if (
            path not in ("/v3/watch", "/v3/lease/leases")
            and '"serializable"' not in text
            and not self.pinned
            and self.r.random() < 0.15
        ):
            kw["to"] = "follower"
        self.ops.append({"name": f"{self.seed}#{len(self.ops)}", "path": path, "body": text, **kw})
        self.hint += writes

    def step(self) -> None:
        r = self.r
        x = r.random()
        if x < 0.22:
            self.add("/v3/kv/put", self.put_req(), writes=0.6)
        elif x < 0.37:
            self.add("/v3/kv/range", self.range_req())
        elif x < 0.43:
            self.add("/v3/kv/deleterange", self.delete_req(), writes=0.35)
        elif x < 0.62:
            self.add("/v3/kv/txn", self.txn_req(), writes=0.35)
        elif x < 0.645:
            rev = self.rev()
            self.compacted.add(rev)
            d: dict[str, Any] = {"revision": self.int_field(rev)}
            if r.random() < 0.5:
                d["physical"] = True
            self.add("/v3/kv/compaction", d)
        elif x < 0.71:
            lid = r.choice(LEASES)
            ttl = r.choice(TTLS) if r.random() < 0.95 else 9_000_000_001
            self.add("/v3/lease/grant", {"ID": self.int_field(lid), "TTL": ttl})
            if r.random() < 0.1:
                # a TTL below the minimum is raised to it (2 s here): revoked before it expires
                self.add("/v3/lease/grant", {"ID": 21, "TTL": r.choice([0, 1, -5])})
                self.add("/v3/lease/revoke", {"ID": 21})
        elif x < 0.735:
            self.add("/v3/lease/revoke", {"ID": self.int_field(r.choice(LEASES))}, writes=0.2)
        elif x < 0.775:
            d = {"ID": self.int_field(r.choice([*LEASES, 99]))}
            if r.random() < 0.6:
                d["keys"] = True
            self.add(r.choice(["/v3/lease/timetolive", "/v3/kv/lease/timetolive"]), d)
        elif x < 0.795:
            self.add("/v3/lease/leases", {})
        elif x < 0.81:
            ids = [r.choice([*LEASES, 99]) for _ in range(r.randint(1, 2))]
            body = "".join(json.dumps({"ID": i}) for i in ids)
            self.add("/v3/lease/keepalive", body, stream=True)
        elif x < 0.83:
            ops = [
                {"request_put": {"key": b64(k), "value": b64(r.choice(VALUES))}}
                for k in r.sample(BULK, r.randint(10, len(BULK)))
            ]
            self.add("/v3/kv/txn", {"success": ops}, writes=0.7)
        elif x < 0.91:
            w = self.watch_req()
            c = w["create_request"]
            body = json.dumps(w)
            if "start_revision" not in c and r.random() < 0.4:
                # a synced watcher: progress and cancel are answered in order
                wid = c.get("watch_id", 0)
                if r.random() < 0.5:
                    body += json.dumps({"progress_request": {}})
                body += json.dumps({"cancel_request": {"watch_id": r.choice([wid, wid, 5])}})
            self.add("/v3/watch", body, stream=True)
        else:
            # a watch with writes made once it has sent all it had (created, history)
            w = self.watch_req()
            if r.random() < 0.3:
                w["create_request"].pop("start_revision", None)
            elif r.random() < 0.3:
                w["create_request"]["start_revision"] = int(self.hint) + r.randint(1, 3)
            during = []
            for _ in range(r.randint(1, 3)):
                y = r.random()
                if y < 0.45:
                    during.append(("/v3/kv/put", self.put_req()))
                elif y < 0.65:
                    during.append(("/v3/kv/deleterange", self.delete_req()))
                elif y < 0.9:
                    during.append(("/v3/kv/txn", self.txn_req()))
                else:  # its keys go in one revision
                    during.append(("/v3/lease/revoke", {"ID": r.choice(LEASES)}))
                self.hint += 0.45
            self.add(
                "/v3/watch",
                w,
                stream=True,
                during=[(p, json.dumps(b, separators=(",", ":"))) for p, b in during],
            )

    def sequence(self, n: int) -> list[dict]:
        for _ in range(n):
            self.step()
        for lid in LEASES:  # nothing may expire during a later sequence
            self.add("/v3/lease/revoke", {"ID": lid}, writes=0.2)
        return self.ops


def sequences(base: str, count: int, length: int) -> list[list[dict]]:
    hint, pinned, compacted, out = 1.0, False, set(), []
    for i in range(count):
        g = Gen(f"{base}:{i}", hint, pinned, compacted)
        out.append(g.sequence(length))
        hint, pinned = g.hint, g.pinned
    return out


# --- running ------------------------------------------------------------------------------------


def _exchange(urls: tuple[str, str], op: dict, names: dict[str, str]) -> list[dict]:
    """The normalised replies to one op (sent to the leader, or to a follower): the op's own,
    then those of the writes made while its stream was open."""
    to_follower = op.get("to") == "follower"
    url = urls[1] if to_follower else urls[0]
    case = {**op, "method": "POST"}
    if to_follower:
        # what the leader just applied reaches the follower a moment later (in etcd too), and
        # a lease answer there carries the follower's own revision
        time.sleep(FOLLOWER_SETTLE)
    if not op.get("stream"):
        reply = rawhttp.request(url, op["path"], op["body"], timeout=15)
        if to_follower:
            # and the other way round: a follower answers a write once *it* has applied it
            time.sleep(FOLLOWER_SETTLE)
        return [X.normalize(reply, case, names)]
    case["stream_for"] = 10.0
    side: list[rawhttp.Reply] = []

    def write() -> None:
        for path, body in op.get("during", ()):
            side.append(rawhttp.request(url, path, body, timeout=15))

    reply = rawhttp.request(
        url,
        op["path"],
        op["body"],
        stream_for=10.0,
        idle=STREAM_IDLE,
        on_quiet=write if op.get("during") else None,
        timeout=15,
    )
    out = [X.normalize(reply, case, names)]
    for (path, body), rep in zip(op.get("during", ()), side, strict=False):
        c = {"path": path, "body": body, "method": "POST"}
        out.append(X.normalize(rep, c, names))
    return out


def run_sequences(seqs: list[list[dict]]) -> Callable[[Cluster], dict[str, Any]]:
    def run(c: Cluster) -> dict[str, Any]:
        leader = c.leader_url()
        urls = (leader, next(u for u in c.client_urls if u != leader))
        names = _url_names(c)
        return {op["name"]: _exchange(urls, op, names) for seq in seqs for op in seq}

    return run


def first_difference(
    seqs: list[list[dict]], etcd: dict[str, Any], raftkv: dict[str, Any], base: str = BASE
) -> str | None:
    for seq in seqs:
        for i, op in enumerate(seq):
            e, k = etcd[op["name"]], raftkv[op["name"]]
            if e == k:
                continue
            lines = [f"first difference at {op['name']} (base {base!r}):"]
            for prev in seq[max(0, i - 6) : i]:
                lines.append(f"  before: {_describe(prev)}")
            lines.append(f"  op:     {_describe(op)}")
            for n, (a, b) in enumerate(zip(e, k, strict=False)):
                for f in a:
                    if a[f] != b.get(f):
                        lines.append(f"  reply {n} {f}:\n    etcd:   {a[f]}\n    raftkv: {b[f]}")
            return "\n".join(lines)
    return None


def _describe(op: dict) -> str:
    to = " (to a follower)" if op.get("to") else ""
    return f"{op['path']}{to} {op['body']} {op.get('during', '')}"


def _base() -> str:
    if BASE == "random":
        return str(random.SystemRandom().randrange(10**9))
    return BASE


def test_random_sequences_answer_like_etcd() -> None:
    base = _base()
    seqs = sequences(base, SEEDS, OPS)
    got = _both(run_sequences(seqs))
    etcd, raftkv = _side(got, "etcd"), _side(got, "raftkv")
    diff = first_difference(seqs, etcd, raftkv, base)
    n = sum(len(s) for s in seqs)
    assert diff is None, f"RAFTKV_FUZZ_BASE={base} RAFTKV_FUZZ_SEEDS={SEEDS} ({n} ops)\n{diff}"


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--print":
        b, i = sys.argv[2].rsplit(":", 1)
        for op in sequences(b, int(i) + 1, OPS)[-1]:
            sys.stdout.write(f"{op['name']} {_describe(op)}\n")
