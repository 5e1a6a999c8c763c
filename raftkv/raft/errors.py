"""The errors the Raft core raises at its public boundary.

Storage errors (``CompactedError``, ``UnavailableError``, ``SnapshotOutOfDateError``,
``SnapshotTemporarilyUnavailableError``) are part of the Storage contract and are also caught
inside the core. ``ProposalDroppedError`` tells a caller that its proposal (or read request)
was not accepted and why; it is safe to retry later. Everything else that goes wrong inside the
core is a broken invariant and surfaces as ``AssertionError`` at once.
"""

from __future__ import annotations

__all__ = [
    "CompactedError",
    "ProposalDroppedError",
    "RaftError",
    "SnapshotOutOfDateError",
    "SnapshotTemporarilyUnavailableError",
    "StepLocalMessageError",
    "UnavailableError",
]


class RaftError(Exception):
    """Base class of every error raised on purpose by raftkv.raft."""


class CompactedError(RaftError):
    """The requested index is older than the storage's first index (compacted away)."""

    def __init__(self, message: str = "requested index is unavailable due to compaction") -> None:
        super().__init__(message)


class UnavailableError(RaftError):
    """The requested entry is past the storage's last index."""

    def __init__(self, message: str = "requested entry at index is unavailable") -> None:
        super().__init__(message)


class SnapshotOutOfDateError(RaftError):
    """The snapshot is older than the one the storage already holds."""

    def __init__(
        self, message: str = "requested index is older than the existing snapshot"
    ) -> None:
        super().__init__(message)


class SnapshotTemporarilyUnavailableError(RaftError):
    """The storage cannot produce a snapshot right now; the leader retries later."""

    def __init__(self, message: str = "snapshot is temporarily unavailable") -> None:
        super().__init__(message)


class ProposalDroppedError(RaftError):
    """A proposal or read request was not accepted; the message says why."""


class StepLocalMessageError(RaftError):
    """A message type that only the node itself may generate was received from a peer."""
