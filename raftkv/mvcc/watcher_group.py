"""Watchers, watcher groups and event batches (etcd's mvcc/watcher.go + watcher_group.go).

A watcher watches one key (``end is None``), every key >= key (``end == b""``) or [key, end),
and accepts events with mod_revision >= ``min_rev``. A group indexes watchers by key (single-key
watchers: a dict) and by interval (range watchers).

Range watchers are found through an ``IntervalIndex`` (a lookup is one bisect once built).

An event batch holds a watcher's events of at most ``WATCH_BATCH_MAX_REVS`` distinct revisions;
``more_rev`` is the first revision left out (the watcher stays unsynced from there).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import TYPE_CHECKING

from raftkv.pb.kv import Event, EventType

if TYPE_CHECKING:
    from raftkv.mvcc.watchable_store import WatchStream

__all__ = ["WATCH_BATCH_MAX_REVS", "EventBatch", "Watcher", "WatcherGroup", "new_watcher_batch"]

WATCH_BATCH_MAX_REVS = 1000


class Watcher:
    __slots__ = (
        "canceled",
        "compacted",
        "end",
        "got_events",
        "id",
        "key",
        "min_rev",
        "no_delete",
        "no_put",
        "prev_kv",
        "progress_notify",
        "restore",
        "stream",
        "victim",
    )

    def __init__(
        self,
        stream: WatchStream,
        watch_id: int,
        key: bytes,
        end: bytes | None,
        *,
        no_put: bool = False,
        no_delete: bool = False,
        prev_kv: bool = False,
        progress_notify: bool = False,
    ) -> None:
        self.stream = stream
        self.id = watch_id
        self.key = key
        self.end = end
        self.min_rev = 0
        self.no_put = no_put
        self.no_delete = no_delete
        self.prev_kv = prev_kv
        self.progress_notify = progress_notify
        self.victim = False  # its events wait in the hub's victims (its stream was full)
        self.compacted = False  # canceled because its start revision was compacted
        self.restore = False  # moved from synced to unsynced by a snapshot restore
        self.canceled = False
        self.got_events = False  # for progress_notify elision

    def matches(self, key: bytes) -> bool:
        end = self.end
        if end is None:
            return key == self.key
        return self.key <= key and (not end or key < end)

    def send(self, events: list[Event], revision: int) -> bool:
        """Offer events (of revisions < min_rev already filtered) to the stream; False when
        the stream's buffer is full. Events all filtered out count as sent."""
        if self.no_put or self.no_delete:
            events = [
                ev
                for ev in events
                if not (
                    (self.no_put and ev.type == EventType.PUT)
                    or (self.no_delete and ev.type == EventType.DELETE)
                )
            ]
            if not events:
                return True
        return self.stream._push_events(self, events, revision)

    def __repr__(self) -> str:
        return f"Watcher(id={self.id}, key={self.key!r}, end={self.end!r}, min_rev={self.min_rev})"


class EventBatch:
    __slots__ = ("evs", "header_rev", "more_rev", "revs")

    def __init__(self) -> None:
        self.evs: list[Event] = []
        self.revs = 0
        self.more_rev = 0
        # the header revision of its response, kept when it waits as a victim (etcd re-sends
        # with min_rev - 1 instead, which can go back in time after a partial batch)
        self.header_rev = 0

    def add(self, ev: Event) -> None:
        if self.revs > WATCH_BATCH_MAX_REVS:
            return
        evs = self.evs
        if not evs:
            self.revs = 1
            evs.append(ev)
            return
        ev_rev = ev.kv.mod_revision
        if ev_rev > evs[-1].kv.mod_revision:
            self.revs += 1
            if self.revs > WATCH_BATCH_MAX_REVS:
                self.more_rev = ev_rev
                return
        evs.append(ev)


