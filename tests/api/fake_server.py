"""A small in-memory stand-in for ``EtcdServer``: enough of etcd's behaviour to test the API's
codec, routing, streams and error shapes without a cluster. Not a model of MVCC."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from raftkv import errors
from raftkv.auth import AuthInfo, AuthStore, password_matches
from raftkv.auth.caller import CALLER
from raftkv.auth.tokens import SimpleTokens
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

    def refuse(self, reason: str) -> None:
        self._push(
            rpc.WatchResponse(
                header=self.server.header(),
                watch_id=-1,
                created=True,
                canceled=True,
                cancel_reason=reason,
            )
        )

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


class DictBuckets:
    """The backend's bucket calls over dicts (for the auth store)."""

    def __init__(self) -> None:
        self.buckets: dict[bytes, dict[bytes, bytes]] = {}

    def create_bucket(self, name: bytes) -> None:
        self.buckets.setdefault(name, {})

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        return self.buckets[bucket].get(key)

    def put(self, bucket: bytes, key: bytes, value: bytes) -> None:
        self.buckets[bucket][key] = value

    def delete(self, bucket: bytes, key: bytes) -> None:
        self.buckets[bucket].pop(key, None)

    def range(
        self, bucket: bytes, start: bytes, end: bytes | None = None
    ) -> list[tuple[bytes, bytes]]:
        d = self.buckets[bucket]
        return [(k, d[k]) for k in sorted(d) if k >= start and (end is None or k < end)]


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
        self.auth = AuthStore(DictBuckets(), SimpleTokens(), 4)

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

    # --- auth: the real store, applied at once (no log) ---

    async def auth_info(self, token: str | None) -> AuthInfo | None:
        return await self.auth.auth_info(token)

    def _auth_apply(self, **fields: Any) -> Any:
        r = rpc.InternalRaftRequest(**fields)
        caller = CALLER.get()
        if caller is not None:
            self.auth.check_request(caller, r, lambda _id: [])
        resp = self.auth.apply(r, self.rev)
        resp.header = self.header()
        return resp

    async def authenticate(self, req: rpc.AuthenticateRequest) -> rpc.AuthenticateResponse:
        hashed, _rev = self.auth.password_hash(req.name)
        if not await asyncio.to_thread(password_matches, req.password, hashed):
            raise errors.ErrAuthFailed
        internal = rpc.InternalAuthenticateRequest(name=req.name, simple_token="fake")
        return self._auth_apply(authenticate=internal)

    async def auth_enable(self, req: rpc.AuthEnableRequest) -> rpc.AuthEnableResponse:
        return self._auth_apply(auth_enable=req)

    async def auth_disable(self, req: rpc.AuthDisableRequest) -> rpc.AuthDisableResponse:
        return self._auth_apply(auth_disable=req)

    async def user_add(self, req: rpc.AuthUserAddRequest) -> rpc.AuthUserAddResponse:
        return self._auth_apply(auth_user_add=req)

    async def user_get(self, req: rpc.AuthUserGetRequest) -> rpc.AuthUserGetResponse:
        return self._auth_apply(auth_user_get=req)

    async def user_list(self, req: rpc.AuthUserListRequest) -> rpc.AuthUserListResponse:
        return self._auth_apply(auth_user_list=req)

    async def user_delete(self, req: rpc.AuthUserDeleteRequest) -> rpc.AuthUserDeleteResponse:
        return self._auth_apply(auth_user_delete=req)

    async def user_change_password(self, req: rpc.AuthUserChangePasswordRequest) -> Any:
        return self._auth_apply(auth_user_change_password=req)

    async def user_grant_role(self, req: rpc.AuthUserGrantRoleRequest) -> Any:
        return self._auth_apply(auth_user_grant_role=req)

    async def user_revoke_role(self, req: rpc.AuthUserRevokeRoleRequest) -> Any:
        return self._auth_apply(auth_user_revoke_role=req)

    async def role_add(self, req: rpc.AuthRoleAddRequest) -> rpc.AuthRoleAddResponse:
        return self._auth_apply(auth_role_add=req)

    async def role_get(self, req: rpc.AuthRoleGetRequest) -> rpc.AuthRoleGetResponse:
        return self._auth_apply(auth_role_get=req)

    async def role_list(self, req: rpc.AuthRoleListRequest) -> rpc.AuthRoleListResponse:
        return self._auth_apply(auth_role_list=req)

    async def role_delete(self, req: rpc.AuthRoleDeleteRequest) -> rpc.AuthRoleDeleteResponse:
        return self._auth_apply(auth_role_delete=req)

    async def role_grant_permission(self, req: rpc.AuthRoleGrantPermissionRequest) -> Any:
        return self._auth_apply(auth_role_grant_permission=req)

    async def role_revoke_permission(self, req: rpc.AuthRoleRevokePermissionRequest) -> Any:
        return self._auth_apply(auth_role_revoke_permission=req)

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
