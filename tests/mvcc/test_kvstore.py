"""etcd v3.4's request semantics, one behaviour per test (revisions, errors, options)."""

import os
import random

import pytest

from raftkv import errors
from raftkv.mvcc.index import TreeIndex
from raftkv.mvcc.kvstore_txn import encode_kv
from raftkv.pb import encode
from raftkv.pb.kv import KeyValue
from raftkv.pb.rpc import (
    Compare,
    CompareResult,
    CompareTarget,
    RequestOp,
    SortOrder,
    SortTarget,
    TxnRequest,
)
from tests.mvcc.helpers import Env, delete, get, op_del, op_get, op_put, put


def keys(resp):
    return [kv.key for kv in resp.kvs]


def test_fresh_store_is_at_revision_1_and_first_write_is_2(env):
    s = env.store
    assert (s.current_revision, s.compact_revision) == (1, -1)
    assert s.put(put(b"a", b"1")).header.revision == 2
    assert s.range(get(b"a")).kvs == [KeyValue(b"a", 2, 2, 1, b"1", 0)]


def test_encode_kv_is_the_pb_wire_codec():
    kv = KeyValue(b"k", 3, 9, 4, b"v" * 300, 77)
    assert encode_kv(kv) == encode(kv)


def test_versions_and_create_revision_across_a_delete(env):
    s = env.store
    s.put(put(b"a", b"1"))
    s.put(put(b"a", b"2"))
    s.delete_range(delete(b"a"))
    s.put(put(b"a", b"3"))
    assert s.range(get(b"a")).kvs == [KeyValue(b"a", 5, 5, 1, b"3", 0)]
    assert s.range(get(b"a", revision=3)).kvs == [KeyValue(b"a", 2, 3, 2, b"2", 0)]
    assert s.range(get(b"a", revision=4)).kvs == []


def test_range_missing_key_reports_current_revision_and_nothing(env):
    s = env.store
    s.put(put(b"a"))
    r = s.range(get(b"zz"))
    assert (r.header.revision, r.kvs, r.count, r.more) == (2, [], 0, False)


def test_range_limit_more_and_count_is_total(env):
    s = env.store
    for k in (b"a", b"b", b"c"):
        s.put(put(k, k))
    r = s.range(get(b"a", b"\x00", limit=2))
    assert keys(r) == [b"a", b"b"] and r.more and r.count == 3
    r = s.range(get(b"a", b"\x00", limit=3))
    assert keys(r) == [b"a", b"b", b"c"] and not r.more and r.count == 3


def test_range_end_zero_byte_means_every_key_from(env):
    s = env.store
    for k in (b"a", b"b", b"\xff\xff"):
        s.put(put(k))
    assert keys(s.range(get(b"b", b"\x00"))) == [b"b", b"\xff\xff"]
    assert keys(s.range(get(b"\x00", b"\x00"))) == [b"a", b"b", b"\xff\xff"]
    assert keys(s.range(get(b"a", b"b"))) == [b"a"]
    assert keys(s.range(get(b"c", b"a"))) == []


def test_range_count_only_and_keys_only(env):
    s = env.store
    s.put(put(b"a", b"x"))
    s.put(put(b"b", b"y"))
    r = s.range(get(b"a", b"c", count_only=True))
    assert (r.kvs, r.count) == ([], 2)
    r = s.range(get(b"a", b"c", keys_only=True))
    assert [kv.value for kv in r.kvs] == [b"", b""] and r.kvs[1].mod_revision == 3


