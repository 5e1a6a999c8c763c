"""Differential tests: the same request sequence to a real etcd 3.4 and to raftkv.

Both sides are fresh **3-member** clusters on loopback (etcd from scripts/install-etcd.sh,
raftkv as ``python -m raftkv`` with etcd's flags): three members because that is the shape
users run and the one GATEWAY.md was observed on, and because member lists, forwarding and
header fields must match for a real cluster, not a degenerate one. Every request goes to the
leader of each cluster, so revision sequences line up. Replies are compared on status, content
type, chunked framing, trailers, CORS, and body (JSON key order included) after cluster_id /
member_id / raft_term are removed from headers and cluster-specific values (status sizes,
hashes, member IDs and URLs, a ticking lease TTL) are masked.

``python -m tests.api.test_differential --record`` re-records etcd's normalised replies into
golden/etcd_replies.json, which the API's unit tests (tests/api/test_gateway.py) replay.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.api import cases as C
from tests.api import exchange as X
from tests.api.clusters import Cluster, etcd_binaries, raftkv_available, start_etcd, start_raftkv

GOLDEN = Path(__file__).parent / "golden" / "etcd_replies.json"

# Where raftkv deliberately differs from etcd 3.4 (GATEWAY.md: the 3.4 gateway's defects).
DELIBERATE = {"hashkv"}


def _url_names(c: Cluster) -> dict[str, str]:
    m = {u: f"client:{n}" for u, n in zip(c.client_urls, c.names, strict=True)}
    m.update({u: f"peer:{n}" for u, n in zip(c.peer_urls, c.names, strict=True)})
    return m


def run_cases(c: Cluster) -> dict[str, dict]:
    leader = c.leader_url()
    follower = next((u for u in c.client_urls if u != leader), leader)
    names = _url_names(c)
    out = {}
    for raw in C.CASES:
        case = X.as_dict(raw)
        url = follower if case.get("to") == "follower" else leader
        out[case["name"]] = X.normalize(X.send(url, case), case, names)
    return out


def _both(run: Callable[[Cluster], dict[str, dict]], extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """Run ``run`` against a fresh etcd and a fresh raftkv cluster at the same time (the cases
    mostly wait on streams, so the two sides overlap well), both started with the flags
    ``extra``; a side that cannot start gives the reason to skip instead of replies."""
    import concurrent.futures

    def etcd_side() -> dict[str, dict] | str:
        bins = etcd_binaries()
        if bins is None:
            return "scripts/install-etcd.sh could not provide etcd"
        c = start_etcd(bins[0], extra=extra)
        try:
            return run(c)
        finally:
            c.stop()

    def raftkv_side() -> dict[str, dict] | str:
        why = raftkv_available()
        if why is not None:
            return f"raftkv side not runnable: {why}"
        c = start_raftkv(extra=extra)
        try:
            return run(c)
        finally:
            c.stop()

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        e, r = ex.submit(etcd_side), ex.submit(raftkv_side)
        return {"etcd": e.result(), "raftkv": r.result()}


def _side(got: dict[str, Any], side: str) -> dict[str, dict]:
    if isinstance(got[side], str):
        pytest.skip(got[side])
    return got[side]


@pytest.fixture(scope="module")
def sequence_replies() -> dict[str, Any]:
    return _both(run_cases)


@pytest.fixture(scope="module")
def etcd_replies(sequence_replies: dict[str, Any]) -> dict[str, dict]:
    return _side(sequence_replies, "etcd")


@pytest.fixture(scope="module")
def raftkv_replies(sequence_replies: dict[str, Any]) -> dict[str, dict]:
    return _side(sequence_replies, "raftkv")


NAMES = [X.as_dict(c)["name"] for c in C.CASES]


def test_etcd_matches_recorded_golden(etcd_replies: dict[str, dict]) -> None:
    """The recorded bytes the unit tests rely on are still what etcd answers."""
    golden = json.loads(GOLDEN.read_text())
    diffs = [n for n in NAMES if golden.get(n) != etcd_replies[n]]
    assert not diffs, f"etcd's replies changed for {diffs}; re-record with --record"


@pytest.mark.parametrize("name", NAMES)
def test_raftkv_answers_like_etcd(
    name: str, etcd_replies: dict[str, dict], raftkv_replies: dict[str, dict]
) -> None:
    if name in KNOWN_SERVER_GAPS and raftkv_replies[name] != etcd_replies[name]:
        pytest.xfail(KNOWN_SERVER_GAPS[name])
    assert raftkv_replies[name] == etcd_replies[name]


def _record() -> None:
    bins = etcd_binaries()
    assert bins is not None, "install-etcd.sh failed"
    c = start_etcd(bins[0])
    try:
        got = run_cases(c)
    finally:
        c.stop()
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    sys.stdout.write(f"recorded {len(got)} replies into {GOLDEN}\n")


if __name__ == "__main__":
    if "--record" in sys.argv:
        _record()


# --- without quorum ----------------------------------------------------------------------------

NO_QUORUM_CASES = [
    ("nq_range", "/v3/kv/range", '{"key":"YQ=="}'),
    ("nq_put", "/v3/kv/put", '{"key":"YQ==","value":"YQ=="}'),
    ("nq_txn_write", "/v3/kv/txn", '{"success":[{"request_put":{"key":"YQ=="}}]}'),
    ("nq_serializable_range", "/v3/kv/range", '{"key":"YQ==","serializable":true}'),
    ("nq_lease_grant", "/v3/lease/grant", '{"TTL":10,"ID":77}'),
    ("nq_status", "/v3/maintenance/status", "{}"),
    ("nq_member_list", "/v3/cluster/member/list", "{}"),
    {"name": "nq_health", "method": "GET", "path": "/health"},
    {"name": "nq_keepalive", "path": "/v3/lease/keepalive", "body": '{"ID":1}', "stream_for": 12},
    {
        "name": "nq_watch",
        "path": "/v3/watch",
        "body": '{"create_request":{"key":"YQ=="}}',
        "stream_for": 2,
    },
]


def run_without_quorum(c: Cluster) -> dict[str, dict]:
    """Kill the leader and one follower; ask the survivor everything at once (etcd gives up
    on a proposal or a ReadIndex after ~7 s, so the requests run concurrently)."""
    import concurrent.futures
    import time

    leader = c.leader_url()
    survivor = next(u for u in c.client_urls if u != leader)
    for u, p in zip(c.client_urls, c.procs, strict=True):
        if u != survivor:
            p.kill()
    time.sleep(0.5)
    names = _url_names(c)
    cases = [X.as_dict(x) for x in NO_QUORUM_CASES]
    with concurrent.futures.ThreadPoolExecutor(len(cases)) as ex:
        replies = list(ex.map(lambda case: X.send(survivor, case), cases))
    return {
        case["name"]: X.normalize(r, case, names) for case, r in zip(cases, replies, strict=True)
    }


@pytest.fixture(scope="module")
def no_quorum_replies() -> dict[str, Any]:
    return _both(run_without_quorum)


@pytest.fixture(scope="module")
def etcd_no_quorum(no_quorum_replies: dict[str, Any]) -> dict[str, dict]:
    return _side(no_quorum_replies, "etcd")


@pytest.fixture(scope="module")
def raftkv_no_quorum(no_quorum_replies: dict[str, Any]) -> dict[str, dict]:
    return _side(no_quorum_replies, "raftkv")


NQ_NAMES = [X.as_dict(c)["name"] for c in NO_QUORUM_CASES]


@pytest.mark.slow
@pytest.mark.parametrize("name", NQ_NAMES)
def test_raftkv_without_quorum_answers_like_etcd(
    name: str, etcd_no_quorum: dict[str, dict], raftkv_no_quorum: dict[str, dict]
) -> None:
    if name in KNOWN_SERVER_GAPS and raftkv_no_quorum[name] != etcd_no_quorum[name]:
        pytest.xfail(KNOWN_SERVER_GAPS[name])
    assert raftkv_no_quorum[name] == etcd_no_quorum[name]


# Differences that belong to raftkv/server (not the API): reported, tracked here until fixed.
KNOWN_SERVER_GAPS: dict[str, str] = {}