class IntervalIndex:
    """Which intervals [start, end) (``end == b""``: unbounded) contain a key.

    The distinct interval bounds cut the key space into segments; each segment lists the
    watcher sets of the intervals covering it, so a lookup is one bisect. The table is rebuilt
    lazily after the set of intervals changed -- and only once it has been queried
    ``REBUILD_AFTER`` times since (until then a linear scan answers), so creating many range
    watchers between writes does not rebuild it each time.
    """

    REBUILD_AFTER = 16
    MAX_COVER = 1 << 18  # table entries; above it lookups stay linear scans

    __slots__ = ("_bounds", "_covers", "_dirty", "_scans", "ranges")

    def __init__(self) -> None:
        self.ranges: dict[tuple[bytes, bytes], set[Watcher]] = {}
        self._bounds: list[bytes] = []
        self._covers: list[list[set[Watcher]]] = [[]]
        self._dirty = False
        self._scans = 0

    def __bool__(self) -> bool:
        return bool(self.ranges)

    def add(self, w: Watcher) -> None:
        ivl = (w.key, w.end)
        ws = self.ranges.get(ivl)
        if ws is None:
            ws = self.ranges[ivl] = set()
            self._changed()
        ws.add(w)

    def discard(self, w: Watcher) -> None:
        ivl = (w.key, w.end)
        ws = self.ranges.get(ivl)
        if ws is not None:
            ws.discard(w)
            if not ws:
                del self.ranges[ivl]
                self._changed()

    def _changed(self) -> None:
        self._dirty = True
        self._scans = 0

    def stab(self, key: bytes) -> list[set[Watcher]]:
        """The watcher sets of every interval containing key."""
        if self._dirty:
            if self._scans < self.REBUILD_AFTER:
                self._scans += 1
                return [
                    ws
                    for (start, end), ws in self.ranges.items()
                    if start <= key and (not end or key < end)
                ]
            self._build()
            if self._dirty:
                return self.stab(key)
        return self._covers[bisect_right(self._bounds, key)]

    def _build(self) -> None:
        bounds = sorted({s for s, _ in self.ranges} | {e for _, e in self.ranges if e})
        # segment j is [bounds[j-1], bounds[j]) (segment 0 starts at -inf, the last is open)
        covers: list[list[set[Watcher]]] = [[] for _ in range(len(bounds) + 1)]
        spans = []
        total = 0
        for (start, end), ws in self.ranges.items():
            if end and start >= end:
                continue
            lo = bisect_left(bounds, start) + 1
            hi = bisect_left(bounds, end) + 1 if end else len(bounds) + 1
            spans.append((lo, hi, ws))
            total += hi - lo
        if total > self.MAX_COVER:
            # deeply overlapping intervals (e.g. thousands of "from key" watches): the table
            # would be quadratic; keep scanning until the intervals change
            self._scans = -(1 << 62)
            return
        for lo, hi, ws in spans:
            for j in range(lo, hi):
                covers[j].append(ws)
        self._bounds = bounds
        self._covers = covers
        self._dirty = False


class WatcherGroup:
    __slots__ = ("key_watchers", "ranges", "watchers")

    def __init__(self) -> None:
        self.key_watchers: dict[bytes, set[Watcher]] = {}
        self.ranges = IntervalIndex()
        self.watchers: set[Watcher] = set()

    def __len__(self) -> int:
        return len(self.watchers)

    def __contains__(self, w: Watcher) -> bool:
        return w in self.watchers

    def add(self, w: Watcher) -> None:
        if w in self.watchers:
            raise ValueError("add watcher twice")
        self.watchers.add(w)
        if w.end is None:
            self.key_watchers.setdefault(w.key, set()).add(w)
        else:
            self.ranges.add(w)

    def delete(self, w: Watcher) -> bool:
        if w not in self.watchers:
            return False
        self.watchers.discard(w)
        if w.end is None:
            ws = self.key_watchers.get(w.key)
            if ws is not None:
                ws.discard(w)
                if not ws:
                    del self.key_watchers[w.key]
        else:
            self.ranges.discard(w)
        return True

    def contains_key(self, key: bytes) -> bool:
        return key in self.key_watchers or bool(self.ranges and self.ranges.stab(key))

    def watchers_of(self, key: bytes) -> set[Watcher] | tuple[()]:
        """Every watcher of the group that watches key."""
        ws = self.key_watchers.get(key)
        if not self.ranges:
            return ws if ws is not None else ()
        sets = self.ranges.stab(key)
        if not sets:
            return ws if ws is not None else ()
        if ws is None and len(sets) == 1:
            return sets[0]
        out = set(ws) if ws is not None else set()
        for rws in sets:
            out |= rws
        return out

    def choose(self, max_watchers: int) -> list[Watcher]:
        if len(self.watchers) <= max_watchers:
            return list(self.watchers)
        out = []
        for w in self.watchers:
            out.append(w)
            if len(out) == max_watchers:
                break
        return out


def new_watcher_batch(group: WatcherGroup, evs: list[Event]) -> dict[Watcher, EventBatch]:
    """Each watcher of the group -> its events among evs (those at or after its min_rev)."""
    wb: dict[Watcher, EventBatch] = {}
    if not group.watchers:
        return wb
    for ev in evs:
        kv = ev.kv
        rev = kv.mod_revision
        for w in group.watchers_of(kv.key):
            if rev >= w.min_rev:
                eb = wb.get(w)
                if eb is None:
                    eb = wb[w] = EventBatch()
                eb.add(ev)
    return wb