def test_range_sort_disables_limit_until_after_sorting(env):
    s = env.store
    s.put(put(b"a", b"3"))
    s.put(put(b"b", b"1"))
    s.put(put(b"c", b"2"))
    r = s.range(
        get(b"a", b"\x00", limit=2, sort_order=SortOrder.DESCEND, sort_target=SortTarget.VALUE)
    )
    assert keys(r) == [b"a", b"c"] and r.more and r.count == 3
    r = s.range(get(b"a", b"\x00", sort_order=SortOrder.DESCEND))
    assert keys(r) == [b"c", b"b", b"a"]
    # a sort target with order NONE sorts ascending
    r = s.range(get(b"a", b"\x00", sort_target=SortTarget.VALUE))
    assert keys(r) == [b"b", b"c", b"a"]
    r = s.range(get(b"a", b"\x00", sort_order=SortOrder.ASCEND, sort_target=SortTarget.MOD))
    assert keys(r) == [b"a", b"b", b"c"]


# What etcd 3.4.23 (Go 1.19's sort.Sort) answered for keys m/10..m/39 with values
# v{(i * 7) % 3}, sorted by VALUE: ties in pdqsort's order, not in key order.
ETCD_VALUE_ORDER = (
    "21 39 12 36 33 15 30 27 18 24 31 16 22 37 19 25 13 34 28 10 29 20 32 14 17 35 26 23 38 11"
)


def test_range_sorted_on_a_target_with_ties_comes_out_in_etcds_order(env):
    s = env.store
    for i in range(10, 40):
        s.put(put(b"m/%d" % i, b"v%d" % ((i * 7) % 3)))
    r = s.range(get(b"m/", b"m0", sort_target=SortTarget.VALUE))
    assert keys(r) == [b"m/" + k.encode() for k in ETCD_VALUE_ORDER.split()]
    # up to 12 kvs Go sorts by insertion: stable, ties in key order (either direction)
    r = s.range(get(b"m/10", b"m/22", sort_order=SortOrder.DESCEND, sort_target=SortTarget.VALUE))
    assert keys(r) == [b"m/%d" % i for i in (11, 14, 17, 20, 10, 13, 16, 19, 12, 15, 18, 21)]


def test_range_min_max_filters_prune_kvs_but_not_count(env):
    s = env.store
    for k in (b"a", b"b", b"c"):  # revisions 2, 3, 4
        s.put(put(k))
    s.put(put(b"a"))  # a: create 2, mod 5
    r = s.range(get(b"a", b"\x00", min_mod_revision=4))
    assert keys(r) == [b"a", b"c"] and r.count == 3
    r = s.range(get(b"a", b"\x00", max_create_revision=3, limit=1))
    assert keys(r) == [b"a"] and r.more and r.count == 3
    r = s.range(get(b"a", b"\x00", min_create_revision=3, max_mod_revision=3))
    assert keys(r) == [b"b"]


def test_range_at_compacted_and_future_revisions(env):
    s = env.store
    for i in range(4):
        s.put(put(b"a", str(i).encode()))  # revisions 2..5
    s.compact(3)
    with pytest.raises(type(errors.ErrCompacted)) as e:
        s.range(get(b"a", revision=2))
    assert e.value is errors.ErrCompacted
    assert s.range(get(b"a", revision=3)).kvs[0].value == b"1"  # == compacted: allowed
    with pytest.raises(type(errors.ErrFutureRev)) as e:
        s.range(get(b"a", revision=6))
    assert e.value is errors.ErrFutureRev
    assert s.range(get(b"a", revision=5)).header.revision == 5


def test_put_prev_kv_ignore_value_ignore_lease(env):
    s = env.store
    env.lessor.grant(7, 100, now=0.0)
    s.put(put(b"a", b"v1", lease=7))
    r = s.put(put(b"a", ignore_value=True, prev_kv=True))
    assert r.prev_kv == KeyValue(b"a", 2, 2, 1, b"v1", 7)
    assert s.range(get(b"a")).kvs[0] == KeyValue(b"a", 2, 3, 2, b"v1", 0)
    s.put(put(b"a", b"v2", lease=7))
    s.put(put(b"a", b"v3", ignore_lease=True))
    assert s.range(get(b"a")).kvs[0] == KeyValue(b"a", 2, 5, 4, b"v3", 7)


