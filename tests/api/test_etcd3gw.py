"""The real PyPI client etcd3gw against raftkv (and, to keep the test honest, against a real
etcd 3.4 too): put, get, prefix, delete, lease, watch, transaction, lock, status, members."""

from __future__ import annotations

import threading
import time
import uuid

import etcd3gw
import pytest

from tests.api.clusters import etcd_binaries, raftkv_available, start_etcd, start_raftkv


@pytest.fixture(scope="module", params=["etcd", "raftkv"])
def endpoint(request):
    if request.param == "etcd":
        bins = etcd_binaries()
        if bins is None:
            pytest.skip("scripts/install-etcd.sh could not provide etcd")
        c = start_etcd(bins[0], members=1)
    else:
        why = raftkv_available()
        if why is not None:
            pytest.skip(f"raftkv side not runnable: {why}")
        c = start_raftkv()
    try:
        host, port = c.leader_url().split("//")[1].split(":")
        yield host, int(port)
    finally:
        c.stop()


@pytest.fixture
def client(endpoint):
    host, port = endpoint
    return etcd3gw.client(host=host, port=port, timeout=10)


def _p() -> str:
    return f"/t-{uuid.uuid4().hex[:8]}/"


def test_put_get_delete(client) -> None:
    p = _p()
    assert client.put(p + "a", "1") is True
    assert client.get(p + "a") == [b"1"]
    assert client.get(p + "missing") == []
    assert client.delete(p + "a") is True
    assert client.delete(p + "a") is False
    assert client.get(p + "a") == []


def test_prefix_and_metadata(client) -> None:
    p = _p()
    for k in ("a", "b", "c"):
        client.put(p + k, k.upper())
    got = client.get_prefix(p)
    assert sorted(v for v, _ in got) == [b"A", b"B", b"C"]
    meta = dict((m["key"], v) for v, m in got)
    assert meta[(p + "b").encode()] == b"B"
    assert client.get_prefix(p, sort_order="descend", sort_target="key")[0][0] == b"C"
    assert client.delete_prefix(p) is True
    assert client.get_prefix(p) == []


def test_create_and_replace(client) -> None:
    p = _p()
    assert client.create(p + "k", "v1") is True
    assert client.create(p + "k", "v2") is False
    assert client.replace(p + "k", "v1", "v3") is True
    assert client.replace(p + "k", "v1", "v4") is False
    assert client.get(p + "k") == [b"v3"]


def test_lease(client) -> None:
    p = _p()
    lease = client.lease(ttl=30)
    assert lease.id > 0
    client.put(p + "l", "v", lease=lease)
    assert 0 < lease.ttl() <= 30
    assert lease.refresh() == 30
    assert list(lease.keys()) == [(p + "l").encode()]
    assert lease.revoke() is True
    assert client.get(p + "l") == []


def test_transaction(client) -> None:
    p = _p()
    client.put(p + "t", "x")
    import base64

    def b(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    txn = {
        "compare": [{"key": b(p + "t"), "result": "EQUAL", "target": "VALUE", "value": b("x")}],
        "success": [{"request_put": {"key": b(p + "t"), "value": b("y")}}],
        "failure": [],
    }
    resp = client.transaction(txn)
    assert resp["succeeded"] is True
    assert client.get(p + "t") == [b"y"]
    resp = client.transaction(txn)
    assert "succeeded" not in resp


def test_watch(client) -> None:
    p = _p()
    events, cancel = client.watch_prefix(p)
    got = []

    def reader() -> None:
        for ev in events:
            got.append(ev)
            if len(got) == 3:
                break

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    time.sleep(0.5)
    client.put(p + "1", "a")
    client.put(p + "2", "b")
    client.delete(p + "1")
    t.join(10)
    cancel()
    assert [e.get("type", "PUT") for e in got] == ["PUT", "PUT", "DELETE"]
    assert got[1]["kv"]["value"] == b"b"


def test_watch_once(client) -> None:
    p = _p()

    def later() -> None:
        time.sleep(0.5)
        client.put(p + "once", "v")

    threading.Thread(target=later, daemon=True).start()
    ev = client.watch_once(p + "once", timeout=10)
    assert ev["kv"]["value"] == b"v"


def test_lock(client) -> None:
    name = uuid.uuid4().hex[:8]
    lock = client.lock(name, ttl=30)
    assert lock.acquire() is True
    assert lock.is_acquired() is True
    other = client.lock(name, ttl=30)
    assert other.is_acquired() is False
    assert lock.release() is True
    assert lock.is_acquired() is False
    with client.lock(name, ttl=30) as again:
        assert again.is_acquired()


def test_status_and_members(client) -> None:
    st = client.status()
    assert st["version"].startswith("3.4")
    assert int(st["leader"]) > 0
    members = client.members()
    assert members and all(m["clientURLs"] for m in members)


def test_get_all_and_watch_prefix_once(client) -> None:
    p = _p()
    client.put(p + "x", "1")
    assert (p + "x").encode() in [m["key"] for _, m in client.get_all()]

    def later() -> None:
        time.sleep(0.5)
        client.put(p + "y", "2")

    threading.Thread(target=later, daemon=True).start()
    ev = client.watch_prefix_once(p, timeout=10)
    assert ev["kv"]["key"] == (p + "y").encode()


def test_watch_from_revision_replays_history(client) -> None:
    p = _p()
    client.put(p + "h", "1")
    rev = int(client.get(p + "h", metadata=True)[0][1]["mod_revision"])
    client.put(p + "h", "2")
    events, cancel = client.watch(p + "h", start_revision=rev)
    try:
        got = [next(events)["kv"]["value"], next(events)["kv"]["value"]]
    finally:
        cancel()
    assert got == [b"1", b"2"]
