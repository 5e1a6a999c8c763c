"""Open a store on a real backend file, and small request builders."""

from __future__ import annotations

import os

from raftkv.backend import Backend
from raftkv.lease import Lessor
from raftkv.mvcc import KVStore
from raftkv.pb.rpc import (
    DeleteRangeRequest,
    PutRequest,
    RangeRequest,
    RequestOp,
    WatchCreateRequest,
)


class Env:
    """A backend file + lessor + store; ``reopen()`` closes and opens them again."""

    def __init__(self, path: str, min_ttl: int = 2) -> None:
        os.makedirs(path, exist_ok=True)
        self.path = os.path.join(path, "db")
        self.min_ttl = min_ttl
        self._open()

    def _open(self) -> None:
        self.backend = Backend.open(self.path, batch_limit=1_000_000)
        self.lessor = Lessor(self.backend, min_ttl=self.min_ttl)
        self.store = KVStore(self.backend, self.lessor)

    def reopen(self) -> KVStore:
        self.backend.close()
        self._open()
        return self.store

    def close(self) -> None:
        self.backend.close()


def put(key: bytes, value: bytes = b"", **kw) -> PutRequest:
    return PutRequest(key=key, value=value, **kw)


def get(key: bytes, range_end: bytes = b"", **kw) -> RangeRequest:
    return RangeRequest(key=key, range_end=range_end, **kw)


def delete(key: bytes, range_end: bytes = b"", **kw) -> DeleteRangeRequest:
    return DeleteRangeRequest(key=key, range_end=range_end, **kw)


def op_put(key: bytes, value: bytes = b"", **kw) -> RequestOp:
    return RequestOp(request_put=put(key, value, **kw))


def op_get(key: bytes, range_end: bytes = b"", **kw) -> RequestOp:
    return RequestOp(request_range=get(key, range_end, **kw))


def op_del(key: bytes, range_end: bytes = b"", **kw) -> RequestOp:
    return RequestOp(request_delete_range=delete(key, range_end, **kw))


def watch(key: bytes, range_end: bytes = b"", **kw) -> WatchCreateRequest:
    return WatchCreateRequest(key=key, range_end=range_end, **kw)
