"""Read and write transactions over the store (etcd's mvcc/kvstore_txn.go).

A read txn sees the store at its current revision. A write txn sees the store plus its own
changes: all of them take main revision ``begin + 1`` (sub revisions 0, 1, ...), and ``end()``
bumps the store's revision once -- only if something changed -- and hands the changes to the
watchers. One write txn at a time (the applier is single-threaded).

Revisions reported (etcd's exact rules, which the request layer builds responses from):
- ``range``: the txn's view revision (``begin``, or ``begin + 1`` once it has changes);
- ``put``: ``begin + 1``;
- ``delete_range``: ``begin + 1`` if it deleted something or the txn already changed something,
  else ``begin``.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import msgpack

from raftkv import errors
from raftkv.mvcc.key_index import RevisionNotFoundError
from raftkv.mvcc.revision import main_of, pack, rev_to_bytes
from raftkv.pb.kv import KeyValue

if TYPE_CHECKING:
    from raftkv.mvcc.kvstore import KVStore

__all__ = ["ReadTxn", "WriteTxn", "decode_kv", "encode_kv"]

KEY_BUCKET = b"key"
_packb = msgpack.packb
_unpackb = msgpack.unpackb


def encode_kv(kv: KeyValue) -> bytes:
    """``raftkv.pb.encode(kv)``, byte for byte, without the generic walk (hot path)."""
    return _packb(
        [kv.key, kv.create_revision, kv.mod_revision, kv.version, kv.value, kv.lease],
        use_bin_type=True,
    )


def decode_kv(data: bytes) -> KeyValue:
    """``raftkv.pb.decode(KeyValue, data)`` for values this module wrote."""
    return KeyValue(*_unpackb(data))


class ReadTxn:
    """A read view at the store's current revision."""

    __slots__ = ("first_rev", "rev", "s")

    def __init__(self, s: KVStore) -> None:
        self.s = s
        self.rev = s.current_revision
        self.first_rev = s.compact_revision

    @property
    def changes(self) -> tuple[()]:
        return ()

    def view_rev(self) -> int:
        return self.rev

    def range(
        self,
        key: bytes,
        end: bytes | None,
        limit: int = 0,
        at_rev: int = 0,
        count_only: bool = False,
    ) -> tuple[list[KeyValue], int, int]:
        return self.s._range_keys(key, end, self.rev, limit, at_rev, count_only)

    def end(self) -> None:
        pass


class WriteTxn:
    """The one open write transaction; ``changes`` are the KeyValues written (deletes have
    create_revision 0 and mod_revision set)."""

    __slots__ = ("begin_rev", "changes", "s")

    def __init__(self, s: KVStore) -> None:
        self.s = s
        self.begin_rev = s.current_revision
        self.changes: list[KeyValue] = []

    @property
    def rev(self) -> int:
        return self.begin_rev

    def view_rev(self) -> int:
        return self.begin_rev + 1 if self.changes else self.begin_rev

    def range(
        self,
        key: bytes,
        end: bytes | None,
        limit: int = 0,
        at_rev: int = 0,
        count_only: bool = False,
    ) -> tuple[list[KeyValue], int, int]:
        return self.s._range_keys(key, end, self.view_rev(), limit, at_rev, count_only)

    def put(self, key: bytes, value: bytes, lease: int) -> int:
        s = self.s
        rev = self.begin_rev + 1
        changes = self.changes
        sub = len(changes)
        created = rev
        ver = 0
        old_lease = 0
        ki = s._index.key_index(key)
        if ki is not None:
            try:
                _, c, ver = ki.get(rev)
                created = main_of(c)
                old_lease = s._lessor.get_lease(key)
            except RevisionNotFoundError:
                ver = 0
        kv = KeyValue(key, created, rev, ver + 1, value, lease)
        s._b.put(KEY_BUCKET, rev_to_bytes(rev, sub), encode_kv(kv))
        if ki is not None:
            ki.put(pack(rev, sub))
        else:
            s._index.put(key, pack(rev, sub))
        changes.append(kv)
        lessor = s._lessor
        if old_lease:
            with contextlib.suppress(errors.EtcdError):
                lessor.detach(old_lease, key)
        if lease:
            lessor.attach(lease, key)
        return rev

    def delete_range(self, key: bytes, end: bytes | None) -> tuple[int, int]:
        """(number deleted, revision to report)."""
        n = self._delete_range(key, end)
        if n or self.changes:
            return n, self.begin_rev + 1
        return 0, self.begin_rev

    def _delete_range(self, key: bytes, end: bytes | None) -> int:
        pairs = self.s._index.revisions(key, end, self.view_rev())
        for k, _ in pairs:
            self._delete(k)
        return len(pairs)

    def _delete(self, key: bytes) -> None:
        s = self.s
        rev = self.begin_rev + 1
        sub = len(self.changes)
        s._b.put(KEY_BUCKET, rev_to_bytes(rev, sub, tombstone=True), encode_kv(KeyValue(key)))
        s._index.tombstone(key, pack(rev, sub))
        self.changes.append(KeyValue(key, 0, rev))
        lease = s._lessor.get_lease(key)
        if lease:
            with contextlib.suppress(errors.EtcdError):
                s._lessor.detach(lease, key)

    def end(self) -> None:
        self.s._end_write(self)
