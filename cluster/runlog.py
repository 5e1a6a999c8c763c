"""The record of one chaos run, saved next to its report so that it can be rendered again.

What the run saw, all times in seconds since the workload started:
- ops: every client operation with its invoke/complete time, result and the member that served
  it (cluster.linearizability.Op; complete None: the outcome is unknown);
- failures: every request that got no answer (timeouts, refused or reset connections, error
  answers), including reads, which the history leaves out since they tell nothing;
- faults: the nemesis log, one entry per fault with its kind, target and [start, end];
- leaders: the (leader, term) the cluster reported, sampled about twice a second;
- checks: what the final checks found (lost writes, member agreement, problems, verdict).

On disk it is JSON lines, one record a line with a "type" (meta, op, failure, fault, leader,
checks); the values the workload writes are ASCII, so bytes are stored as str and read back
as bytes. `RunLog.load(RunLog.save(p))` gives the same record back.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cluster.linearizability import Op

__all__ = ["Failure", "Fault", "LeaderSample", "RunLog"]

FORMAT = 1


@dataclass
class Fault:
    kind: str  # a nemesis fault name: kill-leader, pause, isolate, ...
    target: str  # a member ("m2"), a link ("m1->m3") or "all links"
    start: float
    end: float | None = None  # None: still in force (the run was cut short)


@dataclass
class Failure:
    """A request without an answer; `timeout` tells a timeout from any other error."""

    t: float
    client: int
    member: str
    kind: str  # the op kind
    error: str  # "refused", "http 503", "TimeoutError", "ServerDisconnectedError", ...
    timeout: bool = False


@dataclass
class LeaderSample:
    t: float
    leader: str | None  # None: no member led a majority at that moment
    term: int  # the highest raft term among the members that answered


@dataclass
class RunLog:
    meta: dict[str, Any] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    leaders: list[LeaderSample] = field(default_factory=list)
    # lost: [{key, value, revision, read}], agreement: {revision, hashes: {member: hash}},
    # problems: [str], verdict: str
    checks: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [{"type": "meta", "format": FORMAT, **self.meta}]
        lines += [{"type": "op", **_op_json(op)} for op in self.ops]
        for kind, items in (("failure", self.failures), ("fault", self.faults)):
            lines += [{"type": kind, **asdict(x)} for x in items]
        lines += [{"type": "leader", **asdict(s)} for s in self.leaders]
        lines.append({"type": "checks", **self.checks})
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(line) + "\n" for line in lines))
        tmp.rename(path)
        return path

    @classmethod
    def load(cls, path: Path) -> RunLog:
        run = cls()
        for n, line in enumerate(Path(path).read_text().splitlines(), 1):
            if not line.strip():
                continue
            d = json.loads(line)
            kind = d.pop("type", "op")  # the first format was ops only, without a type
            if kind == "meta":
                if d.pop("format", FORMAT) > FORMAT:
                    raise ValueError(f"{path}: written by a newer raftkv (format > {FORMAT})")
                run.meta = d
            elif kind == "op":
                run.ops.append(_op_from_json(d))
            elif kind == "failure":
                run.failures.append(Failure(**d))
            elif kind == "fault":
                run.faults.append(Fault(**d))
            elif kind == "leader":
                run.leaders.append(LeaderSample(**d))
            elif kind == "checks":
                run.checks = d
            else:
                raise ValueError(f"{path}:{n}: unknown record type {kind!r}")
        return run


_BYTES = ("value", "expected")


def _op_json(op: Op) -> dict[str, Any]:
    """The op without its None fields (but complete: None is what says "unknown")."""
    d: dict[str, Any] = {}
    for f in fields(op):
        v = getattr(op, f.name)
        if isinstance(v, float):
            v = round(v, 6)
        elif isinstance(v, bytes):
            v = v.decode()
        if v is not None or f.name == "complete":
            d[f.name] = v
    return d


def _op_from_json(d: dict[str, Any]) -> Op:
    for k in _BYTES:
        if isinstance(d.get(k), str):
            d[k] = d[k].encode()
    if d.get("kind") == "get" and isinstance(d.get("output"), str):
        d["output"] = d["output"].encode()
    return Op(**d)
