"""Small shared helpers: entry sizes and size-limited slicing.

Two sizes exist, as in etcd-io/raft: the *payload* size (bytes of ``data``; used for the
inflight-bytes window and the uncommitted-size limit) and the *encoded* size (payload plus a
fixed per-entry overhead; used to bound messages and committed-entry batches, so that even empty
entries count toward a limit).
"""

from __future__ import annotations

from collections.abc import Sequence

from raftkv.raft.messages import Entry

__all__ = ["ENTRY_OVERHEAD", "NO_LIMIT", "ents_size", "limit_size", "payload_size", "payloads_size"]

NO_LIMIT = 1 << 62
ENTRY_OVERHEAD = 12  # term + index + type, roughly as they encode on the wire


def payload_size(e: Entry) -> int:
    return len(e.data)


def payloads_size(ents: Sequence[Entry]) -> int:
    return sum(len(e.data) for e in ents)


def ents_size(ents: Sequence[Entry]) -> int:
    return sum(len(e.data) for e in ents) + ENTRY_OVERHEAD * len(ents)


def limit_size(ents: list[Entry], max_size: int) -> list[Entry]:
    """The longest prefix of ``ents`` whose encoded size is <= ``max_size``, but never fewer than
    one entry (a single oversized entry still has to travel)."""
    if not ents:
        return ents
    size = len(ents[0].data) + ENTRY_OVERHEAD
    n = 1
    while n < len(ents):
        size += len(ents[n].data) + ENTRY_OVERHEAD
        if size > max_size:
            break
        n += 1
    return ents if n == len(ents) else ents[:n]