@pytest.mark.parametrize(
    ("req", "err"),
    [
        (put(b"missing", ignore_value=True), errors.ErrKeyNotFound),
        (put(b"missing", ignore_lease=True), errors.ErrKeyNotFound),
        (put(b"a", b"x", ignore_value=True), errors.ErrValueProvided),
        (put(b"a", lease=5, ignore_lease=True), errors.ErrLeaseProvided),
        (put(b"a", b"x", lease=404), errors.ErrLeaseNotFound),
        (put(b"", b"x"), errors.ErrEmptyKey),
    ],
)
def test_put_errors_change_nothing(env, req, err):
    s = env.store
    s.put(put(b"a", b"1"))
    with pytest.raises(type(err)) as e:
        s.put(req)
    assert e.value is err
    assert s.current_revision == 2


def test_delete_range_revisions_and_prev_kvs(env):
    s = env.store
    s.put(put(b"a", b"1"))
    s.put(put(b"b", b"2"))
    r = s.delete_range(delete(b"x"))
    assert (r.deleted, r.header.revision) == (0, 3)
    r = s.delete_range(delete(b"a", b"\x00", prev_kv=True))
    assert (r.deleted, r.header.revision) == (2, 4)
    assert [kv.key for kv in r.prev_kvs] == [b"a", b"b"]
    assert s.current_revision == 4


def test_txn_compares_on_missing_keys(env):
    s = env.store
    s.put(put(b"here", b"v"))

    def cmp(target, result, **kw):
        return s.txn(TxnRequest(compare=[Compare(key=b"nope", target=target, result=result, **kw)]))

    assert not cmp(CompareTarget.VALUE, CompareResult.EQUAL, value=b"").succeeded
    assert not cmp(CompareTarget.VALUE, CompareResult.NOT_EQUAL, value=b"x").succeeded
    assert cmp(CompareTarget.VERSION, CompareResult.EQUAL, version=0).succeeded
    assert cmp(CompareTarget.CREATE, CompareResult.EQUAL, create_revision=0).succeeded
    assert cmp(CompareTarget.MOD, CompareResult.LESS, mod_revision=1).succeeded
    assert cmp(CompareTarget.LEASE, CompareResult.EQUAL, lease=0).succeeded
    assert s.current_revision == 2


def test_txn_compare_with_an_unknown_target_is_an_equal_result(env):
    # etcd's compareKV leaves result 0 for a target it does not know: EQUAL holds, NOT_EQUAL,
    # GREATER and LESS do not (on a present key and on a missing one alike)
    s = env.store
    s.put(put(b"here", b"v"))
    for key in (b"here", b"nope"):
        for result, ok in (
            (CompareResult.EQUAL, True),
            (CompareResult.NOT_EQUAL, False),
            (CompareResult.GREATER, False),
            (CompareResult.LESS, False),
        ):
            c = Compare(key=key, target=7, result=result)
            assert s.txn(TxnRequest(compare=[c])).succeeded is ok, (key, result)


def test_txn_compare_over_a_range_needs_every_key(env):
    s = env.store
    s.put(put(b"a", b"1"))
    s.put(put(b"b", b"1"))
    c = Compare(key=b"a", range_end=b"c", target=CompareTarget.VALUE, value=b"1")
    assert s.txn(TxnRequest(compare=[c])).succeeded
    s.put(put(b"b", b"2"))
    assert not s.txn(TxnRequest(compare=[c])).succeeded


def test_read_only_txn_keeps_the_revision_and_write_txn_takes_one(env):
    s = env.store
    s.put(put(b"a", b"1"))
    r = s.txn(TxnRequest(success=[op_get(b"a"), op_get(b"b")]))
    assert r.succeeded and r.header.revision == 2 and s.current_revision == 2
    r = s.txn(TxnRequest(success=[op_get(b"a"), op_put(b"b", b"2"), op_get(b"b"), op_put(b"c")]))
    assert r.header.revision == 3 and s.current_revision == 3
    revs = [(o.response_range or o.response_put).header.revision for o in r.responses]
    assert revs == [2, 3, 3, 3]  # a range before the first write sees the old revision
    assert s.range(get(b"b")).kvs[0] == KeyValue(b"b", 3, 3, 1, b"2", 0)
    assert s.range(get(b"c")).kvs[0].mod_revision == 3


