"""Raft's data types — entries, hard state, snapshots, messages — and their msgpack codec.

These are the values that cross every boundary of the consensus layer: the core produces and
consumes them, the WAL and snapshot files persist them, the peer transport ships them. They are
frozen dataclasses with slots (immutable, cheap, hashable) mirroring etcd-io/raft's raftpb.

Wire form: every type encodes to a msgpack array of its fields in declaration order (nested
types as nested arrays, ``None`` for an absent snapshot). Appending a field at the end with a
default keeps old encodings decodable; fields are never reordered or removed.

Invariants:
- ``Entry.index >= 1`` for every real entry; index 0 / term 0 is the empty log's sentinel.
- ``HardState.commit`` never exceeds the last index of the log it was saved with.
- A ``Message`` carries ``entries`` only for APP / PROP / READ_INDEX(_RESP) and a ``snapshot``
  only for SNAP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import msgpack

__all__ = [
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Entry",
    "EntryType",
    "HardState",
    "Message",
    "MessageType",
    "Snapshot",
    "SnapshotMetadata",
    "decode_conf_change",
    "decode_entry",
    "decode_hard_state",
    "decode_message",
    "decode_snapshot",
    "encode_conf_change",
    "encode_entry",
    "encode_hard_state",
    "encode_message",
    "encode_snapshot",
]


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class MessageType(IntEnum):
    """etcd-io/raft's message types; the numbers are part of the wire format."""

    HUP = 0  # local: start an election
    BEAT = 1  # local: leader sends heartbeats
    PROP = 2  # proposal (local, or forwarded from a follower to the leader)
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10  # local: the transport could not reach ``from_``
    SNAP_STATUS = 11  # local: outcome of a snapshot send (``reject`` = failed)
    CHECK_QUORUM = 12  # local
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18
    STORAGE_APPEND_RESP = 19  # local: entries/hard state up to (index, log_term) are durable
    STORAGE_APPLY_RESP = 20  # local: committed entries up to ``index`` were applied


class ConfChangeType(IntEnum):
    """etcd's ConfChangeType. Promoting a learner is ADD_NODE for an existing learner."""

    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class HardState:
    term: int = 0
    vote: int = 0
    commit: int = 0

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == 0 and self.commit == 0


@dataclass(frozen=True, slots=True)
class ConfState:
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SnapshotMetadata:
    conf_state: ConfState = field(default_factory=ConfState)
    index: int = 0
    term: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A Raft snapshot. ``data`` is opaque to Raft (the server puts its own descriptor there;
    the backend db image travels beside the message, not inside it)."""

    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)
    data: bytes = b""

    def is_empty(self) -> bool:
        return self.metadata.index == 0


@dataclass(frozen=True, slots=True)
class ConfChange:
    type: ConfChangeType
    node_id: int
    context: bytes = b""
    id: int = 0


@dataclass(frozen=True, slots=True)
class Message:
    type: MessageType
    to: int
    from_: int
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] = ()
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


# --- wire (list) forms -------------------------------------------------------------------------


def _entry_to_wire(e: Entry) -> list[Any]:
    return [e.term, e.index, int(e.type), e.data]


_ENTRY_TYPES = tuple(EntryType)  # index by value: avoids the slow IntEnum call per decoded entry


def _entry_from_wire(w: Sequence[Any]) -> Entry:
    return Entry(w[0], w[1], _ENTRY_TYPES[w[2]], w[3])


def _snapshot_to_wire(s: Snapshot) -> list[Any]:
    m = s.metadata
    return [[list(m.conf_state.voters), list(m.conf_state.learners)], m.index, m.term, s.data]


def _snapshot_from_wire(w: Sequence[Any]) -> Snapshot:
    cs = ConfState(tuple(w[0][0]), tuple(w[0][1]))
    return Snapshot(SnapshotMetadata(cs, w[1], w[2]), w[3])


def _message_to_wire(m: Message) -> list[Any]:
    return [
        int(m.type),
        m.to,
        m.from_,
        m.term,
        m.log_term,
        m.index,
        [_entry_to_wire(e) for e in m.entries],
        m.commit,
        None if m.snapshot is None else _snapshot_to_wire(m.snapshot),
        m.reject,
        m.reject_hint,
        m.context,
    ]


def _message_from_wire(w: Sequence[Any]) -> Message:
    return Message(
        type=MessageType(w[0]),
        to=w[1],
        from_=w[2],
        term=w[3],
        log_term=w[4],
        index=w[5],
        entries=tuple([_entry_from_wire(e) for e in w[6]]),
        commit=w[7],
        snapshot=None if w[8] is None else _snapshot_from_wire(w[8]),
        reject=w[9],
        reject_hint=w[10],
        context=w[11],
    )


# --- bytes codecs ------------------------------------------------------------------------------


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def _unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)


def encode_entry(e: Entry) -> bytes:
    return _pack(_entry_to_wire(e))


def decode_entry(data: bytes) -> Entry:
    return _entry_from_wire(_unpack(data))


def encode_hard_state(hs: HardState) -> bytes:
    return _pack([hs.term, hs.vote, hs.commit])


def decode_hard_state(data: bytes) -> HardState:
    w = _unpack(data)
    return HardState(w[0], w[1], w[2])


def encode_snapshot(s: Snapshot) -> bytes:
    return _pack(_snapshot_to_wire(s))


def decode_snapshot(data: bytes) -> Snapshot:
    return _snapshot_from_wire(_unpack(data))


def encode_conf_change(cc: ConfChange) -> bytes:
    return _pack([int(cc.type), cc.node_id, cc.context, cc.id])


def decode_conf_change(data: bytes) -> ConfChange:
    w = _unpack(data)
    return ConfChange(ConfChangeType(w[0]), w[1], w[2], w[3])


def encode_message(m: Message) -> bytes:
    return _pack(_message_to_wire(m))


def decode_message(data: bytes) -> Message:
    return _message_from_wire(_unpack(data))
