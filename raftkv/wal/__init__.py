"""Segmented write-ahead log (etcd's server/wal): durable Raft entries and hard state.

Modules: ``record`` (frame layout, record types, CRC chain), ``encoder`` / ``decoder`` (pure
byte codecs), ``segments`` (names, listing, scanning in order), ``repair`` (torn-tail
truncation), ``file_pipeline`` (background preallocation),
``wal`` (the files: create, open, read_all, save, cut, release).
"""

from raftkv.wal.record import WalSnapshot
from raftkv.wal.wal import WAL, WalCorruptError, WalError

__all__ = ["WAL", "WalCorruptError", "WalError", "WalSnapshot"]
