"""Lease keep-alive and time-to-live answers carry the revision of the member the client asked
(etcd fills these headers locally: the leader's lease answers leave them empty), even when the
leader that served the lease is ahead of it."""

from raftkv.pb import rpc
from tests.server.test_recovery import _cfg, _start


async def test_lease_answers_carry_this_members_revision(tmp_path, monkeypatch):
    m = await _start(_cfg(tmp_path))
    s = m.server
    try:
        await s.lease_grant(rpc.LeaseGrantRequest(ID=7, TTL=600))
        await s.put(rpc.PutRequest(key=b"k", value=b"v", lease=7))
        local = m.kv.current_revision
        real = m.forwarder.call

        async def leader_ahead(op, req):
            resp = await real(op, req)
            resp.header = rpc.ResponseHeader(revision=local + 5)  # a leader further on
            return resp

        monkeypatch.setattr(m.forwarder, "call", leader_ahead)
        ka = await s.lease_renew(rpc.LeaseKeepAliveRequest(ID=7))
        assert (ka.TTL, ka.header.revision) == (600, local)
        ttl = await s.lease_time_to_live(rpc.LeaseTimeToLiveRequest(ID=7, keys=True))
        assert (ttl.grantedTTL, ttl.keys, ttl.header.revision) == (600, [b"k"], local)
        gone = await s.lease_time_to_live(rpc.LeaseTimeToLiveRequest(ID=8))
        assert (gone.TTL, gone.header.revision) == (-1, local)
    finally:
        await m.stop()