def test_txn_delete_of_nothing_reports_begin_revision(env):
    s = env.store
    s.put(put(b"a"))
    r = s.txn(TxnRequest(success=[op_del(b"zz")]))
    assert r.header.revision == 2 and r.responses[0].response_delete_range.header.revision == 2
    r = s.txn(TxnRequest(success=[op_put(b"b"), op_del(b"zz")]))
    assert r.responses[1].response_delete_range.header.revision == 3


def test_nested_txn_header_is_empty_and_compares_see_the_old_state(env):
    s = env.store
    s.put(put(b"a", b"1"))
    inner = TxnRequest(
        compare=[Compare(key=b"b", target=CompareTarget.VERSION, version=0)],
        success=[op_put(b"c", b"inner")],
    )
    r = s.txn(TxnRequest(success=[op_put(b"b", b"2"), RequestOp(request_txn=inner)]))
    nested = r.responses[1].response_txn
    assert nested.header.revision == 0 and nested.succeeded  # b did not exist before the txn
    assert r.header.revision == 3
    assert s.range(get(b"c")).kvs[0].mod_revision == 3


@pytest.mark.parametrize(
    "ops",
    [
        [op_put(b"a"), op_put(b"a")],
        [op_put(b"b"), op_del(b"a", b"c")],
        [op_del(b"a"), RequestOp(request_txn=TxnRequest(success=[op_put(b"a")]))],
    ],
)
def test_txn_writing_a_key_twice_is_refused(env, ops):
    with pytest.raises(type(errors.ErrDuplicateKey)) as e:
        env.store.txn(TxnRequest(success=ops))
    assert e.value is errors.ErrDuplicateKey
    assert env.store.current_revision == 1


def test_txn_then_and_else_may_put_the_same_key(env):
    inner = TxnRequest(success=[op_put(b"a", b"t")], failure=[op_put(b"a", b"f")])
    env.store.txn(TxnRequest(success=[RequestOp(request_txn=inner)]))
    assert env.store.range(get(b"a")).kvs[0].value == b"t"


def test_txn_checks_fail_before_anything_is_written(env):
    s = env.store
    s.put(put(b"a"))
    with pytest.raises(type(errors.ErrKeyNotFound)):
        s.txn(TxnRequest(success=[op_put(b"b"), op_put(b"zz", ignore_value=True)]))
    with pytest.raises(type(errors.ErrLeaseNotFound)):
        s.txn(TxnRequest(success=[op_put(b"b"), op_put(b"c", lease=9)]))
    with pytest.raises(type(errors.ErrFutureRev)):
        s.txn(TxnRequest(success=[op_put(b"b"), op_get(b"a", revision=3)]))
    assert s.current_revision == 2 and s.range(get(b"b")).kvs == []


def test_compaction_errors_and_response_revision(env):
    s = env.store
    for _ in range(3):
        s.put(put(b"a"))
    with pytest.raises(type(errors.ErrFutureRev)):
        s.compact(5)
    assert s.compact(3).header.revision == 4
    with pytest.raises(type(errors.ErrCompacted)):
        s.compact(3)
    with pytest.raises(type(errors.ErrCompacted)):
        s.compact(2)


def test_compact_step_deletes_old_revisions_in_batches_and_survives_reopen(env):
    s = env.store
    for i in range(30):
        s.put(put(b"k%d" % (i % 3), b"%d" % i))  # revisions 2..31
    s.delete_range(delete(b"k0"))  # 32
    s.compact(32)
    steps = 0
    while s.compact_step(batch=7):
        steps += 1
    assert steps >= 3 and not s.compaction_pending
    remaining = env.backend.range(b"key", b"", None)
    assert len(remaining) == 2  # k1 and k2's last puts; k0's history and tombstone are gone
    s = env.reopen()
    assert (s.current_revision, s.compact_revision) == (32, 32)
    assert keys(s.range(get(b"k", b"l"))) == [b"k1", b"k2"]


