"""The applier's alarm modes, as etcd 3.4 swaps its applier (alarms.py), and status texts."""

from __future__ import annotations

from raftkv import errors
from raftkv.pb import rpc
from raftkv.server.alarms import ApplyMode, alarm_text, mode_after, mode_at_start, refusal

A, D = rpc.AlarmAction.ACTIVATE, rpc.AlarmAction.DEACTIVATE
NOSPACE, CORRUPT = rpc.AlarmType.NOSPACE, rpc.AlarmType.CORRUPT


def test_last_swap_wins_as_in_etcd():
    m = mode_after(ApplyMode.NORMAL, A, NOSPACE, 0, 1)
    assert m == ApplyMode.CAPPED
    assert mode_after(m, A, NOSPACE, 1, 2) == ApplyMode.CAPPED  # a second member's NOSPACE
    m = mode_after(m, A, CORRUPT, 0, 1)
    assert m == ApplyMode.CORRUPT
    # disarming CORRUPT alone goes back to NORMAL although a NOSPACE alarm is still listed
    assert mode_after(m, D, CORRUPT, 1, 0) == ApplyMode.NORMAL
    # disarming one of two NOSPACE alarms changes nothing
    assert mode_after(ApplyMode.CAPPED, D, NOSPACE, 2, 1) == ApplyMode.CAPPED
    assert mode_after(ApplyMode.CAPPED, A, rpc.AlarmType.NONE, 0, 1) == ApplyMode.CAPPED


def test_at_start_corrupt_wins_over_nospace():
    assert mode_at_start([NOSPACE, CORRUPT]) == ApplyMode.CORRUPT
    assert mode_at_start([NOSPACE, 7]) == ApplyMode.CAPPED
    assert mode_at_start([]) == ApplyMode.NORMAL


def test_what_each_mode_refuses():
    put = rpc.InternalRaftRequest(put=rpc.PutRequest(key=b"k"))
    delete = rpc.InternalRaftRequest(delete_range=rpc.DeleteRangeRequest(key=b"k"))
    txn_put = rpc.InternalRaftRequest(
        txn=rpc.TxnRequest(failure=[rpc.RequestOp(request_put=rpc.PutRequest(key=b"k"))])
    )
    txn_del = rpc.InternalRaftRequest(
        txn=rpc.TxnRequest(success=[rpc.RequestOp(request_delete_range=delete.delete_range)])
    )
    grant = rpc.InternalRaftRequest(lease_grant=rpc.LeaseGrantRequest(TTL=5))
    revoke = rpc.InternalRaftRequest(lease_revoke=rpc.LeaseRevokeRequest(ID=5))
    compact = rpc.InternalRaftRequest(compaction=rpc.CompactionRequest(revision=1))
    capped = [refusal(ApplyMode.CAPPED, r) for r in (put, txn_put, grant, delete, txn_del, revoke)]
    assert capped == [errors.ErrNoSpace] * 3 + [None] * 3
    for r in (put, delete, txn_put, txn_del, grant, revoke, compact):
        assert refusal(ApplyMode.CORRUPT, r) is errors.ErrCorrupt
        assert refusal(ApplyMode.NORMAL, r) is None


def test_status_texts_leave_zero_fields_out():
    assert alarm_text(rpc.AlarmMember(memberID=5, alarm=NOSPACE)) == "memberID:5 alarm:NOSPACE "
    assert alarm_text(rpc.AlarmMember(memberID=5)) == "memberID:5 "
    assert alarm_text(rpc.AlarmMember(memberID=5, alarm=7)) == "memberID:5 alarm:7 "
