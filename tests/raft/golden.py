"""A golden-file scenario runner (after etcd-io/raft's rafttest interaction tests).

A scenario file is a list of blocks::

    # comments and blank lines between blocks are ignored
    command arg arg
    ----
    expected output (never contains a blank line)

Run the scenarios with pytest; set ``RAFT_REWRITE=1`` to regenerate every expected output from
what the code does now (then review the diff like any other code change).

Commands: ``add-nodes N [pre_vote=false] [check_quorum=false] [election_tick=N]``,
``campaign ID``, ``propose ID DATA``, ``propose-conf-change ID add|remove|learner NODE``,
``transfer-leader ID TO``, ``read-index ID CTX``, ``tick ID [N]``, ``process-ready ID...``,
``deliver-msgs [ID...]``, ``stabilize``, ``isolate ID``, ``heal``, ``compact ID``,
``report-snapshot ID TO ok|fail``, ``raft-state``, ``raft-log ID``, ``status ID``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from raftkv.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    EntryType,
    Message,
    RaftError,
    RawNode,
    decode_conf_change,
)
from raftkv.raft.describe import describe_entry, describe_message, describe_ready
from tests.raft.helpers import storage_with

CC_TYPES = {
    "add": ConfChangeType.ADD_NODE,
    "remove": ConfChangeType.REMOVE_NODE,
    "learner": ConfChangeType.ADD_LEARNER_NODE,
}


@dataclass
class Block:
    line: int
    command: str
    expected: str
    actual: str = ""


def parse(text: str) -> list[Block]:
    lines = text.splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line or line.startswith("#"):
            i += 1
            continue
        assert i + 1 < len(lines) and lines[i + 1].strip() == "----", (
            f"line {i + 2}: expected ---- after command {line!r}"
        )
        j = i + 2
        out: list[str] = []
        while j < len(lines) and lines[j].strip():
            out.append(lines[j].rstrip())
            j += 1
        blocks.append(Block(i + 1, line, "\n".join(out)))
        i = j
    return blocks


def render(blocks: list[Block], header: str) -> str:
    parts = [header.rstrip("\n")] if header else []
    for b in blocks:
        parts.append(f"{b.command}\n----\n{b.actual}")
    return "\n\n".join(parts) + "\n"


def header_of(text: str) -> str:
    """The leading comment lines of a file (kept on rewrite)."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            out.append(line)
        else:
            break
    return "\n".join(out).strip("\n")