def test_compact_step_out_of_time_budget_still_does_a_slice_and_finishes_the_same(env):
    s = env.store
    for i in range(300):
        s.put(put(b"k%d" % (i % 100), b"%d" % i))  # three revisions of 100 keys
    s.compact(s.current_revision)
    steps = 0
    while s.compact_step(batch=1000, budget=0.0):
        steps += 1
    assert steps >= 100 // 64 + 200 // 32  # one slice of index keys or records per step
    assert len(env.backend.range(b"key", b"", None)) == 100  # each key's last put
    s = env.reopen()
    assert keys(s.range(get(b"k", b"l"))) == sorted(b"k%d" % i for i in range(100))


def test_unfinished_compaction_is_resumed_on_reopen(env):
    s = env.store
    for i in range(10):
        s.put(put(b"a", b"%d" % i))
    s.compact(8)  # scheduled (committed by the close); no compact_step
    s = env.reopen()
    assert s.compact_revision == 8 and s.compaction_pending
    while s.compact_step():
        pass
    assert len(env.backend.range(b"key", b"", None)) == 4  # revisions 8..11
    s = env.reopen()
    assert s.compact_revision == 8 and not s.compaction_pending


def test_compact_leaves_its_commit_to_the_batch_it_was_written_in(env):
    from raftkv.server.cindex import ConsistentIndex

    s = env.store
    for i in range(10):
        s.put(put(b"a", b"%d" % i))
    ci = ConsistentIndex(env.backend)
    ci.set(7)
    env.backend.commit()
    ci.set(8)
    s.compact(8)  # the entry at index 8 asked for it
    assert env.backend.pending > 0  # no commit on the caller's thread
    with env.backend.read_snapshot() as snap:
        assert snap.get(b"meta", b"scheduledCompactRev") is None
    env.backend.commit()  # the batch: consistent index 8 and the scheduled revision at once
    with env.backend.read_snapshot() as snap:
        assert snap.get(b"meta", b"consistent_index") == (8).to_bytes(8, "big")
        assert snap.get(b"meta", b"scheduledCompactRev") is not None
    s = env.reopen()
    assert s.compact_revision == 8 and s.compaction_pending


def test_current_revision_survives_compaction_of_every_key(env):
    s = env.store
    s.put(put(b"a"))
    s.delete_range(delete(b"a"))
    s.compact(3)
    while s.compact_step():
        pass
    s = env.reopen()
    assert s.current_revision == 3 and s.compact_revision == 3


def test_hash_kv_ignores_how_far_physical_compaction_got(tmp_path):
    a, b = Env(str(tmp_path / "a")), Env(str(tmp_path / "b"))
    for e in (a, b):
        for i in range(20):
            e.store.put(put(b"k%d" % (i % 4), b"%d" % i))
        e.store.compact(12)
    while a.store.compact_step(batch=3):
        pass
    assert a.store.hash_kv(0) == b.store.hash_kv(0)
    assert a.store.hash_kv(15) == b.store.hash_kv(15)
    assert a.store.hash_kv(0)[1:] == (12, 21)
    with pytest.raises(type(errors.ErrCompacted)):
        a.store.hash_kv(12)
    with pytest.raises(type(errors.ErrFutureRev)):
        a.store.hash_kv(22)
    b.store.put(put(b"x"))
    assert a.store.hash_kv(21)[0] == b.store.hash_kv(21)[0]
    assert a.store.hash() != b.store.hash()
    a.close()
    b.close()


