"""Watch streams: etcd 3.4's responses, in order, and the catch-up machinery."""

from raftkv.mvcc.watchable_store import CHAN_BUF_LEN
from raftkv.pb.kv import EventType, KeyValue
from raftkv.pb.rpc import FilterType, TxnRequest
from tests.mvcc.helpers import delete, op_put, put, watch


class Stream:
    def __init__(self, store):
        self.ready = 0
        self.ws = store.new_watch_stream(self._on_ready)

    def _on_ready(self):
        self.ready += 1

    def drain(self):
        return self.ws.drain()


def events(resps):
    return [(ev.type, ev.kv.key, ev.kv.mod_revision) for r in resps for ev in r.events]


def test_created_then_live_events_grouped_by_revision(env):
    s = env.store
    st = Stream(s)
    wid = st.ws.create(watch(b"a", b"\x00"))
    assert wid == 0 and st.ready == 1
    (created,) = st.drain()
    assert created.created and created.watch_id == 0 and created.header.revision == 1
    s.txn(TxnRequest(success=[op_put(b"a"), op_put(b"b"), op_put(b"zz")]))
    s.delete_range(delete(b"a", b"c"))
    s.put(put(b"0-not-watched"))
    r1, r2 = st.drain()
    assert r1.header.revision == 2 and events([r1]) == [
        (EventType.PUT, b"a", 2),
        (EventType.PUT, b"b", 2),
        (EventType.PUT, b"zz", 2),
    ]
    assert r2.header.revision == 3
    assert (
        r2.events[0].kv == KeyValue(b"a", mod_revision=3) and r2.events[0].type == EventType.DELETE
    )
    assert st.drain() == []


def test_auto_ids_client_ids_and_duplicates(env):
    st = Stream(env.store)
    assert st.ws.create(watch(b"a")) == 0
    assert st.ws.create(watch(b"a", watch_id=1)) == 1
    assert st.ws.create(watch(b"a")) == 2  # auto ids skip taken ones
    assert st.ws.create(watch(b"a", watch_id=1)) == -1
    dup = st.drain()[-1]
    assert (dup.watch_id, dup.created, dup.canceled) == (-1, True, True)
    assert dup.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
    assert st.ws.create(watch(b"b", b"a")) == -1
    assert st.drain()[-1].cancel_reason == "mvcc: watcher range is empty"


def test_cancel_answers_once_and_stops_events(env):
    s = env.store
    st = Stream(s)
    wid = st.ws.create(watch(b"a"))
    st.drain()
    assert st.ws.cancel(wid)
    (c,) = st.drain()
    assert c.canceled and c.watch_id == wid and c.header.revision == 1
    assert not st.ws.cancel(wid)
    s.put(put(b"a"))
    assert st.drain() == []


def test_progress_request_answers_with_watch_id_minus_one(env):
    s = env.store
    s.put(put(b"x"))
    st = Stream(s)
    st.ws.request_progress()
    (p,) = st.drain()
    assert p.watch_id == -1 and p.header.revision == 2 and not p.events


def test_history_replay_from_a_past_revision(env):
    s = env.store
    for i in range(5):
        s.put(put(b"a", b"%d" % i))  # 2..6
    s.delete_range(delete(b"a"))  # 7
    st = Stream(s)
    st.ws.create(watch(b"a", start_revision=4, prev_kv=True))
    assert len(st.drain()) == 1  # created; history comes with the next sync
    assert not s.sync_watchers()
    (r,) = st.drain()
    assert r.header.revision == 7
    assert events([r]) == [
        (EventType.PUT, b"a", 4),
        (EventType.PUT, b"a", 5),
        (EventType.PUT, b"a", 6),
        (EventType.DELETE, b"a", 7),
    ]
    assert [ev.prev_kv.mod_revision for ev in r.events] == [3, 4, 5, 6]
    s.put(put(b"a"))  # now synced: live
    assert events(st.drain()) == [(EventType.PUT, b"a", 8)]
    assert st.drain()[0:0] == []


def test_create_event_has_no_prev_kv(env):
    s = env.store
    st = Stream(s)
    st.ws.create(watch(b"a", prev_kv=True))
    s.put(put(b"a", b"1"))
    s.put(put(b"a", b"2"))
    resps = st.drain()[1:]
    assert resps[0].events[0].prev_kv is None
    assert resps[1].events[0].prev_kv.value == b"1"


def test_filters_drop_event_kinds_and_empty_responses(env):
    s = env.store
    st = Stream(s)
    st.ws.create(watch(b"a", filters=[FilterType.NOPUT]))
    st.drain()
    s.put(put(b"a"))
    assert st.drain() == []
    s.delete_range(delete(b"a"))
    assert events(st.drain()) == [(EventType.DELETE, b"a", 3)]


def test_start_below_compaction_is_created_then_canceled_with_compact_revision(env):
    s = env.store
    for _ in range(5):
        s.put(put(b"a"))
    s.compact(4)
    st = Stream(s)
    st.ws.create(watch(b"a", start_revision=2))
    s.sync_watchers()
    created, canceled = st.drain()
    assert created.created and not created.canceled
    assert canceled.canceled and canceled.compact_revision == 4
    assert canceled.header.revision == 0  # etcd sends no revision here
    s.put(put(b"a"))
    assert st.drain() == []


def test_future_start_revision_waits(env):
    s = env.store
    st = Stream(s)
    st.ws.create(watch(b"a", start_revision=4))
    st.drain()
    s.put(put(b"a"))  # 2
    s.put(put(b"a"))  # 3
    assert st.drain() == []
    s.put(put(b"a"))  # 4
    assert events(st.drain()) == [(EventType.PUT, b"a", 4)]


