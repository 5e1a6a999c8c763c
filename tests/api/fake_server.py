"""A small in-memory stand-in for ``EtcdServer``: enough of etcd's behaviour to test the API's
codec, routing, streams and error shapes without a cluster. Not a model of MVCC."""

from __future__ import annotations

from collections.abc import Callable

from raftkv import errors
from raftkv.pb import kv, rpc

CLUSTER_ID = 15118495548433857066
MEMBER_ID = 13668033151171901709


class FakeWatchStream:
    def __init__(self, server: FakeServer, on_ready: Callable[[], None]) -> None:
        self.server = server
        self.on_ready = on_ready
        self.watchers: dict[int, rpc.WatchCreateRequest] = {}
        self.pending: list[rpc.WatchResponse] = []
        self.next_id = 0
        self.closed = False
        server.streams.append(self)

    def _push(self, r: rpc.WatchResponse) -> None:
        self.pending.append(r)
        self.on_ready()

    def create(self, req: rpc.WatchCreateRequest) -> int:
        wid = req.watch_id or self.next_id
        self.next_id = max(self.next_id, wid) + 1
        self.watchers[wid] = req
        self._push(rpc.WatchResponse(header=self.server.header(), watch_id=wid, created=True))
        return wid

    def cancel(self, wid: int) -> bool:
        if self.watchers.pop(wid, None) is None:
            return False
        self._push(rpc.WatchResponse(header=self.server.header(), watch_id=wid, canceled=True))
        return True

    def request_progress(self) -> None:
        self._push(rpc.WatchResponse(header=self.server.header(), watch_id=-1))

    def notify(self, ev: kv.Event) -> None:
        for wid, w in self.watchers.items():
            k = ev.kv.key
            if k == w.key or (w.range_end and w.key <= k < w.range_end):
                self._push(
                    rpc.WatchResponse(header=self.server.header(), watch_id=wid, events=[ev])
                )

    def drain(self) -> list[rpc.WatchResponse]:
        out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        self.closed = True
        self.server.streams.remove(self)


