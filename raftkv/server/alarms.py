"""What active alarms do to the applier (etcd 3.4's applierV3Capped / applierV3Corrupt).

etcd swaps its applier when an alarm *type* becomes active or inactive, and the last swap
wins (so with NOSPACE and CORRUPT both raised, disarming CORRUPT alone lets writes through
again, as in etcd):

    ACTIVATE, first alarm of its type:   NOSPACE -> CAPPED, CORRUPT -> CORRUPT, other: unchanged
    DEACTIVATE, last alarm of its type:  NOSPACE or CORRUPT -> NORMAL, other: unchanged
    at start: CAPPED if a NOSPACE alarm is stored, then CORRUPT if a CORRUPT alarm is

CAPPED refuses what has a quota cost (puts, txns with a put, lease grants) with "database
space exceeded"; CORRUPT refuses puts, deletes, txns, compactions, lease grants and revokes
with "corrupt cluster". Reads (and read-only txns, served without Raft) are never refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from raftkv import errors
from raftkv.errors import EtcdError
from raftkv.pb.rpc import AlarmAction, AlarmMember, AlarmType, InternalRaftRequest
from raftkv.server import quota

__all__ = ["ApplyMode", "alarm_text", "mode_after", "mode_at_start", "refusal"]


class ApplyMode(IntEnum):
    NORMAL = 0
    CAPPED = 1
    CORRUPT = 2


def mode_after(
    mode: ApplyMode, action: AlarmAction, alarm: object, before: int, after: int
) -> ApplyMode:
    """The mode once an alarm request changed the count of ``alarm``'s type from ``before``
    to ``after``."""
    if action == AlarmAction.ACTIVATE and before == 0 and after == 1:
        if alarm == AlarmType.NOSPACE:
            return ApplyMode.CAPPED
        if alarm == AlarmType.CORRUPT:
            return ApplyMode.CORRUPT
    elif (
        action == AlarmAction.DEACTIVATE
        and before > 0
        and after == 0
        and alarm in (AlarmType.NOSPACE, AlarmType.CORRUPT)
    ):
        return ApplyMode.NORMAL
    return mode


def mode_at_start(types: Iterable[object]) -> ApplyMode:
    present = set(types)
    if AlarmType.CORRUPT in present:
        return ApplyMode.CORRUPT
    if AlarmType.NOSPACE in present:
        return ApplyMode.CAPPED
    return ApplyMode.NORMAL


def refusal(mode: ApplyMode, r: InternalRaftRequest) -> EtcdError | None:
    """The error the applier answers ``r`` with in ``mode`` (None: apply it)."""
    if mode == ApplyMode.CAPPED:
        if r.put is not None or r.lease_grant is not None:
            return errors.ErrNoSpace
        if r.txn is not None and quota.cost(r.txn) > 0:
            return errors.ErrNoSpace
    elif mode == ApplyMode.CORRUPT and (
        r.put is not None
        or r.delete_range is not None
        or r.txn is not None
        or r.compaction is not None
        or r.lease_grant is not None
        or r.lease_revoke is not None
    ):
        return errors.ErrCorrupt
    return None


def alarm_text(a: AlarmMember) -> str:
    """An alarm as etcd lists it in status errors: Go's compact proto text, zero fields left
    out (``memberID:5 alarm:NOSPACE ``; an alarm of type NONE is just ``memberID:5 ``)."""
    text = f"memberID:{a.memberID} " if a.memberID else ""
    if a.alarm:
        name = a.alarm.name if isinstance(a.alarm, AlarmType) else str(int(a.alarm))
        text += f"alarm:{name} "
    return text
