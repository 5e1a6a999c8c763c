"""The member's alarms: the persisted set (etcd's alarm store) and what active alarms do to
the applier (etcd 3.4's applierV3Capped / applierV3Corrupt).

``Alarms`` keeps the active alarms in the backend's ``alarm`` bucket (key
``<member id %016x>-<type number>``), changed only by applied AlarmRequests, and the apply mode
they put the applier in.

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

import structlog

from raftkv import errors
from raftkv.backend import Backend
from raftkv.errors import EtcdError
from raftkv.pb.rpc import (
    AlarmAction,
    AlarmMember,
    AlarmRequest,
    AlarmResponse,
    AlarmType,
    InternalRaftRequest,
    ResponseHeader,
)
from raftkv.server import quota

__all__ = [
    "Alarms",
    "ApplyMode",
    "alarm_name",
    "alarm_text",
    "mode_after",
    "mode_at_start",
    "refusal",
]

log = structlog.get_logger("raftkv.server")

ALARM_BUCKET = b"alarm"


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
        text += f"alarm:{alarm_name(a.alarm)} "
    return text


def alarm_name(t: object) -> str:
    """An alarm type as Go prints it: its name, or the number of a type etcd does not know
    (etcd stores those too; a committed one must never stop the applier)."""
    return t.name if isinstance(t, AlarmType) else str(int(t))  # type: ignore[call-overload]


class Alarms:
    """The active alarms of the cluster (every member holds the same set: changed by applied
    entries only) and the apply mode they set."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.active: dict[tuple[int, object], AlarmMember] = {}
        self.mode = ApplyMode.NORMAL
        self.load()

    def load(self) -> None:
        """Read the set from the backend (at start, and after a snapshot's db was installed)."""
        b = self._backend
        b.create_bucket(ALARM_BUCKET)
        self.active = {}
        for k, _v in b.range(ALARM_BUCKET, b"\x00", None):
            mid, n = int(k[:16], 16), int(k[17:])
            t = AlarmType(n) if n in AlarmType._value2member_map_ else n
            self.active[(mid, t)] = AlarmMember(memberID=mid, alarm=t)
        self.mode = mode_at_start(t for (_m, t) in self.active)

    @property
    def nospace(self) -> bool:
        return any(t == AlarmType.NOSPACE for (_m, t) in self.active)

    def texts(self) -> list[str]:
        """The alarms as Status lists them in ``errors``."""
        return [alarm_text(a) for a in self.active.values()]

    def apply(self, r: AlarmRequest, revision: int) -> AlarmResponse:
        """Apply a committed AlarmRequest (GET lists, ACTIVATE / DEACTIVATE change the set)."""
        resp = AlarmResponse(header=ResponseHeader(revision=revision))
        key = (r.memberID, r.alarm)
        bkey = f"{r.memberID:016x}-{int(r.alarm)}".encode()
        before = self._count(r.alarm)
        if r.action == AlarmAction.GET:
            resp.alarms = [
                a for (_m, t), a in sorted(self.active.items()) if r.alarm in (AlarmType.NONE, t)
            ]
        elif r.action == AlarmAction.ACTIVATE:
            # (etcd stores even an alarm of type NONE: it is listed, and makes /health false)
            if key not in self.active:
                self.active[key] = AlarmMember(memberID=r.memberID, alarm=r.alarm)
                self._backend.put(ALARM_BUCKET, bkey, b"")
                log.warning("alarm_raised", alarm=alarm_name(r.alarm), member=f"{r.memberID:x}")
            resp.alarms = [self.active[key]]
        elif r.action == AlarmAction.DEACTIVATE:
            a = self.active.pop(key, None)
            if a is not None:
                self._backend.delete(ALARM_BUCKET, bkey)
                resp.alarms = [a]
                log.info("alarm_cleared", alarm=alarm_name(r.alarm), member=f"{r.memberID:x}")
        self.mode = mode_after(self.mode, r.action, r.alarm, before, self._count(r.alarm))
        return resp

    def _count(self, alarm: object) -> int:
        return sum(1 for (_m, t) in self.active if t == alarm)
