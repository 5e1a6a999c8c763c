"""Watch: the hub of watchers over the store, and per-client watch streams (etcd's
mvcc/watchable_store.go + watcher.go + the mvcc half of etcdserver/api/v3rpc/watch.go).

Every watcher is in exactly one place:
- **synced**: it has seen everything up to the current revision; each write txn's events go
  straight to it (``notify``), all events of one revision in one response;
- **unsynced**: it is behind (it started at a past revision, or just left the victims);
  ``sync()`` (the server calls it every 100 ms, and again at once while it returns True)
  replays history from the backend in bounded chunks, then moves it to synced;
- **victims**: its stream's buffer was full when events came; the events wait here and are
  offered again when the stream drains or ``sync()`` runs. Writes never block on a watcher.
A watcher whose next revision has been compacted away is canceled with ``compact_revision``.

Per watcher the guarantee is etcd's: events in revision order, none twice, none missing from
its start revision (>= the compacted revision) on.

A ``WatchStream`` turns this into etcd's WatchResponses, in order: ``created`` (header =
revision at creation), events (header = the revision they were produced at), ``canceled``,
progress (``watch_id`` -1 for a progress request). It holds at most ``CHAN_BUF_LEN`` event
responses not yet drained (control responses are never refused) and calls ``on_ready()``
whenever it goes from nothing to drain to something.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from raftkv.mvcc.kvstore_txn import KEY_BUCKET, decode_kv
from raftkv.mvcc.revision import bytes_to_rev, is_tombstone, rev_to_bytes
from raftkv.mvcc.watcher_group import (
    EventBatch,
    Watcher,
    WatcherGroup,
    new_watcher_batch,
)
from raftkv.pb.kv import Event, EventType, KeyValue
from raftkv.pb.rpc import FilterType, ResponseHeader, WatchCreateRequest, WatchResponse

if TYPE_CHECKING:
    from raftkv.mvcc.kvstore import KVStore

__all__ = ["CHAN_BUF_LEN", "WatchHub", "WatchStream"]

CHAN_BUF_LEN = 128  # etcd: chanBufLen, event responses a stream buffers
MAX_WATCHERS_PER_SYNC = 512  # etcd: maxWatchersPerSync
MAX_SYNC_RECORDS = 2_000  # backend records read per sync() call (~ms of work)

ERR_EMPTY_WATCHER_RANGE = "mvcc: watcher range is empty"
ERR_WATCHER_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"


class WatchHub:
    def __init__(self, store: KVStore) -> None:
        self._s = store
        self.synced = WatcherGroup()
        self.unsynced = WatcherGroup()
        self.victims: list[dict[Watcher, EventBatch]] = []

    # --- membership --------------------------------------------------------------------------

    def watch(self, w: Watcher, start_rev: int) -> None:
        cur = self._s.current_revision
        if start_rev == 0 or start_rev > cur:
            w.min_rev = max(cur + 1, start_rev)
            self.synced.add(w)
        else:
            w.min_rev = start_rev
            self.unsynced.add(w)

    def cancel(self, w: Watcher) -> None:
        w.canceled = True
        if self.unsynced.delete(w) or self.synced.delete(w):
            return
        if w.victim:
            for wb in self.victims:
                if wb.pop(w, None) is not None:
                    return

    def restore(self, seen_rev: int) -> None:
        """After a snapshot restore every synced watcher must catch up from the new state.

        Synced watchers have seen everything up to ``seen_rev`` (the revision before the
        restore); they go on from there (etcd replays from their start revision instead).
        """
        for w in list(self.synced.watchers):
            w.restore = True
            w.min_rev = max(w.min_rev, seen_rev + 1)
            self.unsynced.add(w)
        self.synced = WatcherGroup()

    # --- events ------------------------------------------------------------------------------

    def notify(self, rev: int, changes: list[KeyValue]) -> None:
        """The write txn at ``rev`` made ``changes`` (deletes have create_revision 0)."""
        synced = self.synced
        if not synced.watchers:
            return
        evs = [
            Event(EventType.DELETE if kv.create_revision == 0 else EventType.PUT, kv)
            for kv in changes
        ]
        victim: dict[Watcher, EventBatch] = {}
        for w, eb in new_watcher_batch(synced, evs).items():
            if not w.send(eb.evs, rev):
                w.min_rev = rev + 1
                w.victim = True
                eb.header_rev = rev
                victim[w] = eb
                synced.delete(w)
        if victim:
            self.victims.append(victim)

    def sync(self) -> bool:
        """One bounded round of catching up. True if it made progress and more can be done
        at once (call again soon); False when done or blocked on full streams (those resume
        when drained, or on the next periodic call) -- so a stuck client never makes the
        caller spin."""
        progressed = bool(self.victims) and self.move_victims() > 0
        unsynced = self.unsynced
        if not unsynced.watchers:
            return False
        s = self._s
        cur, compact = s.current_revision, s.compact_revision
        chosen = []
        min_rev = None
        for w in unsynced.choose(MAX_WATCHERS_PER_SYNC):
            if w.min_rev > cur:
                if not w.restore:
                    raise AssertionError(f"{w} ahead of current revision {cur}")
                w.restore = False
            if w.min_rev < compact:
                if w.stream._push_compacted(w, compact):
                    w.compacted = True
                    unsynced.delete(w)
                    progressed = True
                continue
            chosen.append(w)
            if min_rev is None or w.min_rev < min_rev:
                min_rev = w.min_rev
        if not chosen:
            return progressed and bool(unsynced.watchers)

        group = WatcherGroup()
        for w in chosen:
            group.add(w)
        records, upto = self._read_history(min_rev, cur)
        evs = []
        for k, v in records:
            kv = decode_kv(v)
            if not group.contains_key(kv.key):
                continue
            if is_tombstone(k):
                kv.mod_revision = bytes_to_rev(k)[0]  # tombstones are stored without it
                evs.append(Event(EventType.DELETE, kv))
            else:
                evs.append(Event(EventType.PUT, kv))
        wb = new_watcher_batch(group, evs)
        victims: dict[Watcher, EventBatch] = {}
        for w in chosen:
            w.min_rev = max(w.min_rev, upto + 1)
            eb = wb.get(w)
            if eb is None:
                if upto == cur:
                    unsynced.delete(w)
                    self.synced.add(w)
                continue
            if eb.more_rev:
                w.min_rev = eb.more_rev
            if not w.send(eb.evs, cur):
                w.victim = True
                eb.header_rev = cur
                victims[w] = eb
                unsynced.delete(w)
                continue
            if eb.more_rev or upto < cur:
                continue  # more to read: stays unsynced
            unsynced.delete(w)
            self.synced.add(w)
        if victims:
            self.victims.append(victims)
        return bool(unsynced.watchers)  # every chosen watcher advanced past ``upto``

    def _read_history(self, min_rev: int, cur: int) -> tuple[list[tuple[bytes, bytes]], int]:
        """Backend records of revisions [min_rev, cur], at most about MAX_SYNC_RECORDS of them
        but always whole revisions; and the last revision they cover."""
        if min_rev < 0:
            # etcd writes the start as an unsigned backend key: from a negative revision it
            # reads nothing, and every watcher synced in this round goes on from ``cur + 1``
            return [], cur
        b = self._s._b
        end = rev_to_bytes(cur + 1)
        start = rev_to_bytes(min_rev)
        records = b.range(KEY_BUCKET, start, end, limit=MAX_SYNC_RECORDS)
        if len(records) < MAX_SYNC_RECORDS:
            return records, cur
        last_main = bytes_to_rev(records[-1][0])[0]
        # the last revision may continue past the limit: finish it
        rest = b.range(KEY_BUCKET, records[-1][0] + b"\x00", rev_to_bytes(last_main + 1))
        records.extend(rest)
        return records, last_main

    def move_victims(self) -> int:
        """Offer the victims' events again; returns how many were delivered."""
        victims, self.victims = self.victims, []
        moved = 0
        still: dict[Watcher, EventBatch] = {}
        cur = self._s.current_revision
        for wb in victims:
            for w, eb in wb.items():
                if w.canceled:
                    continue
                if not w.send(eb.evs, eb.header_rev):
                    still[w] = eb
                    continue
                moved += 1
                w.victim = False
                if eb.more_rev:
                    w.min_rev = eb.more_rev
                if w.min_rev <= cur:
                    self.unsynced.add(w)
                else:
                    self.synced.add(w)
        if still:
            self.victims.append(still)
        return moved


