"""The applier: committed entries -> MVCC, lessor, membership, alarms (etcd's apply.go).

Apply is idempotent across restarts: every normal entry first records its index as the
backend's consistent index (in the same backend batch as its writes), and an entry at or below
the consistent index found at start is skipped. Conf-change entries are always handed to the
Raft core again (its configuration is rebuilt from the snapshot + log on every start), but
change the member table only above the consistent index.

The backend commits only between entries (never inside one), every ``BATCH_LIMIT`` writes or
``batch_interval`` (driven by the server's housekeeping task).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import structlog

from raftkv.errors import EtcdError
from raftkv.pb.rpc import (
    AlarmAction,
    AlarmMember,
    AlarmRequest,
    AlarmResponse,
    AlarmType,
    InternalRaftRequest,
    LeaseCheckpointResponse,
    ResponseHeader,
)
from raftkv.raft import ConfState, Entry, EntryType
from raftkv.server.alarms import ApplyMode, mode_after, mode_at_start, refusal
from raftkv.server.codec import decode_request

if TYPE_CHECKING:
    from raftkv.server.etcdserver import EtcdServer

__all__ = ["Applier", "alarm_name"]

log = structlog.get_logger("raftkv.server")

BATCH_LIMIT = 10_000
ALARM_BUCKET = b"alarm"


def alarm_name(t: int) -> str:
    """An alarm type as Go prints it: its name, or the number of a type etcd does not know
    (etcd stores those too; a committed one must never stop the applier)."""
    return t.name if isinstance(t, AlarmType) else str(int(t))


class Applier:
    def __init__(self, server: EtcdServer) -> None:
        self.s = server
        self.applied_index = 0
        self.applied_term = 0
        self.conf_state = ConfState()
        self.alarms: dict[tuple[int, AlarmType], AlarmMember] = {}
        self.mode = ApplyMode.NORMAL  # what the active alarms refuse (alarms.py)
        self.compacting = False

    # --- alarms (persisted in the backend's ``alarm`` bucket) ---------------------------------

    def load_alarms(self) -> None:
        b = self.s.backend
        b.create_bucket(ALARM_BUCKET)
        self.alarms = {}
        for k, _v in b.range(ALARM_BUCKET, b"\x00", None):
            mid, n = int(k[:16], 16), int(k[17:])
            t = AlarmType(n) if n in AlarmType._value2member_map_ else n
            self.alarms[(mid, t)] = AlarmMember(memberID=mid, alarm=t)
        self.mode = mode_at_start(t for (_m, t) in self.alarms)

    def _alarm(self, r: AlarmRequest) -> AlarmResponse:
        resp = AlarmResponse(header=ResponseHeader(revision=self.s.kv.current_revision))
        key = (r.memberID, r.alarm)
        bkey = f"{r.memberID:016x}-{int(r.alarm)}".encode()
        before = self._count(r.alarm)
        if r.action == AlarmAction.GET:
            resp.alarms = [
                a for (_m, t), a in sorted(self.alarms.items()) if r.alarm in (AlarmType.NONE, t)
            ]
        elif r.action == AlarmAction.ACTIVATE:
            # (etcd stores even an alarm of type NONE: it is listed, and makes /health false)
            if key not in self.alarms:
                self.alarms[key] = AlarmMember(memberID=r.memberID, alarm=r.alarm)
                self.s.backend.put(ALARM_BUCKET, bkey, b"")
                log.warning("alarm_raised", alarm=alarm_name(r.alarm), member=f"{r.memberID:x}")
            resp.alarms = [self.alarms[key]]
        elif r.action == AlarmAction.DEACTIVATE:
            a = self.alarms.pop(key, None)
            if a is not None:
                self.s.backend.delete(ALARM_BUCKET, bkey)
                resp.alarms = [a]
                log.info("alarm_cleared", alarm=alarm_name(r.alarm), member=f"{r.memberID:x}")
        self.mode = mode_after(self.mode, r.action, r.alarm, before, self._count(r.alarm))
        return resp

    def _count(self, alarm: object) -> int:
        return sum(1 for (_m, t) in self.alarms if t == alarm)

    @property
    def nospace(self) -> bool:
        return any(t == AlarmType.NOSPACE for (_m, t) in self.alarms)

    # --- entries ------------------------------------------------------------------------------

    def apply_entries(self, entries: list[Entry]) -> None:
        s = self.s
        kv = s.kv
        wait = s.wait
        backend = s.backend
        ci = kv.consistent_index
        for e in entries:
            if e.type == EntryType.CONF_CHANGE:
                self._apply_conf_change(e, e.index > ci)
                if e.index > ci:
                    kv.consistent_index = e.index
            elif e.index > ci:
                kv.consistent_index = e.index
                if e.data:
                    req = decode_request(e.data)
                    try:
                        result: Any = self._apply_request(req)
                    except EtcdError as err:
                        result = err
                    if req.ID and wait.is_registered(req.ID):
                        wait.trigger(req.ID, result)
                if backend.pending >= BATCH_LIMIT:
                    backend.commit()
            if e.index > self.applied_index:  # entries applied early come again: skip back
                self.applied_index = e.index
                self.applied_term = e.term
        s.on_applied(self.applied_index)

    def _apply_request(self, r: InternalRaftRequest) -> Any:
        s = self.s
        kv = s.kv
        if self.mode:
            err = refusal(self.mode, r)
            if err is not None:
                raise err
        if r.put is not None:
            return kv.put(r.put)
        if r.txn is not None:
            return kv.txn(r.txn)
        if r.delete_range is not None:
            return kv.delete_range(r.delete_range)
        if r.compaction is not None:
            resp = kv.compact(r.compaction.revision)
            s.schedule_compaction()
            return resp
        if r.lease_grant is not None:
            return s.lessor.grant(r.lease_grant.ID, r.lease_grant.TTL, time.monotonic())
        if r.lease_revoke is not None:
            return kv.lease_revoke(r.lease_revoke.ID)
        if r.lease_checkpoint is not None:
            now = time.monotonic()
            for cp in r.lease_checkpoint.checkpoints:
                s.lessor.checkpoint(cp.ID, cp.remaining_TTL, now)
            return LeaseCheckpointResponse(header=ResponseHeader(revision=kv.current_revision))
        if r.alarm is not None:
            return self._alarm(r.alarm)
        if r.member_attributes is not None:
            m = r.member_attributes
            s.cluster.update_attributes(m.ID, m.name, list(m.clientURLs))
            return None
        return None

    def _apply_conf_change(self, e: Entry, fresh: bool) -> None:
        self.conf_state = self.s.member_ops.apply(e, fresh, self.conf_state)
