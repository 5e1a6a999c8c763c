"""The differential fuzzer's gRPC side: the same seeded sequences as
tests/api/test_fuzz_differential.py, sent through etcd's gRPC API instead of the gateway, to a
fresh etcd 3.4 and a fresh raftkv (3 members each, the leader or a follower as the sequence
says); replies compared one by one (status code and message of an error, or the response as
protobuf's JSON mapping, normalised as the gateway fuzzer does).

Each op's gateway body is parsed into the generated request class (a body protobuf's JSON
parser refuses is recorded as such, on both sides alike). A watch op opens a Watch stream,
sends its requests, takes every response until the stream has been quiet for a moment, makes
the op's writes, takes the responses again, and hangs up; a keep-alive op sends its requests
on one LeaseKeepAlive stream, one answer each.

    RAFTKV_FUZZ_BASE=<base> RAFTKV_FUZZ_SEEDS=<n> pytest tests/grpc/test_fuzz_grpc.py
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from raftkv.api.grpcpb import rpc_pb2
from tests.api.clusters import Cluster
from tests.api.exchange import _norm_json_text
from tests.api.test_differential import _both, _side, _url_names
from tests.api.test_fuzz_differential import (
    BASE,
    FOLLOWER_SETTLE,
    OPS,
    SEEDS,
    STREAM_IDLE,
    _base,
    sequences,
)

pytestmark = pytest.mark.timeout(300)

# gateway path -> (gRPC method, request class, response class)
UNARY = {
    "/v3/kv/range": ("KV/Range", rpc_pb2.RangeRequest, rpc_pb2.RangeResponse),
    "/v3/kv/put": ("KV/Put", rpc_pb2.PutRequest, rpc_pb2.PutResponse),
    "/v3/kv/deleterange": (
        "KV/DeleteRange",
        rpc_pb2.DeleteRangeRequest,
        rpc_pb2.DeleteRangeResponse,
    ),
    "/v3/kv/txn": ("KV/Txn", rpc_pb2.TxnRequest, rpc_pb2.TxnResponse),
    "/v3/kv/compaction": ("KV/Compact", rpc_pb2.CompactionRequest, rpc_pb2.CompactionResponse),
    "/v3/lease/grant": ("Lease/LeaseGrant", rpc_pb2.LeaseGrantRequest, rpc_pb2.LeaseGrantResponse),
    "/v3/lease/revoke": (
        "Lease/LeaseRevoke",
        rpc_pb2.LeaseRevokeRequest,
        rpc_pb2.LeaseRevokeResponse,
    ),
    "/v3/lease/timetolive": (
        "Lease/LeaseTimeToLive",
        rpc_pb2.LeaseTimeToLiveRequest,
        rpc_pb2.LeaseTimeToLiveResponse,
    ),
    "/v3/kv/lease/revoke": (
        "Lease/LeaseRevoke",
        rpc_pb2.LeaseRevokeRequest,
        rpc_pb2.LeaseRevokeResponse,
    ),
    "/v3/kv/lease/timetolive": (
        "Lease/LeaseTimeToLive",
        rpc_pb2.LeaseTimeToLiveRequest,
        rpc_pb2.LeaseTimeToLiveResponse,
    ),
    "/v3/lease/leases": (
        "Lease/LeaseLeases",
        rpc_pb2.LeaseLeasesRequest,
        rpc_pb2.LeaseLeasesResponse,
    ),
}


class Side:
    def __init__(self, c: Cluster) -> None:
        leader = c.leader_url()
        follower = next(u for u in c.client_urls if u != leader)
        self.channels = {
            "leader": grpc.insecure_channel(leader.removeprefix("http://")),
            "follower": grpc.insecure_channel(follower.removeprefix("http://")),
        }
        self.names = _url_names(c)

    def call(self, path: str, body: str, to: str = "leader") -> Any:
        method, req_cls, resp_cls = UNARY[path]
        try:
            req = json_format.Parse(body or "{}", req_cls())
        except json_format.ParseError:
            return "not protobuf JSON"
        f = self.channels[to].unary_unary(
            f"/etcdserverpb.{method}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )
        if to == "follower":
            time.sleep(FOLLOWER_SETTLE)
        try:
            resp = f(req, timeout=15)
        except grpc.RpcError as e:
            return {"code": e.code().name, "details": e.details()}
        finally:
            if to == "follower":
                time.sleep(FOLLOWER_SETTLE)
        d = json_format.MessageToDict(resp, preserving_proto_field_name=True)
        return json.loads(_norm_json_text(json.dumps(d), path, self.names))

    def exchange(self, op: dict) -> list[Any]:
        if op["path"] in UNARY:
            return [self.call(op["path"], op["body"], op.get("to", "leader"))]
        if op["path"] == "/v3/watch":
            return self.watch(op)
        return self.keepalive(op)

    def _stream(self, method: str, req_cls: Any, resp_cls: Any, bodies: str) -> Any:
        try:
            reqs = [json_format.ParseDict(v, req_cls()) for v in _values(bodies)]
        except json_format.ParseError:
            return None, None
        q: queue.Queue = queue.Queue()
        call = self.channels["leader"].stream_stream(
            f"/etcdserverpb.{method}",
            request_serializer=req_cls.SerializeToString,
            response_deserializer=resp_cls.FromString,
        )(iter(q.get, None), timeout=30)
        for r in reqs:
            q.put(r)
        return call, q

    def watch(self, op: dict) -> list[Any]:
        call, q = self._stream(
            "Watch/Watch", rpc_pb2.WatchRequest, rpc_pb2.WatchResponse, op["body"]
        )
        if call is None:
            return ["not protobuf JSON"]
        got: queue.Queue = queue.Queue()

        def read() -> None:
            try:
                for resp in call:
                    got.put(_masked(resp))
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.CANCELLED:
                    got.put({"code": e.code().name, "details": e.details()})

        threading.Thread(target=read, daemon=True).start()
        out = _until_quiet(got)
        for p, b in op.get("during", ()):
            out.append(self.call(p, b))
        out += _until_quiet(got)
        q.put(None)
        call.cancel()
        return out

    def keepalive(self, op: dict) -> list[Any]:
        call, q = self._stream(
            "Lease/LeaseKeepAlive",
            rpc_pb2.LeaseKeepAliveRequest,
            rpc_pb2.LeaseKeepAliveResponse,
            op["body"],
        )
        if call is None:
            return ["not protobuf JSON"]
        q.put(None)
        try:
            return [_masked(r) for r in call]
        except grpc.RpcError as e:
            return [{"code": e.code().name, "details": e.details()}]

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()


def _values(text: str) -> list[Any]:
    """The JSON values of a stream op's body, one after another."""
    dec = json.JSONDecoder()
    out, pos = [], 0
    while pos < len(text.strip()):
        v, end = dec.raw_decode(text, pos)
        out.append(v)
        pos = end
    return out