class WatchStream:
    """One client's watch stream. Not thread-safe; driven from the event loop."""

    def __init__(self, hub: WatchHub, on_ready: Callable[[], None]) -> None:
        self._hub = hub
        self._on_ready = on_ready
        self._out: deque[WatchResponse] = deque()
        self._events_buffered = 0
        self._watchers: dict[int, Watcher] = {}
        self._next_id = 0
        self._closed = False

    # --- requests ----------------------------------------------------------------------------

    def create(self, req: WatchCreateRequest) -> int:
        """Create a watcher; returns its id, or -1 when refused (a created+canceled response
        with etcd's cancel_reason is queued then, as etcd sends it)."""
        s = self._hub._s
        key = req.key or b"\x00"  # etcd: b"\0" is the smallest key
        if not req.range_end:
            end = None
        elif req.range_end == b"\x00":
            end = b""
        else:
            end = req.range_end
        wsrev = s.current_revision
        if self._closed or (end and key >= end):
            self.refuse(ERR_EMPTY_WATCHER_RANGE, wsrev)
            return -1
        wid = req.watch_id
        if wid == 0:  # clientv3.AutoWatchID
            while self._next_id in self._watchers:
                self._next_id += 1
            wid = self._next_id
            self._next_id += 1
        elif wid in self._watchers:
            self.refuse(ERR_WATCHER_DUPLICATE_ID, wsrev)
            return -1
        w = Watcher(
            self,
            wid,
            key,
            end,
            no_put=FilterType.NOPUT in req.filters,
            no_delete=FilterType.NODELETE in req.filters,
            prev_kv=req.prev_kv,
            progress_notify=req.progress_notify,
        )
        self._watchers[wid] = w
        self._push(WatchResponse(header=ResponseHeader(revision=wsrev), watch_id=wid, created=True))
        self._hub.watch(w, req.start_revision or wsrev + 1)
        return wid

    def refuse(self, reason: str, wsrev: int | None = None) -> None:
        """Queue a created+canceled response with ``reason`` (a watch create refused: by the
        stream itself, or by the auth checks before it got here)."""
        self._push(
            WatchResponse(
                header=ResponseHeader(
                    revision=self._hub._s.current_revision if wsrev is None else wsrev
                ),
                watch_id=-1,
                created=True,
                canceled=True,
                cancel_reason=reason,
            )
        )

    def cancel(self, watch_id: int) -> bool:
        """Cancel a watcher of this stream; False (and no response) if there is none."""
        w = self._watchers.pop(watch_id, None)
        if w is None or self._closed:
            return False
        self._hub.cancel(w)
        rev = self._hub._s.current_revision
        self._push(
            WatchResponse(header=ResponseHeader(revision=rev), watch_id=watch_id, canceled=True)
        )
        return True

    def request_progress(self) -> None:
        """etcd 3.4: answer at once with the current revision and watch_id -1."""
        rev = self._hub._s.current_revision
        self._push(WatchResponse(header=ResponseHeader(revision=rev), watch_id=-1))

    def progress_notify(self) -> None:
        """The periodic progress of watchers created with progress_notify (etcd sends it every
        10 minutes): an empty response to each such synced watcher that got no events since."""
        hub = self._hub
        rev = hub._s.current_revision
        for w in self._watchers.values():
            if not w.progress_notify:
                continue
            if w.got_events:
                w.got_events = False
            elif w in hub.synced and self._events_buffered < CHAN_BUF_LEN:
                self._push(WatchResponse(header=ResponseHeader(revision=rev), watch_id=w.id))
                self._events_buffered += 1

    def drain(self) -> list[WatchResponse]:
        out = list(self._out)
        self._out.clear()
        self._events_buffered = 0
        if self._hub.victims:
            self._hub.move_victims()
        return out

    def close(self) -> None:
        for w in self._watchers.values():
            self._hub.cancel(w)
        self._watchers.clear()
        self._out.clear()
        self._closed = True

    @property
    def watch_ids(self) -> list[int]:
        return list(self._watchers)

    # --- from the hub ------------------------------------------------------------------------

    def _push(self, resp: WatchResponse) -> None:
        was_empty = not self._out
        self._out.append(resp)
        if was_empty:
            self._on_ready()

    def _push_events(self, w: Watcher, events: list[Event], revision: int) -> bool:
        if self._events_buffered >= CHAN_BUF_LEN:
            return False
        if w.prev_kv:
            events = [self._with_prev(ev) for ev in events]
        self._events_buffered += 1
        w.got_events = True
        self._push(
            WatchResponse(header=ResponseHeader(revision=revision), watch_id=w.id, events=events)
        )
        return True

    def _push_compacted(self, w: Watcher, compact_rev: int) -> bool:
        if self._events_buffered >= CHAN_BUF_LEN:
            return False
        self._events_buffered += 1
        self._push(
            WatchResponse(
                header=ResponseHeader(), watch_id=w.id, canceled=True, compact_revision=compact_rev
            )
        )
        return True

    def _with_prev(self, ev: Event) -> Event:
        kv = ev.kv
        if ev.type == EventType.PUT and kv.create_revision == kv.mod_revision:
            return ev  # a create has no previous kv
        prev = self._hub._s._kv_at(kv.key, kv.mod_revision - 1)
        return Event(ev.type, kv, prev)