def test_slow_stream_becomes_victim_and_catches_up_in_order(env):
    s = env.store
    st = Stream(s)
    st.ws.create(watch(b"k", b"l"))
    fast = Stream(s)
    fast.ws.create(watch(b"k", b"l"))
    n = CHAN_BUF_LEN + 50
    for i in range(n):
        s.put(put(b"k%d" % (i % 7)))
        fast.drain()
    first = st.drain()
    assert len(first) == 1 + CHAN_BUF_LEN
    got = events(first)
    while True:
        more = s.sync_watchers()
        got += events(st.drain())
        if not more:
            break
    got += events(st.drain())
    assert [rev for _, _, rev in got] == list(range(2, n + 2))
    s.put(put(b"k1"))
    assert events(st.drain()) == [(EventType.PUT, b"k1", n + 2)]


def test_many_unsynced_revisions_are_sent_in_bounded_batches(env):
    s = env.store
    for i in range(2500):
        s.put(put(b"a", b"%d" % i))
    st = Stream(s)
    st.ws.create(watch(b"a", start_revision=2))
    st.drain()
    got = []
    rounds = 0
    while s.sync_watchers():
        rounds += 1
        got += events(st.drain())
    got += events(st.drain())
    assert rounds >= 2
    assert [rev for _, _, rev in got] == list(range(2, 2502))


def test_close_cancels_everything_silently(env):
    s = env.store
    st = Stream(s)
    st.ws.create(watch(b"a"))
    st.ws.create(watch(b"b", start_revision=1))
    st.ws.close()
    s.put(put(b"a"))
    s.sync_watchers()
    assert st.drain() == []


def test_progress_notify_goes_to_idle_synced_watchers(env):
    s = env.store
    st = Stream(s)
    st.ws.create(watch(b"a", progress_notify=True))
    st.ws.create(watch(b"b"))
    st.drain()
    st.ws.progress_notify()
    (p,) = st.drain()
    assert p.watch_id == 0 and p.header.revision == 1 and not p.events
    s.put(put(b"a"))
    st.drain()
    st.ws.progress_notify()  # events since the last tick: elided
    assert st.drain() == []


def test_restore_moves_synced_watchers_to_catch_up(env, tmp_path):
    s = env.store
    st = Stream(s)
    st.ws.create(watch(b"a"))
    st.drain()
    s.put(put(b"a", b"1"))
    st.drain()
    # the "snapshot": another store's db with more history
    from tests.mvcc.helpers import Env

    other = Env(str(tmp_path / "other"))
    for i in range(4):
        other.store.put(put(b"a", b"%d" % i))  # 2..5
    other.close()
    from raftkv.backend import Backend

    s.restore(Backend.open(other.path))
    assert s.current_revision == 5
    while s.sync_watchers():
        pass
    assert events(st.drain()) == [(EventType.PUT, b"a", r) for r in (3, 4, 5)]


def test_negative_start_revision_behaves_like_etcd(env):
    # what etcd 3.4 answered: min_rev -1 is not below the compacted revision -1, but its
    # history read starts at uint64(-1) and finds nothing -- for every watcher synced in the
    # same round (here one from revision 1); -2 is below -1: canceled, compact_revision -1
    s = env.store
    s.put(put(b"a"))
    st = Stream(s)
    st.ws.create(watch(b"a", start_revision=1))
    st.ws.create(watch(b"a", start_revision=-1))
    st.ws.create(watch(b"a", start_revision=-2))
    s.sync_watchers()
    resps = st.drain()
    assert [r.created for r in resps[:3]] == [True, True, True]
    (canceled,) = resps[3:]
    assert canceled.watch_id == 2 and canceled.canceled and canceled.compact_revision == -1
    s.put(put(b"a"))  # both go on from the current revision
    assert sorted((r.watch_id, events([r])[0]) for r in st.drain()) == [
        (0, (EventType.PUT, b"a", 3)),
        (1, (EventType.PUT, b"a", 3)),
    ]


def test_a_stream_that_never_drains_does_not_keep_sync_busy(env):
    s = env.store
    for i in range(CHAN_BUF_LEN + 10):
        s.put(put(b"k%d" % i))
    stuck = Stream(s)
    for i in range(CHAN_BUF_LEN + 10):  # one history response each: more than its buffer
        stuck.ws.create(watch(b"k%d" % i, start_revision=2))
    rounds = 0
    while s.sync_watchers():
        rounds += 1
        assert rounds < 10
    assert not s.sync_watchers()
    got = stuck.drain()  # drained: the victims are offered again
    while s.sync_watchers():
        got += stuck.drain()
    got += stuck.drain()
    assert len(events(got)) == CHAN_BUF_LEN + 10


def test_headers_never_go_back_when_a_partial_batch_waits_as_victim(env):
    s = env.store
    for i in range(2500):
        s.put(put(b"a", b"%d" % i))  # revisions 2..2501
    st = Stream(s)
    wid = st.ws.create(watch(b"a", start_revision=2))
    assert s.sync_watchers()  # first 1000 revisions, header 2501
    for _ in range(CHAN_BUF_LEN - 1):
        st.ws.create(watch(b"b"))
    s.put(put(b"b"))  # fills the stream's buffer
    s.sync_watchers()  # a's next batch cannot be sent: it waits as a victim
    got = st.drain()
    while True:
        more = s.sync_watchers()
        got += st.drain()
        if not more:
            break
    mine = [r for r in got if r.watch_id == wid and r.events]
    headers = [r.header.revision for r in mine]
    assert headers == sorted(headers)
    assert [ev.kv.mod_revision for r in mine for ev in r.events] == list(range(2, 2502))