def test_lease_revoke_deletes_every_attached_key_in_one_revision(env):
    s, le = env.store, env.lessor
    le.grant(1, 60, now=0.0)
    for k in (b"c", b"a", b"b"):
        s.put(put(k, lease=1))
    s.put(put(b"other"))
    r = s.lease_revoke(1)
    assert r.header.revision == 6 == s.current_revision
    assert keys(s.range(get(b"\x00", b"\x00"))) == [b"other"]
    assert not le.lookup(1)
    with pytest.raises(type(errors.ErrLeaseNotFound)):
        s.lease_revoke(1)


def test_lease_attachment_moves_with_puts_and_deletes(env):
    s, le = env.store, env.lessor
    le.grant(1, 60, now=0.0)
    le.grant(2, 60, now=0.0)
    s.put(put(b"a", lease=1))
    s.put(put(b"b", lease=1))
    s.put(put(b"a", lease=2))
    s.delete_range(delete(b"b"))
    assert le.keys_of(1) == [] and le.keys_of(2) == [b"a"]
    s.put(put(b"a"))
    assert le.keys_of(2) == []


def test_lease_attachments_are_rebuilt_on_reopen(env):
    env.lessor.grant(1, 60, now=0.0)
    env.store.put(put(b"a", lease=1))
    env.store.put(put(b"b", lease=1))
    env.store.put(put(b"b"))
    s = env.reopen()
    assert env.lessor.keys_of(1) == [b"a"]
    assert s.lease_revoke(1).header.revision == 5


def test_reopen_rebuilds_every_revision_whatever_the_records_hold(env):
    """The rebuild walks each leaf's records as stored: values out of line (over half a
    page), tombstones among puts in one leaf, keys with history, leases; the reopened store
    answers every revision as before."""
    env.lessor.grant(1, 60, now=0.0)
    s = env.store
    for i in range(600):
        key = b"k%03d" % (i % 250)
        value = b"x" * 3000 if i % 9 == 0 else b"v%d" % i
        s.put(put(key, value, lease=1 if i % 11 == 0 else 0))
        if i % 13 == 0:
            s.delete_range(delete(b"k%03d" % ((i * 7) % 250)))
    rev = s.current_revision
    now = s.range(get(b"\x00", b"\x00"))
    before = {r: s.range(get(b"\x00", b"\x00", revision=r)) for r in range(2, rev, 17)}
    leased = env.lessor.keys_of(1)
    s = env.reopen()
    assert s.current_revision == rev
    assert s.range(get(b"\x00", b"\x00")) == now
    assert any(len(kv.value) == 3000 for kv in now.kvs)
    assert {r: s.range(get(b"\x00", b"\x00", revision=r)) for r in before} == before
    assert env.lessor.keys_of(1) == leased != []


@pytest.mark.parametrize(
    ("txn", "err"),
    [
        (TxnRequest(compare=[Compare(key=b"")]), errors.ErrEmptyKey),
        (TxnRequest(success=[RequestOp()]), errors.ErrKeyNotFound),  # etcd: an empty op
        (TxnRequest(failure=[op_get(b"")]), errors.ErrEmptyKey),
        (TxnRequest(success=[op_put(b"a", b"v", ignore_value=True)]), errors.ErrValueProvided),
    ],
)
def test_txn_request_validation(env, txn, err):
    with pytest.raises(type(err)) as e:
        env.store.txn(txn)
    assert e.value is err


def test_txn_delete_from_key_then_put_is_allowed_as_in_etcd(env):
    """etcd's duplicate check compares range_end b"\\0" literally, so it lets this through."""
    s = env.store
    s.put(put(b"b", b"old"))
    r = s.txn(TxnRequest(success=[op_del(b"a", b"\x00"), op_put(b"b", b"new")]))
    assert r.responses[0].response_delete_range.deleted == 1
    assert s.range(get(b"b")).kvs[0] == KeyValue(b"b", 3, 3, 1, b"new", 0)
    # where etcd would panic (ignore_value on the key just deleted), the put goes through empty
    s.txn(TxnRequest(success=[op_del(b"a", b"\x00"), op_put(b"b", ignore_value=True)]))
    assert s.range(get(b"b")).kvs[0].value == b""


