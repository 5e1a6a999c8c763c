"""gRPC streams and interceptors, raftkv against etcd 3.4: the same conversation with both.

A Python gRPC client (the generated classes) drives the Watch stream (create/events/progress/
cancel, duplicate ids, an empty range, a compacted start, ``fragment`` over the request limit),
LeaseKeepAlive (one answer per request, TTL 0 for an unknown lease), Snapshot (chunks, then the
sha256 of them), unary errors (codes and exact messages), the Health service, the keepalive
policy (a client pinging every 100 ms gets GOAWAY too_many_pings), and ``hasleader``:
once two of three members are killed, the remaining one refuses new hasleader calls with
Unavailable "etcdserver: no leader" and ends the open hasleader watch with it. The transcripts
(headers' ids and terms masked) must be equal.
"""

from __future__ import annotations

import hashlib
import queue
import time
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from raftkv.api.grpcpb import health_pb2, rpc_pb2
from tests.api.clusters import Cluster, etcd_binaries
from tests.grpc.sides import Steps, assert_same, on_both

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


def conversation(cl: Cluster, out: Steps) -> None:
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

        # the NOSPACE alarm: raised on the leader, writes refused, then disarmed
        status = c.unary("Maintenance", "Status", rpc_pb2.StatusRequest(), rpc_pb2.StatusResponse)
        me = int(status["leader"])
        for action in (1, 0, 2):  # ACTIVATE, GET, DEACTIVATE
            alarm = rpc_pb2.AlarmRequest(action=action, memberID=me, alarm=1)
            got = c.unary("Maintenance", "Alarm", alarm, rpc_pb2.AlarmResponse)
            for a in got.get("alarms", []):
                a["memberID"] = "<leader>" if int(a["memberID"]) == me else a["memberID"]
            out.append((f"alarm {action}", got))
            if action == 1:
                out.append(("put under NOSPACE", c.put(b"n", b"1")))
        out.append(("put after disarm", c.put(b"n", b"1")))

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

    # keepalive enforcement: a client pinging every 100 ms on an idle watch gets GOAWAY
    options = [
        ("grpc.keepalive_time_ms", 100),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]
    with grpc.insecure_channel(leader.removeprefix("http://"), options=options) as ch:
        watch = ch.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=rpc_pb2.WatchRequest.SerializeToString,
            response_deserializer=rpc_pb2.WatchResponse.FromString,
        )
        stream = watch(iter([_create(key=b"pinged")]), timeout=30)
        out.append(("pinged watch", _show(next(stream))))
        try:
            out.append(("pinged watch ends", _show(next(stream))))
        except grpc.RpcError as e:
            out.append(("pinged watch ends", (e.code().name, e.details())))

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


@pytest.fixture(scope="module")
def transcripts() -> dict[str, Steps]:
    if etcd_binaries() is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcd")
    return on_both(conversation)


def test_grpc_streams_and_errors_as_etcd(transcripts: dict[str, Steps]) -> None:
    assert_same(transcripts)


def test_fragments_reassemble(transcripts: dict[str, Steps]) -> None:
    frags = dict(transcripts["raftkv"])["fragments"][1:]  # after the created response
    assert len(frags) > 1 and [f for f, _ in frags] == [True] * (len(frags) - 1) + [False]
    assert sum(n for _, n in frags) == 5
