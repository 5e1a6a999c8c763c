"""MVCC: revisions, the key index, the KV store (range/put/delete/txn/compact), watch, hashes.

Modules (etcd's mvcc/ names): ``revision`` (packing, 17-byte keys), ``key_index`` (a key's
generations), ``index`` (the sorted in-memory index), ``kvstore_txn`` (read/write txns),
``validate`` (the request checks, shared with the client API), ``requests`` (etcd's
request semantics), ``kvstore`` (the store), ``watcher_group``
and ``watchable_store`` (watchers, groups, streams).

The server's view (all synchronous, driven from its event loop)::

    kv = KVStore(backend, lessor)        # rebuilds the index; resumes an unfinished compaction
    kv.current_revision, kv.compact_revision
    kv.range(RangeRequest) / put / delete_range / txn / lease_revoke(id)   -> *Response
    kv.compact(rev) -> CompactionResponse; kv.compact_step(batch) -> more?; kv.compaction_pending
    kv.hash() -> int; kv.hash_kv(rev) -> (hash, compact_revision, current_revision)
    kv.new_watch_stream(on_ready) -> WatchStream; kv.sync_watchers() -> more?
    kv.restore(backend=None, now=None)   # after a snapshot's db was swapped in
    ws.create(WatchCreateRequest) -> id | -1; ws.cancel(id) -> bool; ws.request_progress();
    ws.progress_notify(); ws.drain() -> [WatchResponse]; ws.close()

Errors are ``raftkv.errors`` instances (ErrCompacted, ErrFutureRev, ErrKeyNotFound, ...).
"""

from raftkv.mvcc.kvstore import KVStore, PreparedIndex, prepare_index
from raftkv.mvcc.requests import mk_gte_range
from raftkv.mvcc.validate import (
    check_delete_request,
    check_put_request,
    check_range_request,
    check_txn_request,
    is_txn_readonly,
)
from raftkv.mvcc.watchable_store import WatchStream

__all__ = [
    "KVStore",
    "PreparedIndex",
    "WatchStream",
    "check_delete_request",
    "check_put_request",
    "check_range_request",
    "check_txn_request",
    "is_txn_readonly",
    "mk_gte_range",
    "prepare_index",
]
