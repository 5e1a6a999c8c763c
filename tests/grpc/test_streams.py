"""gRPC streams and interceptors, raftkv against etcd 3.4: the same conversation with both.

A Python gRPC client (the generated classes) drives the Watch stream (create/events/progress/
cancel, duplicate ids, an empty range, a compacted start, ``fragment`` over the request limit),
LeaseKeepAlive (one answer per request, TTL 0 for an unknown lease), Snapshot (chunks, then the
sha256 of them), unary errors (codes and exact messages), the Health service, and ``hasleader``:
once two of three members are killed, the remaining one refuses new hasleader calls with
Unavailable "etcdserver: no leader" and ends the open hasleader watch with it. The transcripts
(headers' ids and terms masked) must be equal.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import queue
import time
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from raftkv.api.grpcpb import health_pb2, rpc_pb2
from tests.api.clusters import Cluster, etcd_binaries, raftkv_available, start_etcd, start_raftkv

pytestmark = pytest.mark.timeout(240)

HASLEADER = (("hasleader", "true"),)


def _show(m: Any) -> dict:
    d = json_format.MessageToDict(m, preserving_proto_field_name=True)
    h = d.get("header")
    if h:
        for k in ("cluster_id", "member_id", "raft_term"):
            h.pop(k, None)
    return d


class Client:
    def __init__(self, url: str) -> None:
        self.ch = grpc.insecure_channel(url.removeprefix("http://"))

    def unary(self, service: str, method: str, req: Any, resp_cls: Any, **kw: Any) -> Any:
        f = self.ch.unary_unary(
            f"/etcdserverpb.{service}/{method}",
            request_serializer=type(req).SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        try:
            return _show(f(req, timeout=10, **kw))
        except grpc.RpcError as e:
            return {"code": e.code().name, "details": e.details()}

    def put(self, key: bytes, value: bytes, **kw: Any) -> Any:
        return self.unary(
            "KV", "Put", rpc_pb2.PutRequest(key=key, value=value), rpc_pb2.PutResponse, **kw
        )

    def stream(self, service: str, method: str, req_cls: Any, resp_cls: Any, **kw: Any) -> Stream:
        return Stream(
            self.ch.stream_stream(
                f"/etcdserverpb.{service}/{method}",
                request_serializer=req_cls.SerializeToString,
                response_deserializer=resp_cls.FromString,
            ),
            **kw,
        )

    def close(self) -> None:
        self.ch.close()


class Stream:
    def __init__(self, method: Any, **kw: Any) -> None:
        self.q: queue.Queue = queue.Queue()
        self.call = method(iter(self.q.get, None), timeout=30, **kw)

    def send(self, m: Any) -> None:
        self.q.put(m)

    def recv(self, n: int = 1) -> list[dict]:
        return [_show(next(self.call)) for _ in range(n)]

    def end(self) -> dict:
        """The status the server ended the stream with."""
        try:
            for _ in self.call:
                pass
        except grpc.RpcError as e:
            return {"code": e.code().name, "details": e.details()}
        return {"code": "OK"}

    def close(self) -> None:
        self.q.put(None)
        self.call.cancel()


def _watch(c: Client, **kw: Any) -> Stream:
    return c.stream("Watch", "Watch", rpc_pb2.WatchRequest, rpc_pb2.WatchResponse, **kw)


def _create(**kw: Any) -> rpc_pb2.WatchRequest:
    return rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(**kw))


def conversation(cl: Cluster) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    leader = cl.leader_url()
    c = Client(leader)
    try:
        out.append(("put", c.put(b"a", b"1")))
        c.put(b"a", b"2")
        c.put(b"b", b"x")
        w = _watch(c)
        w.send(_create(key=b"a", start_revision=1, prev_kv=True))
        out.append(("created+history", w.recv(2)))
        w.send(rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest()))
        out.append(("progress", w.recv()))
        w.send(_create(key=b"a", range_end=b"c", watch_id=7))
        w.send(_create(key=b"z", watch_id=7))
        w.send(_create(key=b"b", range_end=b"a"))
        out.append(("explicit id, duplicate, empty range", w.recv(3)))
        c.put(b"b", b"y")
        out.append(("event", w.recv()))
        w.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)))
        out.append(("cancel", w.recv()))
        w.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=99)))
        w.send(_create(key=b"a", watch_id=8))  # nothing answers the unknown cancel
        out.append(("after unknown cancel", w.recv()))
        w.close()

        out.append(
            (
                "compact",
                c.unary(
                    "KV",
                    "Compact",
                    rpc_pb2.CompactionRequest(revision=3),
                    rpc_pb2.CompactionResponse,
                ),
            )
        )
        w = _watch(c)
        w.send(_create(key=b"a", start_revision=2))
        out.append(("compacted watch", w.recv(2)))
        w.close()

        # five 500 kB values in one catch-up response: over etcd's watch limit (2 MiB:
        # --max-request-bytes + 512 KiB)
        big = [c.put(b"f%d" % i, bytes([65 + i]) * 500_000) for i in range(5)]
        start = int(big[0]["header"]["revision"])
        w = _watch(c)
        w.send(_create(key=b"f", range_end=b"g", start_revision=start, fragment=True))
        got = [w.recv()[0]]
        while len(got) < 8 and sum(len(r.get("events", [])) for r in got) < 5:
            got += w.recv()
        out.append(
            ("fragments", [(r.get("fragment", False), len(r.get("events", []))) for r in got])
        )
        w.close()

        # a 2.5 MB unary answer: far over the client's initial flow-control windows
        rng = c.ch.unary_unary(
            "/etcdserverpb.KV/Range",
            request_serializer=rpc_pb2.RangeRequest.SerializeToString,
            response_deserializer=rpc_pb2.RangeResponse.FromString,
        )(rpc_pb2.RangeRequest(key=b"f", range_end=b"g"), timeout=30)
        values = b"".join(kv.value for kv in rng.kvs)
        out.append(("big range", (rng.count, len(values), hashlib.sha256(values).hexdigest())))

        ka = c.stream(
            "Lease", "LeaseKeepAlive", rpc_pb2.LeaseKeepAliveRequest, rpc_pb2.LeaseKeepAliveResponse
        )
        g = c.unary(
            "Lease",
            "LeaseGrant",
            rpc_pb2.LeaseGrantRequest(TTL=60, ID=77),
            rpc_pb2.LeaseGrantResponse,
        )
        out.append(("grant", g))
        for lid in (77, 12345, 77):
            ka.send(rpc_pb2.LeaseKeepAliveRequest(ID=lid))
            out.append((f"keepalive {lid}", ka.recv()))
        ka.close()

        out.append(
            (
                "range compacted",
                c.unary(
                    "KV", "Range", rpc_pb2.RangeRequest(key=b"a", revision=2), rpc_pb2.RangeResponse
                ),
            )
        )
        out.append(
            (
                "range future",
                c.unary(
                    "KV",
                    "Range",
                    rpc_pb2.RangeRequest(key=b"a", revision=999),
                    rpc_pb2.RangeResponse,
                ),
            )
        )
        out.append(("empty key", c.put(b"", b"v")))
        out.append(
            (
                "revoke unknown",
                c.unary(
                    "Lease",
                    "LeaseRevoke",
                    rpc_pb2.LeaseRevokeRequest(ID=5),
                    rpc_pb2.LeaseRevokeResponse,
                ),
            )
        )
        out.append(("too large", c.put(b"k", b"v" * 1_600_000)))
        out.append(("over the receive limit", c.put(b"k", b"v" * 2_200_000)))
        dup = rpc_pb2.TxnRequest(
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"d")) for _ in range(2)]
        )
        out.append(("txn duplicate key", c.unary("KV", "Txn", dup, rpc_pb2.TxnResponse)))
        out.append(("hasleader put", c.put(b"h", b"1", metadata=HASLEADER)))

        hc = c.ch.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        out.append(("health", _show(hc(health_pb2.HealthCheckRequest()))))
        try:
            hc(health_pb2.HealthCheckRequest(service="nope"))
        except grpc.RpcError as e:
            out.append(("health unknown", (e.code().name, e.details())))

        snap = c.ch.unary_stream(
            "/etcdserverpb.Maintenance/Snapshot",
            request_serializer=rpc_pb2.SnapshotRequest.SerializeToString,
            response_deserializer=rpc_pb2.SnapshotResponse.FromString,
        )
        parts = list(snap(rpc_pb2.SnapshotRequest(), timeout=30))
        data = b"".join(p.blob for p in parts[:-1])
        out.append(("snapshot sha256", hashlib.sha256(data).digest() == parts[-1].blob))
        out.append(("snapshot remaining", [p.remaining_bytes == 0 for p in parts][-2:]))
    finally:
        c.close()

    # hasleader: the last member standing
    follower = next(u for u in cl.client_urls if u != leader)
    f = Client(follower)
    try:
        w = _watch(f, metadata=HASLEADER)
        w.send(_create(key=b"a"))
        out.append(("hasleader watch", w.recv()))
        for i, u in enumerate(cl.client_urls):
            if u != follower:
                cl.procs[i].kill()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = f.put(b"h", b"2", metadata=HASLEADER)
            if r.get("details") == "etcdserver: no leader":
                break
            time.sleep(0.2)
        out.append(("no leader put", r))
        w2 = _watch(f, metadata=HASLEADER)
        w2.send(_create(key=b"a"))
        out.append(("no leader new watch", w2.end()))
        out.append(("no leader open watch", w.end()))
        w.close()
        w2.close()
    finally:
        f.close()
    return out


def _side(kind: str, etcd: str) -> Any:
    if kind == "raftkv":
        why = raftkv_available()
        if why is not None:
            return why
        c = start_raftkv()
    else:
        c = start_etcd(etcd)
    try:
        return conversation(c)
    except Exception as e:
        return [("conversation failed", repr(e))]
    finally:
        c.stop()


@pytest.fixture(scope="module")
def transcripts() -> dict[str, Any]:
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcd")
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        futs = {k: ex.submit(_side, k, bins[0]) for k in ("etcd", "raftkv")}
        got = {k: f.result() for k, f in futs.items()}
    for v in got.values():
        if isinstance(v, str):
            pytest.skip(v)
    return got


def test_grpc_streams_and_errors_as_etcd(transcripts: dict[str, Any]) -> None:
    etcd, raftkv = dict(transcripts["etcd"]), dict(transcripts["raftkv"])
    keys = list(dict.fromkeys([*etcd, *raftkv]))
    diffs = [k for k in keys if etcd.get(k) != raftkv.get(k)]
    assert not diffs, "\n".join(
        f"{k}:\n  etcd:   {etcd.get(k)!r}\n  raftkv: {raftkv.get(k)!r}" for k in diffs
    )


def test_fragments_reassemble(transcripts: dict[str, Any]) -> None:
    frags = dict(transcripts["raftkv"])["fragments"][1:]  # after the created response
    assert len(frags) > 1 and [f for f, _ in frags] == [True] * (len(frags) - 1) + [False]
    assert sum(n for _, n in frags) == 5