class FakeServer:
    member_id = MEMBER_ID
    cluster_id = CLUSTER_ID
    max_request_bytes = 1536 * 1024
    max_txn_ops = 128
    election_timeout = 1.0

    def __init__(self) -> None:
        self.rev = 1
        self.data: dict[bytes, kv.KeyValue] = {}
        self.leases: dict[int, int] = {}
        self.streams: list[FakeWatchStream] = []
        self.healthy = True

    def header(self, rev: int | None = None) -> rpc.ResponseHeader:
        return rpc.ResponseHeader(
            cluster_id=CLUSTER_ID,
            member_id=MEMBER_ID,
            revision=self.rev if rev is None else rev,
            raft_term=2,
        )

    def _select(self, key: bytes, end: bytes) -> list[kv.KeyValue]:
        if not end:
            return [self.data[key]] if key in self.data else []
        return [v for k, v in sorted(self.data.items()) if k >= key and (end == b"\x00" or k < end)]

    async def range(self, req: rpc.RangeRequest) -> rpc.RangeResponse:
        if req.revision > self.rev:
            raise errors.ErrFutureRev
        kvs = self._select(req.key, req.range_end)
        n = len(kvs)
        if req.limit:
            kvs = kvs[: req.limit]
        return rpc.RangeResponse(header=self.header(), kvs=list(kvs), count=n, more=len(kvs) < n)

    async def put(self, req: rpc.PutRequest) -> rpc.PutResponse:
        if req.lease and req.lease not in self.leases:
            raise errors.ErrLeaseNotFound
        self.rev += 1
        prev = self.data.get(req.key)
        new = kv.KeyValue(
            key=req.key,
            create_revision=prev.create_revision if prev else self.rev,
            mod_revision=self.rev,
            version=(prev.version + 1) if prev else 1,
            value=req.value,
            lease=req.lease,
        )
        self.data[req.key] = new
        for s in list(self.streams):
            s.notify(kv.Event(kv=new))
        return rpc.PutResponse(header=self.header(), prev_kv=prev if req.prev_kv else None)

    async def delete_range(self, req: rpc.DeleteRangeRequest) -> rpc.DeleteRangeResponse:
        kvs = self._select(req.key, req.range_end)
        if kvs:
            self.rev += 1
        for v in kvs:
            del self.data[v.key]
            ev = kv.Event(
                type=kv.EventType.DELETE, kv=kv.KeyValue(key=v.key, mod_revision=self.rev)
            )
            for s in list(self.streams):
                s.notify(ev)
        return rpc.DeleteRangeResponse(
            header=self.header(), deleted=len(kvs), prev_kvs=kvs if req.prev_kv else []
        )

    async def txn(self, req: rpc.TxnRequest) -> rpc.TxnResponse:
        ok = all(
            (self.data.get(c.key) is not None and self.data[c.key].value == c.value)
            if c.target == rpc.CompareTarget.VALUE
            else True
            for c in req.compare
        )
        return rpc.TxnResponse(header=self.header(), succeeded=ok)

    async def compact(self, req: rpc.CompactionRequest) -> rpc.CompactionResponse:
        return rpc.CompactionResponse(header=self.header())

    async def lease_grant(self, req: rpc.LeaseGrantRequest) -> rpc.LeaseGrantResponse:
        lid = req.ID or 7587867162542745000 + len(self.leases)
        if lid in self.leases:
            raise errors.ErrLeaseExist
        ttl = max(req.TTL, 2)
        self.leases[lid] = ttl
        return rpc.LeaseGrantResponse(header=self.header(), ID=lid, TTL=ttl)

    async def lease_revoke(self, req: rpc.LeaseRevokeRequest) -> rpc.LeaseRevokeResponse:
        if self.leases.pop(req.ID, None) is None:
            raise errors.ErrLeaseNotFound
        return rpc.LeaseRevokeResponse(header=self.header())

    async def lease_renew(self, req: rpc.LeaseKeepAliveRequest) -> rpc.LeaseKeepAliveResponse:
        if req.ID not in self.leases:
            raise errors.ErrLeaseNotFound
        return rpc.LeaseKeepAliveResponse(header=self.header(), ID=req.ID, TTL=self.leases[req.ID])

    async def lease_time_to_live(
        self, req: rpc.LeaseTimeToLiveRequest
    ) -> rpc.LeaseTimeToLiveResponse:
        if req.ID not in self.leases:
            return rpc.LeaseTimeToLiveResponse(header=self.header(), ID=req.ID, TTL=-1)
        t = self.leases[req.ID]
        return rpc.LeaseTimeToLiveResponse(header=self.header(), ID=req.ID, TTL=t, grantedTTL=t)

    async def lease_leases(self, req: rpc.LeaseLeasesRequest) -> rpc.LeaseLeasesResponse:
        return rpc.LeaseLeasesResponse(
            header=self.header(), leases=[rpc.LeaseStatus(ID=i) for i in self.leases]
        )

    async def member_list(self, req: rpc.MemberListRequest) -> rpc.MemberListResponse:
        m = rpc.Member(
            ID=MEMBER_ID,
            name="e1",
            peerURLs=["http://127.0.0.1:23801"],
            clientURLs=["http://127.0.0.1:23791"],
        )
        return rpc.MemberListResponse(header=self.header(), members=[m])

    async def status(self, req: rpc.StatusRequest) -> rpc.StatusResponse:
        return rpc.StatusResponse(
            header=self.header(),
            version="3.4.23",
            dbSize=20480,
            leader=MEMBER_ID,
            raftIndex=16,
            raftTerm=2,
            raftAppliedIndex=16,
            dbSizeInUse=16384,
        )

    async def hash(self, req: rpc.HashRequest) -> rpc.HashResponse:
        return rpc.HashResponse(header=self.header(), hash=4288181104)

    async def hash_kv(self, req: rpc.HashKVRequest) -> rpc.HashKVResponse:
        return rpc.HashKVResponse(header=self.header(), hash=1, compact_revision=0)

    async def alarm(self, req: rpc.AlarmRequest) -> rpc.AlarmResponse:
        return rpc.AlarmResponse(header=self.header())

    def new_watch_stream(self, on_ready: Callable[[], None]) -> FakeWatchStream:
        return FakeWatchStream(self, on_ready)

    def is_healthy(self) -> bool:
        return self.healthy

    def is_learner(self) -> bool:
        return False

    def has_leader(self) -> bool:
        return self.healthy

    def metrics_exposition(self) -> bytes:
        return b""
