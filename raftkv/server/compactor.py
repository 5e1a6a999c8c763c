"""Auto-compaction (etcd 3.4's etcdserver/api/v3compactor): ``--auto-compaction-mode`` and
``--auto-compaction-retention``, with etcd's exact meaning. Every member runs the timer; only
the leader proposes (the others are "paused"), and a compaction goes through Raft like a
client's ``/v3/kv/compaction`` (``mvcc: required revision has been compacted`` counts as done).

**periodic** (retention: a duration such as ``"1h"``, ``"30m"``, ``"90s"``, or a bare number of
hours, ``"1"``): the current revision is sampled every ``min(retention, 1h) / 10``; nothing is
compacted during the first ``retention``; after that the oldest kept sample (the revision of
``retention`` ago) is compacted every ``min(retention, 1h)``, retried every sample interval on
failure. So ``"10m"`` keeps 10 minutes of history and compacts every 10 minutes; ``"24h"``
keeps a day and compacts hourly.

**revision** (retention: a number of revisions): every 5 minutes, compact at ``current
revision - retention`` unless that is <= 0 or the same as last time.

``"0"`` (the default) disables it. The policies below are pure (time and revisions are passed
in); ``Compactor`` is the asyncio driver. ``RAFTKV_REVISION_COMPACTION_INTERVAL`` (seconds)
shortens revision mode's 5 minutes, for tests.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Awaitable, Callable

import structlog

from raftkv import errors
from raftkv.errors import EtcdError
from raftkv.pb import rpc
from raftkv.server.storage import StartupError

__all__ = [
    "Compactor",
    "PeriodicPolicy",
    "RevisionPolicy",
    "parse_go_duration",
    "parse_retention",
]

log = structlog.get_logger("raftkv.server")

HOUR = 3600.0
RETRY_DIVISOR = 10
REVISION_INTERVAL = 300.0  # etcd's revInterval (5 minutes)

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}
_UNITS["h"] = HOUR
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(s: str) -> float:
    """Go's time.ParseDuration, in seconds ("1h30m", "1.5h", "300ms", "-2m", "0")."""
    orig = s
    sign = 1.0
    if s[:1] in ("-", "+"):
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{orig}"')
    total, pos = 0.0, 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            if re.match(r"(\d+\.?\d*|\.\d+)$", s[pos:]):
                raise ValueError(f'time: missing unit in duration "{orig}"')
            raise ValueError(f'time: invalid duration "{orig}"')
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return sign * total


def parse_retention(mode: str, retention: str) -> float:
    """etcd's parseCompactionRetention: seconds (periodic) or a revision count (revision).

    A non-negative integer is hours (periodic) or revisions (revision); anything else is a Go
    duration (for revision mode etcd then counts its nanoseconds as revisions, and so does
    this). Raises ValueError with etcd's message."""
    if re.fullmatch(r"[+-]?\d+", retention) and int(retention) >= 0:  # strconv.Atoi
        n = int(retention)
        return n * HOUR if mode == "periodic" else float(n)
    try:
        seconds = parse_go_duration(retention)
    except ValueError as e:
        raise ValueError(f"error parsing CompactionRetention: {e}") from None
    return seconds if mode == "periodic" else float(round(seconds * 1e9))


class PeriodicPolicy:
    """Which revision to compact when, for a retention ``period`` (seconds)."""

    def __init__(self, period: float, now: float) -> None:
        self.period = period
        self.compact_interval = min(period, HOUR)
        self.retry_interval = self.compact_interval / RETRY_DIVISOR
        self.retentions = int(period / self.retry_interval) + 1
        self.revs: list[int] = []
        self.last_success = now
        self._base = period  # the first compaction waits a whole period

    def record(self, rev: int) -> None:
        """Sample the current revision (once per retry interval)."""
        self.revs.append(rev)
        if len(self.revs) > self.retentions:
            del self.revs[0]  # revs[0] is the revision of ``period`` ago

    def due(self, now: float, paused: bool) -> int | None:
        """Called every retry interval, after a sample: the revision to compact, or None."""
        if paused or not self.revs or now - self.last_success < self._base:
            return None
        if self._base == self.period:
            self._base = self.compact_interval
        return self.revs[0]

    def succeeded(self, now: float) -> None:
        self.last_success = now


class RevisionPolicy:
    """Compact at ``current - retention`` every ``REVISION_INTERVAL``."""

    def __init__(self, retention: int) -> None:
        self.retention = retention
        self.retry_interval = REVISION_INTERVAL
        self.prev = 0

    def due(self, current: int, paused: bool) -> int | None:
        if paused:
            return None
        rev = current - self.retention
        if rev <= 0 or rev == self.prev:
            return None
        return rev

    def succeeded(self, rev: int) -> None:
        self.prev = rev


class Compactor:
    """The driver: one task per member; proposes only while this member leads."""

    def __init__(
        self,
        *,
        compact: Callable[[rpc.CompactionRequest], Awaitable[object]],
        current_revision: Callable[[], int],
        is_leader: Callable[[], bool],
        mode: str,
        retention: str,
    ) -> None:
        self._compact_through_raft = compact
        self._current_revision = current_revision
        self._is_leader = is_leader
        self.mode = mode
        try:
            self.retention = parse_retention(mode, retention)
        except ValueError as e:
            raise StartupError(str(e)) from None
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return self.retention > 0

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())
            log.info("auto_compaction_enabled", mode=self.mode, retention=self.retention)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _compact(self, rev: int) -> bool:
        try:
            await self._compact_through_raft(rpc.CompactionRequest(revision=rev))
        except EtcdError as e:
            if e is not errors.ErrCompacted and e.message != errors.ErrCompacted.message:
                log.warning("failed_auto_compaction", mode=self.mode, revision=rev, error=e.message)
                return False
        log.info("completed_auto_compaction", mode=self.mode, revision=rev)
        return True

    async def _run(self) -> None:
        if self.mode == "periodic":
            p = PeriodicPolicy(self.retention, time.monotonic())
            while True:
                p.record(self._current_revision())
                await asyncio.sleep(p.retry_interval)
                rev = p.due(time.monotonic(), paused=not self._is_leader())
                if rev is not None and await self._compact(rev):
                    p.succeeded(time.monotonic())
        else:
            r = RevisionPolicy(int(self.retention))
            interval = float(
                os.environ.get("RAFTKV_REVISION_COMPACTION_INTERVAL", r.retry_interval)
            )
            while True:
                await asyncio.sleep(interval)
                rev = r.due(self._current_revision(), paused=not self._is_leader())
                if rev is not None and await self._compact(rev):
                    r.succeeded(rev)