def _masked(resp: Any) -> dict:
    d = json_format.MessageToDict(resp, preserving_proto_field_name=True)
    for k in ("cluster_id", "member_id", "raft_term"):
        d.get("header", {}).pop(k, None)
    return d


def _until_quiet(got: queue.Queue) -> list[Any]:
    out = []
    while True:
        try:
            out.append(got.get(timeout=STREAM_IDLE))
        except queue.Empty:
            return out


def run_sequences(seqs: list[list[dict]]) -> Callable[[Cluster], dict[str, Any]]:
    def run(c: Cluster) -> dict[str, Any]:
        side = Side(c)
        try:
            return {op["name"]: side.exchange(op) for seq in seqs for op in seq}
        finally:
            side.close()

    return run


def test_random_sequences_answer_like_etcd_over_grpc() -> None:
    base = _base()
    seqs = sequences(base, SEEDS, OPS)
    got = _both(run_sequences(seqs))
    etcd, raftkv = _side(got, "etcd"), _side(got, "raftkv")
    sent = [r for rs in raftkv.values() for r in rs if r != "not protobuf JSON"]
    assert len(sent) > len(raftkv) // 2  # most of a sequence goes through gRPC
    for seq in seqs:
        for op in seq:
            name = op["name"]
            assert raftkv[name] == etcd[name], (
                f"RAFTKV_FUZZ_BASE={base} RAFTKV_FUZZ_SEEDS={SEEDS} (default base {BASE}): "
                f"{name} {op['path']} {op.get('to', '')} {op['body']}\n"
                f"  etcd:   {etcd[name]}\n  raftkv: {raftkv[name]}"
            )
