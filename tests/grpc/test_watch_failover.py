"""kill -9 of the member an etcdctl watch is connected to, while it is the leader: clientv3
reconnects to another member and resumes from the next revision; no event is lost or repeated.

etcdctl 3.4 watches ``--prefix k/`` through all three endpoints; the member its watch stream
went to (the one whose watcher gauge is up) is made the leader (MoveLeader), writes go on
through the other members, and that member is killed. Every acknowledged write's revision must
appear exactly once, in order, in what etcdctl printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time

import grpc
import pytest

from raftkv.api.grpcpb import rpc_pb2
from tests.api import rawhttp
from tests.api.clusters import Cluster, etcd_binaries, raftkv_available, start_raftkv

pytestmark = pytest.mark.timeout(180)


def _watchers(url: str) -> int:
    """etcd_debugging_mvcc_watcher_total of the member at ``url``."""
    body = rawhttp.request(url, "/metrics", b"", method="GET").body.decode()
    m = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", body, re.M)
    return int(float(m.group(1))) if m else 0


class Writer:
    def __init__(self, urls: list[str]) -> None:
        self.channels = [grpc.insecure_channel(u.removeprefix("http://")) for u in urls]
        self.acked: list[int] = []

    def put(self, i: int) -> None:
        req = rpc_pb2.PutRequest(key=b"k/%d" % i, value=b"%d" % i)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for ch in self.channels:
                f = ch.unary_unary(
                    "/etcdserverpb.KV/Put",
                    request_serializer=rpc_pb2.PutRequest.SerializeToString,
                    response_deserializer=rpc_pb2.PutResponse.FromString,
                )
                try:
                    self.acked.append(f(req, timeout=3).header.revision)
                    return
                except grpc.RpcError:
                    continue
            time.sleep(0.2)
        raise AssertionError(f"put {i} never succeeded")

    def close(self) -> None:
        for ch in self.channels:
            ch.close()


def _ids_by_url(c: Cluster, w: Writer) -> dict[str, int]:
    f = w.channels[0].unary_unary(
        "/etcdserverpb.Cluster/MemberList",
        request_serializer=rpc_pb2.MemberListRequest.SerializeToString,
        response_deserializer=rpc_pb2.MemberListResponse.FromString,
    )
    members = f(rpc_pb2.MemberListRequest(), timeout=5).members
    return {m.clientURLs[0]: m.ID for m in members}


def _move_leader(c: Cluster, target: int) -> None:
    leader = c.leader_url()
    ch = grpc.insecure_channel(leader.removeprefix("http://"))
    try:
        ch.unary_unary(
            "/etcdserverpb.Maintenance/MoveLeader",
            request_serializer=rpc_pb2.MoveLeaderRequest.SerializeToString,
            response_deserializer=rpc_pb2.MoveLeaderResponse.FromString,
        )(rpc_pb2.MoveLeaderRequest(targetID=target), timeout=10)
    finally:
        ch.close()


def test_watch_survives_killing_its_member_while_leader() -> None:
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcdctl")
    why = raftkv_available()
    if why is not None:
        pytest.skip(why)
    c = start_raftkv()
    watch = None
    w = Writer(c.client_urls)
    try:
        watch = subprocess.Popen(
            [bins[1], f"--endpoints={','.join(c.client_urls)}", "watch", "--prefix", "k/",
             "-w", "json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "ETCDCTL_API": "3"},
        )  # fmt: skip
        lines: list[dict] = []

        def read() -> None:
            assert watch is not None and watch.stdout is not None
            for line in watch.stdout:
                lines.append(json.loads(line))

        threading.Thread(target=read, daemon=True).start()
        # clientv3 connects to every endpoint; the watch stream went to one of them
        deadline = time.monotonic() + 20
        while not (watched := [u for u in c.client_urls if _watchers(u) > 0]):
            assert time.monotonic() < deadline, "the watch never reached a member"
            time.sleep(0.05)
        assert len(watched) == 1, watched
        for i in range(10):
            w.put(i)
        ids = _ids_by_url(c, w)
        _move_leader(c, ids[watched[0]])
        assert c.leader_url() == watched[0]

        for i in range(10, 20):
            w.put(i)
        c.procs[c.client_urls.index(watched[0])].kill()
        w.channels = [
            ch for ch, u in zip(w.channels, c.client_urls, strict=True) if u != watched[0]
        ]
        for i in range(20, 40):
            w.put(i)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            seen = [ev["kv"]["mod_revision"] for r in lines for ev in (r.get("Events") or [])]
            if len(seen) >= len(w.acked) and seen[-1:] == w.acked[-1:]:
                break
            time.sleep(0.1)
        assert seen == sorted(set(seen)), "an event was repeated or out of order"
        assert set(w.acked) <= set(seen), f"lost: {sorted(set(w.acked) - set(seen))}"
        assert seen == list(range(seen[0], seen[-1] + 1)), "a revision is missing"
    finally:
        if watch is not None:
            watch.kill()
            watch.wait(timeout=10)
        w.close()
        c.stop()
