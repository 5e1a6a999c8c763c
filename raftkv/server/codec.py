"""The proposal envelope's wire form, with a fast path for the hot request (a plain put).

``raftkv.pb.encode/decode`` walk the field tables generically; a put is by far the most common
proposal, so it is packed directly as ``[ID, [key, value, lease, prev_kv, ignore_value,
ignore_lease]]`` — a prefix of the generic form (trailing unset fields omitted), which the
generic decoder reads as well. Everything else, and a put with a caller (auth enabled),
uses the generic codec.
"""

from __future__ import annotations

import msgpack

from raftkv.pb import from_wire, to_wire
from raftkv.pb.rpc import InternalRaftRequest, PutRequest

__all__ = ["decode_request", "encode_request"]

_packb = msgpack.packb
_unpackb = msgpack.unpackb


def encode_request(r: InternalRaftRequest) -> bytes:
    p = r.put
    if (
        p is not None
        and r.delete_range is None
        and r.txn is None
        and r.compaction is None
        and r.lease_grant is None
        and r.lease_revoke is None
        and r.lease_checkpoint is None
        and r.alarm is None
        and r.member_attributes is None
        and r.header is None  # (the auth requests are never set beside a put)
    ):
        return _packb(
            [r.ID, [p.key, p.value, p.lease, p.prev_kv, p.ignore_value, p.ignore_lease]],
            use_bin_type=True,
        )
    return _packb(to_wire(r), use_bin_type=True)


def decode_request(data: bytes) -> InternalRaftRequest:
    w = _unpackb(data, raw=False, strict_map_key=False)
    if len(w) == 2 and w[1] is not None:
        return InternalRaftRequest(ID=w[0], put=PutRequest(*w[1]))
    return from_wire(InternalRaftRequest, w)