@dataclass
class Env:
    nodes: dict[int, RawNode] = field(default_factory=dict)
    queue: list[Message] = field(default_factory=list)
    cut: set[int] = field(default_factory=set)

    def run(self, command: str) -> str:
        name, *args = command.split()
        fn = getattr(self, "cmd_" + name.replace("-", "_"), None)
        assert fn is not None, f"unknown command {name!r}"
        try:
            out = fn(*args)
        except RaftError as e:
            return f"error: {type(e).__name__}: {e}"
        return out if out else "ok"

    # --- commands ------------------------------------------------------------------------------

    def cmd_add_nodes(self, n: str, *opts: str) -> str:
        kw: dict[str, object] = {}
        for o in opts:
            k, v = o.split("=")
            kw[k] = {"true": True, "false": False}.get(v, int(v) if v.isdigit() else v)
        ids = list(range(1, int(n) + 1))
        for i in ids:
            cfg = Config(id=i, rng=random.Random(i), **kw)  # type: ignore[arg-type]
            self.nodes[i] = RawNode(cfg, storage_with(ids))
        return ""

    def cmd_campaign(self, i: str) -> str:
        self.nodes[int(i)].campaign()
        return ""

    def cmd_propose(self, i: str, data: str) -> str:
        self.nodes[int(i)].propose(data.encode())
        return ""

    def cmd_propose_conf_change(self, i: str, kind: str, node: str) -> str:
        self.nodes[int(i)].propose_conf_change(ConfChange(CC_TYPES[kind], int(node)))
        return ""

    def cmd_transfer_leader(self, i: str, to: str) -> str:
        self.nodes[int(i)].transfer_leader(int(to))
        return ""

    def cmd_read_index(self, i: str, ctx: str) -> str:
        self.nodes[int(i)].read_index(ctx.encode())
        return ""

    def cmd_tick(self, i: str, n: str = "1") -> str:
        for _ in range(int(n)):
            self.nodes[int(i)].tick()
        return ""

    def cmd_isolate(self, i: str) -> str:
        self.cut.add(int(i))
        return ""

    def cmd_heal(self) -> str:
        self.cut.clear()
        return ""

    def cmd_compact(self, i: str) -> str:
        rn = self.nodes[int(i)]
        applied = rn.raft.raft_log.applied
        rn.storage.create_snapshot(applied, rn.raft.trk.conf_state(), b"")
        rn.storage.compact(applied)
        return f"compacted {i} to {applied}"

    def cmd_report_snapshot(self, i: str, to: str, outcome: str) -> str:
        self.nodes[int(i)].report_snapshot(int(to), outcome == "ok")
        return ""

    def cmd_process_ready(self, *ids: str) -> str:
        return "\n".join(self._process(int(i)) for i in ids)

    def _process(self, i: int) -> str:
        rn = self.nodes[i]
        if not rn.has_ready():
            return f"> {i} no Ready"
        rd = rn.ready()
        text = describe_ready(rd)
        self.queue.extend(rd.messages)
        if rd.snapshot is not None:
            rn.storage.apply_snapshot(rd.snapshot)
        if rd.hard_state is not None:
            rn.storage.set_hard_state(rd.hard_state)
        rn.storage.append(rd.entries)
        self.queue.extend(rd.messages_after_append)
        for e in rd.committed_entries:
            if e.type == EntryType.CONF_CHANGE:
                rn.apply_conf_change(decode_conf_change(e.data))
        rn.advance(rd)
        return f"> {i} handling Ready\n" + "\n".join("  " + ln for ln in text.splitlines())

    def cmd_deliver_msgs(self, *ids: str) -> str:
        want = {int(i) for i in ids} or set(self.nodes)
        todo = [m for m in self.queue if m.to in want]
        self.queue = [m for m in self.queue if m.to not in want]
        out = []
        for m in todo:
            if m.to in self.cut or m.from_ in self.cut:
                out.append(f"dropped: {describe_message(m)}")
                continue
            out.append(describe_message(m))
            try:
                self.nodes[m.to].step(m)
            except RaftError as e:
                out.append(f"  error: {e}")
        return "\n".join(out)

    def cmd_stabilize(self) -> str:
        out: list[str] = []
        for _ in range(100):
            ready = [i for i in sorted(self.nodes) if self.nodes[i].has_ready()]
            if not ready and not self.queue:
                return "\n".join(out)
            for i in ready:
                out.append(self._process(i))
            if self.queue:
                out.append(self.cmd_deliver_msgs())
        raise AssertionError("did not stabilize")

    def cmd_raft_state(self) -> str:
        return "\n".join(
            f"{i}: {rn.raft.state.name} Term:{rn.raft.term} Lead:{rn.raft.lead}"
            for i, rn in sorted(self.nodes.items())
        )

    def cmd_raft_log(self, i: str) -> str:
        ents = self.nodes[int(i)].raft.raft_log.all_entries()
        return "\n".join(describe_entry(e) for e in ents) or "<empty log>"

    def cmd_status(self, i: str) -> str:
        st = self.nodes[int(i)].status()
        lines = [
            f"{st.id} {st.raft_state.name} Term:{st.term} Vote:{st.vote} Lead:{st.lead} "
            f"Commit:{st.commit} Applied:{st.applied}"
        ]
        for pid, p in st.progress.items():
            learner = " learner" if p.is_learner else ""
            lines.append(f"  {pid}: {p.state.name} match={p.match} next={p.next}{learner}")
        return "\n".join(lines)


def run_file(path: Path, rewrite: bool) -> list[Block]:
    text = path.read_text()
    blocks = parse(text)
    env = Env()
    for b in blocks:
        b.actual = env.run(b.command)
    if rewrite:
        path.write_text(render(blocks, header_of(text)))
    return blocks
