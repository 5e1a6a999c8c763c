"""Human-readable one-line descriptions of messages, entries, Ready batches and Status, for
logs and for the golden-file scenario tests (after etcd-io/raft's util.go ``Describe*``).

    1->2 APP Term:2 Log:1/3 Commit:3 Entries:[2/4 NORMAL "x"]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from raftkv.raft.messages import (
    ConfChange,
    Entry,
    EntryType,
    HardState,
    Message,
    Snapshot,
    decode_conf_change,
)

if TYPE_CHECKING:
    from raftkv.raft.rawnode import Ready

__all__ = [
    "describe_entries",
    "describe_entry",
    "describe_hard_state",
    "describe_message",
    "describe_ready",
    "describe_snapshot",
]


def _data(e: Entry) -> str:
    if e.type == EntryType.CONF_CHANGE:
        cc: ConfChange = decode_conf_change(e.data)
        return f"{cc.type.name} {cc.node_id}"
    return repr(e.data.decode("utf-8", "replace")).replace("'", '"') if e.data else ""


def describe_entry(e: Entry) -> str:
    d = _data(e)
    return f"{e.term}/{e.index} {e.type.name}" + (f" {d}" if d else "")


def describe_entries(ents: list[Entry] | tuple[Entry, ...]) -> str:
    return "[" + ", ".join(describe_entry(e) for e in ents) + "]"


def describe_hard_state(hs: HardState) -> str:
    return f"Term:{hs.term} Vote:{hs.vote} Commit:{hs.commit}"


def describe_snapshot(s: Snapshot) -> str:
    m = s.metadata
    cs = m.conf_state
    learners = f" Learners:{list(cs.learners)}" if cs.learners else ""
    return f"Index:{m.index} Term:{m.term} Voters:{list(cs.voters)}{learners}"


def describe_message(m: Message) -> str:
    parts = [f"{m.from_}->{m.to} {m.type.name} Term:{m.term}"]
    if m.log_term or m.index:
        parts.append(f"Log:{m.log_term}/{m.index}")
    if m.commit:
        parts.append(f"Commit:{m.commit}")
    if m.reject:
        parts.append(f"Rejected (Hint: {m.reject_hint})")
    if m.entries:
        parts.append(f"Entries:{describe_entries(m.entries)}")
    if m.snapshot is not None:
        parts.append(f"Snapshot: {describe_snapshot(m.snapshot)}")
    if m.context:
        parts.append(f"Context:{m.context.decode('utf-8', 'replace')}")
    return " ".join(parts)


def describe_ready(rd: Ready) -> str:
    """Multi-line description of a ``Ready`` (only the parts that are set)."""
    lines: list[str] = []
    ss = rd.soft_state
    if ss is not None:
        lines.append(f"Lead:{ss.lead} State:{ss.raft_state.name}")
    if rd.hard_state is not None:
        lines.append("HardState " + describe_hard_state(rd.hard_state))
    if rd.read_states:
        rs = ", ".join(
            f"{r.index}:{r.request_ctx.decode('utf-8', 'replace')}" for r in rd.read_states
        )
        lines.append(f"ReadStates [{rs}]")
    if rd.entries:
        lines.append("Entries:")
        lines.extend("  " + describe_entry(e) for e in rd.entries)
    if rd.snapshot is not None:
        lines.append("Snapshot " + describe_snapshot(rd.snapshot))
    if rd.committed_entries:
        lines.append("CommittedEntries:")
        lines.extend("  " + describe_entry(e) for e in rd.committed_entries)
    if rd.messages:
        lines.append("Messages:")
        lines.extend("  " + describe_message(m) for m in rd.messages)
    if rd.messages_after_append:
        lines.append("MessagesAfterAppend:")
        lines.extend("  " + describe_message(m) for m in rd.messages_after_append)
    if rd.must_sync:
        lines.append("MustSync")
    return "\n".join(lines) if lines else "<empty Ready>"
