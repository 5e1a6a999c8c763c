"""A linearizability checker for a history of register operations, one key at a time.

Wing & Gong's search with Lowe's memoization (the algorithm of porcupine / Knossos' "wgl"):
walk the history's call/return events in time order; at a call, try to linearize that
operation now (apply it to the model; remember (set of linearized ops, model state) so that no
configuration is explored twice); at a return of an operation that is not linearized yet,
backtrack to the last choice. The history is linearizable iff every operation gets linearized.

Linearizability is compositional (local), so a multi-key history is checked key by key.

Model: a register holding bytes or None (absent).
    put(v)             -> state := v
    get() -> v         legal iff state == v
    cas(e, v) -> True  legal iff state == e; state := v      (e None: "key absent")
    cas(e, v) -> False legal iff state != e
Unknown outcomes (a timeout, a connection lost after sending): the operation may or may not
have taken effect, at any time after its call. It gets return time +inf, so it can be
linearized anywhere after its call, including after everything else, i.e. never; a put or a
cas with unknown outcome applies to the state wherever it is linearized (a cas only if its
compare holds). A get with unknown outcome tells nothing and is dropped.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["CheckResult", "KeyResult", "Op", "check", "check_key"]

INF = math.inf


@dataclass
class Op:
    """One client operation on one key. complete=None: the outcome is unknown."""

    key: str
    kind: str  # "put" | "get" | "cas"
    invoke: float
    complete: float | None
    value: bytes | None = None  # put/cas: the value written
    expected: bytes | None = None  # cas: the value compared against (None: absent)
    output: bytes | bool | None = None  # get: value read (None: absent); cas: succeeded
    client: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("put", "get", "cas"):
            raise ValueError(f"unknown op kind {self.kind!r}")
        if self.complete is not None and self.complete < self.invoke:
            raise ValueError(f"op completes before it is invoked: {self}")

    @property
    def unknown(self) -> bool:
        return self.complete is None

    def describe(self) -> str:
        end = "?" if self.complete is None else f"{self.complete:.3f}"
        if self.kind == "put":
            what = f"put({self.value!r})"
        elif self.kind == "get":
            what = f"get() -> {self.output!r}"
        else:
            out = "?" if self.unknown else self.output
            what = f"cas({self.expected!r} -> {self.value!r}) -> {out}"
        return f"client {self.client} [{self.invoke:.3f}, {end}] {what}"


def _step(state: bytes | None, op: Op) -> tuple[bool, bytes | None]:
    if op.kind == "put":
        return True, op.value
    if op.kind == "get":
        return state == op.output, state
    holds = state == op.expected
    if op.unknown:
        return True, op.value if holds else state
    if op.output:
        return holds, op.value
    return not holds, state


class _Entry:
    __slots__ = ("call", "id", "match", "next", "op", "prev", "time")

    def __init__(self, op: Op, id_: int, call: bool, time: float) -> None:
        self.op = op
        self.id = id_
        self.call = call
        self.time = time
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


@dataclass
class KeyResult:
    key: str
    ok: bool
    ops: int
    steps: int
    exhausted: bool = False  # gave up after max_steps: neither proven nor refuted
    detail: str = ""


@dataclass
class CheckResult:
    ok: bool
    keys: list[KeyResult] = field(default_factory=list)

    @property
    def violations(self) -> list[KeyResult]:
        return [k for k in self.keys if not k.ok and not k.exhausted]

    @property
    def undecided(self) -> list[KeyResult]:
        return [k for k in self.keys if k.exhausted]

    def summary(self) -> str:
        n = sum(k.ops for k in self.keys)
        if self.violations:
            k = self.violations[0]
            return f"NOT linearizable: key {k.key!r}: {k.detail}"
        if self.undecided:
            keys = ", ".join(repr(k.key) for k in self.undecided)
            return f"undecided (search budget exhausted) on {keys}; {n} ops"
        return f"linearizable: {n} ops on {len(self.keys)} keys"


def check_key(
    ops: Iterable[Op], initial: bytes | None = None, max_steps: int = 5_000_000
) -> KeyResult:
    """Is this single-key history linearizable, starting from `initial`?"""
    ops = [op for op in ops if not (op.kind == "get" and op.unknown)]
    key = ops[0].key if ops else ""
    events: list[tuple[float, int, int, _Entry]] = []
    for i, op in enumerate(ops):
        call = _Entry(op, i, True, op.invoke)
        ret = _Entry(op, i, False, INF if op.complete is None else op.complete)
        call.match = ret
        # at equal times calls sort first: touching operations count as concurrent
        events.append((call.time, 0, i, call))
        events.append((ret.time, 1, i, ret))
    events.sort(key=lambda e: e[:3])
    head = _Entry(None, -1, True, -INF)  # type: ignore[arg-type]
    prev = head
    for *_, e in events:
        prev.next, e.prev = e, prev
        prev = e

    def lift(e: _Entry) -> None:
        e.prev.next = e.next
        if e.next:
            e.next.prev = e.prev
        m = e.match
        m.prev.next = m.next
        if m.next:
            m.next.prev = m.prev

    def unlift(e: _Entry) -> None:
        m = e.match
        m.prev.next = m
        if m.next:
            m.next.prev = m
        e.prev.next = e
        if e.next:
            e.next.prev = e

    state = initial
    linearized = 0
    done = 0
    cache: set[tuple[int, bytes | None]] = set()
    stack: list[tuple[_Entry, bytes | None]] = []
    best, stuck_at = -1, None
    steps = 0
    entry = head.next
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return KeyResult(key, False, len(ops), steps, exhausted=True, detail="budget")
        if entry.call:
            ok, new_state = _step(state, entry.op)
            if ok:
                new_lin = linearized | (1 << entry.id)
                if (new_lin, new_state) not in cache:
                    cache.add((new_lin, new_state))
                    stack.append((entry, state))
                    state, linearized = new_state, new_lin
                    done += 1
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if done > best:
                best, stuck_at = done, (entry.op, state)
            if not stack:
                op, st = stuck_at
                return KeyResult(
                    key,
                    False,
                    len(ops),
                    steps,
                    detail=(
                        f"no valid order: at most {best} of {len(ops)} ops linearize; then "
                        f"{op.describe()} cannot (register holds {st!r} at that point)"
                    ),
                )
            entry, state = stack.pop()
            linearized &= ~(1 << entry.id)
            done -= 1
            unlift(entry)
            entry = entry.next
    return KeyResult(key, True, len(ops), steps)


def check(
    history: Iterable[Op],
    initial: dict[str, bytes | None] | None = None,
    max_steps: int = 5_000_000,
) -> CheckResult:
    """Check every key's sub-history; linearizable iff each one is."""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    initial = initial or {}
    results = [
        check_key(ops, initial.get(key), max_steps=max_steps) for key, ops in sorted(by_key.items())
    ]
    return CheckResult(ok=all(r.ok for r in results), keys=results)
