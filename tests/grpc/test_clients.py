"""etcd's Python gRPC clients, unchanged, against a 3-member raftkv: aetcd (asyncio, in this
process, next to raftkv's own generated protos) and python-etcd3 (its bundled protos need
protobuf's pure-Python implementation: run in a subprocess with
PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python). Both do put/get/delete, txn, leases (grant,
keep-alive, time-to-live, keys, revoke deleting the keys) and watch; aetcd also compaction
errors, status and members."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

from tests.api.clusters import ROOT, Cluster, etcd_binaries, raftkv_available, start_raftkv

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    why = raftkv_available()
    if why is not None:
        pytest.skip(why)
    c = start_raftkv()
    try:
        yield c
    finally:
        c.stop()


def _host_port(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


async def test_aetcd(cluster: Cluster) -> None:
    aetcd = pytest.importorskip("aetcd")
    host, port = _host_port(cluster.client_urls[1])
    async with aetcd.Client(host, port, timeout=10) as c:
        put = await c.put(b"ae/k1", b"v1")
        assert put.header.revision > 1
        got = await c.get(b"ae/k1")
        assert got.value == b"v1" and got.version == 1
        await c.put(b"ae/k2", b"v2")
        assert [kv.key for kv in await c.get_prefix(b"ae/")] == [b"ae/k1", b"ae/k2"]

        t = c.transactions
        ok, _ = await c.transaction(
            compare=[t.value(b"ae/k1") == b"v1"],
            success=[t.put(b"ae/k1", b"v1b")],
            failure=[t.put(b"ae/k1", b"wrong")],
        )
        assert ok and (await c.get(b"ae/k1")).value == b"v1b"
        ok, responses = await c.transaction(
            compare=[t.version(b"ae/k2") > 5], success=[], failure=[t.get(b"ae/k2")]
        )
        assert not ok and responses[0][0][0] == b"v2"

        lease = await c.lease(30)
        await c.put(b"ae/leased", b"x", lease=lease)
        assert (await lease.refresh()).TTL == 30
        assert 0 < await lease.remaining_ttl() <= 30 and await lease.granted_ttl() == 30
        assert await lease.keys() == [b"ae/leased"]
        await lease.revoke()
        assert await c.get(b"ae/leased") is None

        watch = await c.watch(b"ae/w")
        await c.put(b"ae/w", b"1")
        await c.delete(b"ae/w")
        events = []
        async for ev in watch:
            events.append((ev.kind, ev.kv.key, ev.kv.value))  # a str
            if len(events) == 2:
                break
        await watch.cancel()
        assert events == [("PUT", b"ae/w", b"1"), ("DELETE", b"ae/w", b"")]

        rev = (await c.put(b"ae/c", b"1")).header.revision
        await c.compact(rev)
        old = await c.watch(b"ae/c", start_revision=rev - 1)
        with pytest.raises(aetcd.exceptions.RevisionCompactedError) as e:
            async for _ in old:
                pass
        assert e.value.compacted_revision == rev
        status = await c.status()
        assert status.version == "3.4.23" and status.leader is not None
        assert len([m async for m in c.members()]) == 3


ETCD3_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    import etcd3
    host, port = sys.argv[1], int(sys.argv[2])
    c = etcd3.client(host, port, timeout=10)
    c.put("e3/k", "v")
    value, meta = c.get("e3/k")
    assert value == b"v" and meta.version == 1, (value, meta.version)
    ok, _ = c.transaction(
        compare=[c.transactions.value("e3/k") == "v"],
        success=[c.transactions.put("e3/k", "v2")],
        failure=[],
    )
    assert ok and c.get("e3/k")[0] == b"v2"
    lease = c.lease(20)
    c.put("e3/leased", "x", lease=lease)
    assert list(lease.refresh())[0].TTL == 20
    assert lease.keys == [b"e3/leased"] and 0 < lease.remaining_ttl <= 20
    lease.revoke()
    assert c.get("e3/leased")[0] is None
    events, cancel = c.watch("e3/w")
    threading.Timer(0.5, lambda: c.put("e3/w", "1")).start()
    for ev in events:
        assert (type(ev).__name__, ev.key, ev.value) == ("PutEvent", b"e3/w", b"1"), ev
        break
    cancel()
    c.delete("e3/k")
    assert c.get("e3/k")[0] is None
    print("ok")
    """
)


def test_python_etcd3(cluster: Cluster) -> None:
    if importlib.util.find_spec("etcd3") is None:  # (importing it here would need pure protobuf)
        pytest.skip("python-etcd3 is not installed")
    host, port = _host_port(cluster.client_urls[2])
    env = {**os.environ, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    p = subprocess.run(
        [sys.executable, "-c", ETCD3_SCRIPT, host, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=ROOT,
    )
    assert (p.returncode, p.stdout.strip()) == (0, "ok"), p.stderr


def test_aetcd_and_raftkv_protos_share_a_process() -> None:
    """Both register etcd's messages in protobuf's default pool, under different packages."""
    pytest.importorskip("aetcd")
    from aetcd.rpc import rpc_pb2 as theirs

    from raftkv.api.grpcpb import rpc_pb2 as ours

    assert theirs.DESCRIPTOR.package == "etcdserverpb"
    assert ours.DESCRIPTOR.package == "raftkv.etcdserverpb"


@pytest.mark.slow
def test_etcdctl_check_perf_completes(cluster: Cluster) -> None:
    """``etcdctl check perf --load=s``: a minute of writes from 50 clients through gRPC, then
    its verdict (whether the machine meets etcd's latency bars is not this test's business)."""
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcdctl")
    p = subprocess.run(
        [bins[1], f"--endpoints={','.join(cluster.client_urls)}", "check", "perf", "--load=s"],
        capture_output=True,
        text=True,
        timeout=150,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    assert "60 / 60  100.00%" in p.stdout, p.stdout[-2000:] + p.stderr[-2000:]
    verdicts = [
        line.split(":")[0] for line in p.stdout.splitlines() if line[:5] in ("PASS:", "FAIL:")
    ]
    assert len(verdicts) == 3, p.stdout[-2000:]
    assert p.returncode == (0 if set(verdicts) == {"PASS"} else 1)
