"""The applier: committed entries -> MVCC, lessor, membership, alarms (etcd's apply.go).

Apply is idempotent across restarts: every normal entry first records its index as the
consistent index (``cindex``, in the same backend batch as its writes), and an entry at or
below the consistent index found at start is skipped. Conf-change entries are always handed to
the Raft core again (its configuration is rebuilt from the snapshot + log on every start), but
change the member table only above the consistent index (``ConfChangeApplier``).

The backend commits only between entries (never inside one): every ``BATCH_LIMIT`` writes here
(frozen on the loop, written in the backend's commit thread), or every ``batch_interval`` from
the housekeeping task (both held back while an online defragment copies the file: see
``Backend.hold_commits``). Every proposal's waiter gets its entry's result: the response, or
the ``EtcdError`` the apply ended with.

The quota is checked again when a put, txn or lease grant is applied (etcd's quotaApplierV3):
one that finds the backend over quota is still applied (every member applies the same
entries), but answers ``database space exceeded``, and this member raises its NOSPACE alarm
first (etcd's applyEntryNormal) unless one is active.

Auth (etcd's authApplierV3): a client's request carries its caller (``header``: user and the
auth revision its token was judged at); the auth store checks it against the permissions as
they are when the entry is applied, after the alarm refusals and before the quota, and
applies the Auth* requests themselves. The member's own proposals carry no caller.

Built with exactly what it touches (see ``wiring.py``); nothing here reaches the member.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

import structlog

from raftkv import errors
from raftkv.auth import AuthInfo, AuthStore, is_auth_request
from raftkv.backend import Backend
from raftkv.errors import EtcdError
from raftkv.lease import Lessor
from raftkv.mvcc import KVStore
from raftkv.pb.rpc import InternalRaftRequest, LeaseCheckpointResponse, ResponseHeader
from raftkv.raft import ConfState, Entry, EntryType
from raftkv.server import quota
from raftkv.server.alarms import Alarms, refusal
from raftkv.server.cindex import ConsistentIndex
from raftkv.server.codec import decode_request
from raftkv.server.membership import RaftCluster
from raftkv.server.wait import Wait

__all__ = ["BATCH_LIMIT", "Applier", "ConfChangeApplier"]

log = structlog.get_logger("raftkv.server")

BATCH_LIMIT = 10_000


class ConfChangeApplier(Protocol):
    def __call__(self, e: Entry, fresh: bool, conf_state: ConfState) -> ConfState:
        """Apply the conf change entry ``e`` (``fresh``: above the consistent index); the new
        ConfState."""
        ...


class Applier:
    def __init__(
        self,
        *,
        kv: KVStore,
        lessor: Lessor,
        backend: Backend,
        cindex: ConsistentIndex,
        alarms: Alarms,
        auth: AuthStore,
        cluster: RaftCluster,
        wait: Wait,
        apply_conf_change: ConfChangeApplier,
        schedule_compaction: Callable[[], None],
        on_applied: Callable[[int], None],
        quota_bytes: int,
        raise_nospace: Callable[[Callable[[], None] | None], None],
    ) -> None:
        self._kv = kv
        self._lessor = lessor
        self._backend = backend
        self._cindex = cindex
        self._alarms = alarms
        self._auth = auth
        self._cluster = cluster
        self._wait = wait
        self._apply_conf_change = apply_conf_change
        self._schedule_compaction = schedule_compaction
        self._on_applied = on_applied
        self._quota_bytes = quota_bytes
        self._raise_nospace = raise_nospace
        self.applied_index = 0
        self.applied_term = 0
        self.conf_state = ConfState()

    def restore(self, index: int, term: int, conf_state: ConfState) -> None:
        """Everything up to ``index`` is in the state now (a snapshot was loaded or installed)."""
        self.applied_index = index
        self.applied_term = term
        self.conf_state = conf_state
        self._on_applied(index)

    def apply_entries(self, entries: list[Entry]) -> None:
        cindex = self._cindex
        wait = self._wait
        backend = self._backend
        ci = cindex.value
        for e in entries:
            if e.type == EntryType.CONF_CHANGE:
                self.conf_state = self._apply_conf_change(e, e.index > ci, self.conf_state)
                if e.index > ci:
                    cindex.set(e.index)
            elif e.index > ci:
                cindex.set(e.index)
                if e.data:
                    req = decode_request(e.data)
                    try:
                        result: Any = self._apply_request(req, e.index)
                    except EtcdError as err:
                        result = err
                    waiting = bool(req.ID) and wait.is_registered(req.ID)
                    if result is errors.ErrNoSpace and not self._alarms.nospace:
                        answer = partial(wait.trigger, req.ID, result) if waiting else None
                        self._raise_nospace(answer)
                    elif waiting:
                        wait.trigger(req.ID, result)
                if backend.pending >= BATCH_LIMIT:
                    backend.commit_soon()  # (in the commit thread: the loop goes on)
            if e.index > self.applied_index:  # entries applied early come again: skip back
                self.applied_index = e.index
                self.applied_term = e.term
        self._on_applied(self.applied_index)

    def _apply_request(self, r: InternalRaftRequest, index: int) -> Any:
        kv = self._kv
        if self._alarms.mode:
            err = refusal(self._alarms.mode, r)
            if err is not None:
                raise err
        h = r.header
        if h is not None:
            self._auth.check_request(AuthInfo(h.username, h.auth_revision), r, self._lease_keys)
        if r.put is not None:  # (one field is set: the common ones are looked at first)
            return self._within_quota(r.put, kv.put)
        if r.txn is not None:
            return self._within_quota(r.txn, kv.txn)
        if r.delete_range is not None:
            return kv.delete_range(r.delete_range)
        if r.compaction is not None:
            resp = kv.compact(r.compaction.revision)
            self._schedule_compaction()
            return resp
        if r.lease_grant is not None:
            g = r.lease_grant
            return self._within_quota(
                g, lambda g: self._lessor.grant(g.ID, g.TTL, time.monotonic())
            )
        if r.lease_revoke is not None:
            return kv.lease_revoke(r.lease_revoke.ID)
        if r.lease_checkpoint is not None:
            now = time.monotonic()
            for cp in r.lease_checkpoint.checkpoints:
                self._lessor.checkpoint(cp.ID, cp.remaining_TTL, now)
            return LeaseCheckpointResponse(header=ResponseHeader(revision=kv.current_revision))
        if r.alarm is not None:
            return self._alarms.apply(r.alarm, kv.current_revision)
        if r.member_attributes is not None:
            m = r.member_attributes
            self._cluster.update_attributes(m.ID, m.name, list(m.clientURLs))
            return None
        if is_auth_request(r):
            return self._auth.apply(r, index)
        return None

    def _lease_keys(self, lease_id: int) -> list[bytes]:
        lease = self._lessor.get(lease_id)
        return sorted(lease.keys) if lease is not None else []

    def _within_quota(self, req: Any, apply: Callable[[Any], Any]) -> Any:
        ok = quota.available(self._backend.size, quota.cost(req), self._quota_bytes)
        resp = apply(req)
        if not ok:
            raise errors.ErrNoSpace
        return resp
