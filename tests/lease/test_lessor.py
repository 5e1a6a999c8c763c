"""Lessor: grant/renew/revoke, expiry with a fake clock, checkpoints, persistence."""

import os

import pytest

from raftkv import errors
from raftkv.lease import MAX_LEASE_TTL, ErrNotPrimary, Lessor
from raftkv.lease.lessor import LEASE_REVOKE_RATE
from tests.mvcc.helpers import Env, get, put, watch


@pytest.fixture
def env(tmp_path):
    e = Env(str(tmp_path), min_ttl=5)
    yield e
    e.close()


def raises(err, f, *a, **kw):
    with pytest.raises(type(err)) as e:
        f(*a, **kw)
    assert e.value is err


def test_grant_raises_ttl_to_minimum_and_refuses_bad_ids(env):
    le = env.lessor
    r = le.grant(1, 1, now=0.0)
    assert (r.ID, r.TTL) == (1, 5)
    assert le.grant(2, 60, now=0.0).TTL == 60
    raises(errors.ErrLeaseExist, le.grant, 1, 10, now=0.0)
    raises(errors.ErrLeaseNotFound, le.grant, 0, 10, now=0.0)
    raises(errors.ErrLeaseTTLTooLarge, le.grant, 3, MAX_LEASE_TTL + 1, now=0.0)
    assert le.grant(4, MAX_LEASE_TTL, now=0.0).TTL == MAX_LEASE_TTL
    assert [s.ID for s in le.leases().leases] == [1, 2, 4]


def test_responses_carry_the_store_revision(env):
    env.lessor.grant(1, 10, now=0.0)
    env.store.put(put(b"a", lease=1))
    assert env.lessor.grant(2, 10, now=0.0).header.revision == 2
    assert env.lessor.time_to_live(1, False, now=0.0).header.revision == 2


def test_followers_never_expire_leases(env):
    le = env.lessor
    le.grant(1, 10, now=0.0)
    assert le.expired(now=1e9) == []
    raises(ErrNotPrimary, le.renew, 1, now=0.0)


def test_leader_expires_after_ttl_and_renew_restarts_it(env):
    le = env.lessor
    le.promote(now=100.0)
    le.grant(1, 10, now=100.0)
    le.grant(2, 20, now=100.0)
    assert le.expired(now=109.9) == []
    assert le.renew(1, now=105.0) == 10
    assert le.expired(now=110.5) == []
    assert le.expired(now=115.0) == [1]
    # reported again only after the retry interval, while its revoke is on the way
    assert le.expired(now=116.0) == []
    assert le.expired(now=118.5) == [1]
    assert le.expired(now=121.0) == [2]  # 1 is due again at 121.5
    assert le.expired(now=121.5) == [1]


def test_renew_of_unknown_or_expired_lease_is_not_found(env):
    le = env.lessor
    le.promote(now=0.0)
    raises(errors.ErrLeaseNotFound, le.renew, 9, now=0.0)
    le.grant(1, 10, now=0.0)
    raises(errors.ErrLeaseNotFound, le.renew, 1, now=10.0)


def test_time_to_live_and_unknown_lease_ttl_minus_one(env):
    le, s = env.lessor, env.store
    le.promote(now=0.0)
    le.grant(1, 30, now=0.0)
    s.put(put(b"b", lease=1))
    s.put(put(b"a", lease=1))
    r = le.time_to_live(1, True, now=10.5)
    assert (r.ID, r.TTL, r.grantedTTL, r.keys) == (1, 19, 30, [b"a", b"b"])
    assert le.time_to_live(1, False, now=10.5).keys == []
    r = le.time_to_live(7, True, now=0.0)
    assert (r.ID, r.TTL) == (7, -1)


def test_revoke_deletes_keys_in_one_revision_and_watchers_see_one_response(env):
    s, le = env.store, env.lessor
    le.grant(1, 60, now=0.0)
    for k in (b"k2", b"k1", b"k3"):
        s.put(put(k, lease=1))
    ws = s.new_watch_stream(lambda: None)
    ws.create(watch(b"k", b"l"))
    ws.drain()
    assert s.lease_revoke(1).header.revision == 5
    got = ws.drain()
    assert len(got) == 1 and [ev.kv.key for ev in got[0].events] == [b"k1", b"k2", b"k3"]
    assert s.range(get(b"k", b"l")).count == 0
    raises(errors.ErrLeaseNotFound, s.lease_revoke, 1)
    raises(errors.ErrLeaseNotFound, s.put, put(b"k1", lease=1))


def test_revoke_of_a_lease_without_keys_takes_no_revision(env):
    env.lessor.grant(1, 60, now=0.0)
    assert env.store.lease_revoke(1).header.revision == 1


