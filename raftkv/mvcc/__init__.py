"""MVCC: revisions, the key index, the KV store (range/put/delete/txn/compact), watch, hashes.

See ``kvstore`` for the store and its backend layout, ``key_index`` for generations,
``watchable_store`` for watch streams, ``apply`` for etcd's request semantics.
"""

from raftkv.mvcc.apply import (
    check_delete_request,
    check_put_request,
    check_range_request,
    check_txn_request,
    is_txn_readonly,
    mk_gte_range,
)
from raftkv.mvcc.kvstore import KVStore
from raftkv.mvcc.watchable_store import WatchStream

__all__ = [
    "KVStore",
    "WatchStream",
    "check_delete_request",
    "check_put_request",
    "check_range_request",
    "check_txn_request",
    "is_txn_readonly",
    "mk_gte_range",
]