def test_compaction_work_happens_in_steps_and_reads_stay_the_same(env):
    s = env.store
    for i in range(40):
        s.put(put(b"k%02d" % (i % 10), b"%d" % i))  # revisions 2..41
    s.delete_range(delete(b"k0", b"k1"))  # 42: k00..k09 -> all
    for i in range(5):
        s.put(put(b"k%02d" % i, b"again"))  # 43..47
    before = {r: s.range(get(b"k", b"l", revision=r)) for r in range(30, 48)}
    s.compact(30)
    assert len(s._index) == 10  # nothing compacted yet
    steps = 0
    while s.compact_step(batch=3):
        steps += 1
        for r in (30, 41, 42, 47):
            assert s.range(get(b"k", b"l", revision=r)) == before[r]
    assert steps >= 1 + 5  # the index (10 keys, 30 a step), then the backend 3 by 3
    assert {r: s.range(get(b"k", b"l", revision=r)) for r in range(30, 48)} == before


def test_an_index_prepared_in_a_thread_restores_what_reading_the_file_does(tmp_path):
    """A follower re-seeded by snapshot: the image's index is read in a worker thread while
    the store still serves its own file, then installed with the image."""
    import shutil
    import threading

    from raftkv.backend import Backend
    from raftkv.lease import Lessor
    from raftkv.mvcc import KVStore, prepare_index

    leader = Env(str(tmp_path / "leader"))
    leader.lessor.grant(1, 60, now=0.0)
    s = leader.store
    for i in range(3000):
        s.put(put(b"k%04d" % (i % 1000), b"%d" % i, lease=1 if i % 7 == 0 else 0))
    s.delete_range(delete(b"k0000", b"k0100"))
    s.compact(2500)
    while s.compact_step():
        pass
    s.put(put(b"z"))
    leader.close()
    image = str(tmp_path / "image.db")
    shutil.copyfile(leader.path, image)

    follower = Env(str(tmp_path / "follower"))
    follower.store.put(put(b"old"))
    got = []
    t = threading.Thread(target=lambda: got.append(prepare_index(image)))
    t.start()
    t.join()
    assert follower.store.range(get(b"old")).kvs  # served its own state meanwhile
    follower.backend.close()
    os.replace(image, follower.path)  # the install: the image becomes the backend's file
    backend = Backend.open(follower.path)
    follower.store.restore(backend, prepared=got[0])
    follower.backend = backend

    expect = Env(str(tmp_path / "leader"))  # the same file read the ordinary way
    a, b = follower.store, expect.store
    assert (a.current_revision, a.compact_revision) == (b.current_revision, b.compact_revision)
    assert a._index == b._index
    assert len(a.range(get(b"\x00", b"\x00")).kvs) == 901  # k0100..k0999 and z
    assert a.range(get(b"\x00", b"\x00")).kvs == b.range(get(b"\x00", b"\x00")).kvs
    assert follower.lessor.keys_of(1) == expect.lessor.keys_of(1) != []
    assert a.range(get(b"old")).kvs == []
    expect.close()
    with pytest.raises(ValueError, match="prepared at txid"):  # another state's index
        other = Backend.open(str(tmp_path / "other.db"))
        KVStore(other, Lessor(other)).restore(prepared=got[0])
    other.close()
    follower.close()


def test_an_index_restored_in_a_thread_sorts_its_keys_in_pieces_to_the_same_order():
    rng = random.Random(7)
    entries = {rng.randbytes(rng.randint(1, 12)): (2 << 32, 2 << 32, 1) for _ in range(45_000)}
    at_once = TreeIndex.restored(dict(entries))
    in_pieces = TreeIndex.restored(dict(entries), in_thread=True)
    assert in_pieces.sorted_items() == at_once.sorted_items()
    assert in_pieces.sorted_items()[0] == sorted(entries)