def test_leases_and_checkpoints_survive_reopen(env):
    le = env.lessor
    le.grant(1, 600, now=0.0)
    le.grant(2, 60, now=0.0)
    le.checkpoint(1, 250)
    env.store.put(put(b"a", lease=2))
    env.reopen()
    le = env.lessor
    assert le.lookup(1) and le.lookup(2) and le.keys_of(2) == [b"a"]
    le.promote(now=1000.0)
    assert le.time_to_live(1, False, now=1000.0).TTL == 250  # from the checkpoint
    assert le.time_to_live(2, False, now=1000.0).TTL == 60
    assert le.expired(now=1249.0) == [2]
    assert le.expired(now=1251.0) == [1]


def test_checkpoint_then_promote_keeps_remaining_ttl(env):
    """The leader checkpoints remaining TTLs; a new leader starts from them, not from TTL."""
    a = env.lessor
    a.checkpointing = True
    a.promote(now=0.0)
    a.grant(1, 1000, now=0.0)
    assert a.checkpoints_due(now=299.0) == []
    due = a.checkpoints_due(now=300.0)
    assert due == [(1, 700)]
    a.checkpoint(1, 700, now=300.0)  # applied through raft on every member
    assert a.checkpoints_due(now=599.0) == []
    assert a.checkpoints_due(now=600.5) == [(1, 400)]
    a.demote()
    # another member's lessor with the same applied state, promoted later
    other = Lessor(env.backend, min_ttl=5)
    other.promote(now=5000.0)
    assert other.time_to_live(1, False, now=5000.0).TTL == 700
    assert other.expired(now=5699.0) == [] and other.expired(now=5700.0) == [1]


def test_renew_clears_a_checkpointed_remaining_ttl_through_a_checkpoint(env):
    le = env.lessor
    le.checkpointing = True
    le.grant(1, 1000, now=0.0)
    le.checkpoint(1, 100)
    le.promote(now=0.0)
    assert le.time_to_live(1, False, now=0.0).TTL == 100
    assert le.renew(1, now=50.0) == 1000
    assert le.time_to_live(1, False, now=50.0).TTL == 1000
    assert (1, 0) in le.checkpoints_due(now=51.0)
    le.checkpoint(1, 0)
    assert le.checkpoints_due(now=52.0) == []


def test_without_checkpointing_a_new_leader_restarts_the_full_ttl(env):
    """etcd 3.4's default: no checkpoints are proposed, a renew clears nothing, and a new
    leader starts every lease from its granted TTL; a checkpoint applied anyway (proposed by a
    member that checkpoints) is honoured."""
    a = env.lessor
    a.promote(now=0.0)
    a.grant(1, 1000, now=0.0)
    a.grant(2, 1000, now=0.0)
    assert a.checkpoints_due(now=300.0) == [] and a.checkpoints_due(now=900.0) == []
    a.checkpoint(2, 400, now=900.0)
    assert a.renew(1, now=901.0) == 1000
    assert a.checkpoints_due(now=902.0) == []
    a.demote()
    other = Lessor(env.backend, min_ttl=5)
    other.promote(now=5000.0)
    assert other.time_to_live(1, False, now=5000.0).TTL == 1000
    assert other.time_to_live(2, False, now=5000.0).TTL == 400


def test_short_leases_are_not_checkpointed(env):
    le = env.lessor
    le.checkpointing = True
    le.promote(now=0.0)
    le.grant(1, 60, now=0.0)
    assert le.checkpoints_due(now=1e6) == []


def test_promote_spreads_a_mass_expiry(tmp_path):
    e = Env(str(tmp_path))
    le = e.lessor
    n = LEASE_REVOKE_RATE + 500
    for i in range(1, n + 1):
        le.grant(i, 10, now=0.0)
    le.promote(now=0.0)
    expired_at_10 = le.expired(now=10.0, limit=n)
    assert len(expired_at_10) <= (3 * LEASE_REVOKE_RATE) // 4
    later = le.expired(now=12.0, limit=n)  # the rest come within the next seconds
    assert not set(later) & set(expired_at_10)
    assert len(expired_at_10) + len(later) == n
    e.close()


def test_expired_respects_limit(env):
    le = env.lessor
    le.promote(now=0.0)
    for i in range(1, 21):
        le.grant(i, 5, now=0.0)
    assert len(le.expired(now=6.0)) == 16
    assert len(le.expired(now=6.0)) == 4


def test_lease_bucket_holds_one_record_per_lease(env):
    env.lessor.grant(-5, 10, now=0.0)  # ids are int64; stored as two's complement
    env.lessor.grant(1, 10, now=0.0)
    assert len(env.backend.range(b"lease", b"", None)) == 2
    env.reopen()
    assert env.lessor.lookup(-5) and env.lessor.lookup(1)
    assert os.path.exists(env.path)
