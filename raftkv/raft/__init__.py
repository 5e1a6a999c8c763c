"""Sans-I/O Raft: the consensus core, modelled on etcd-io/raft.

No asyncio, sockets, files or clocks in this package: time enters only as ``tick()``, and
everything the caller must do comes out of ``Ready`` batches (see ``rawnode`` for the driver
loop). Modules, each tested alone:

- ``messages``: entries, hard state, snapshots, messages and their msgpack codec (shared).
- ``storage``: MemoryStorage, the durable log as Raft reads it.
- ``log_unstable`` / ``log``: the unpersisted tail, and the whole log over both.
- ``quorum`` / ``tracker``: majority math; per-follower Progress and Inflights.
- ``read_only``: ReadIndex bookkeeping.
- ``raft`` / ``roles``: the state machine (shared prologue + step_leader / step_candidate /
  step_follower).
- ``rawnode``: RawNode and Ready, the public API.
- ``describe``: one-line descriptions of messages, entries and Readies (logs, golden tests).
"""

from raftkv.raft.describe import describe_entry, describe_message, describe_ready
from raftkv.raft.errors import (
    CompactedError,
    ProposalDroppedError,
    RaftError,
    SnapshotOutOfDateError,
    SnapshotTemporarilyUnavailableError,
    StepLocalMessageError,
    UnavailableError,
)
from raftkv.raft.messages import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    decode_conf_change,
    encode_conf_change,
)
from raftkv.raft.raft import Config
from raftkv.raft.rawnode import RawNode, Ready, SoftState, Status
from raftkv.raft.read_only import ReadState
from raftkv.raft.state import NONE, StateType
from raftkv.raft.storage import MemoryStorage
from raftkv.raft.tracker import ProgressState, ProgressStatus

__all__ = [
    "NONE",
    "CompactedError",
    "ConfChange",
    "ConfChangeType",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "ProgressState",
    "ProgressStatus",
    "ProposalDroppedError",
    "RaftError",
    "RawNode",
    "ReadState",
    "Ready",
    "Snapshot",
    "SnapshotMetadata",
    "SnapshotOutOfDateError",
    "SnapshotTemporarilyUnavailableError",
    "SoftState",
    "StateType",
    "Status",
    "StepLocalMessageError",
    "UnavailableError",
    "decode_conf_change",
    "describe_entry",
    "describe_message",
    "describe_ready",
    "encode_conf_change",
]
