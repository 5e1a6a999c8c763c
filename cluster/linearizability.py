"""A linearizability checker for a history of register operations, one key at a time.

Wing & Gong's search with Lowe's memoization (the algorithm of porcupine / Knossos' "wgl"):
walk the history's call/return events in time order; at a call, try to linearize that
operation now (apply it to the model; remember (set of linearized ops, model state) so that no
configuration is explored twice); at a return of an operation that is not linearized yet,
backtrack to the last choice. The history is linearizable iff every operation gets linearized.

Linearizability is compositional (local): a register per key is independent of the others, so
a multi-key history is partitioned by key and each key's sub-history is searched alone
(Knossos' and Porcupine's partitioning); the search is exponential only in the concurrency
within one key, not in the size of the history.

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

Unknown writes are what makes a failing search expensive: each one left pending doubles the
configurations to rule out. When the value it writes is written by no other op (the chaos
workload's values are unique), two exact reductions apply (`_unknown_deadlines`):
- if some read or successful CAS saw the value, the write took effect before that op returned
  (nothing else could have put the value there): its return time becomes the earliest such
  return instead of +inf;
- if nothing mentions the value (no read saw it, no CAS compared against it), the write is
  dropped, unless a failed CAS could have relied on it: wherever it took effect, it was
  overwritten before anyone could tell, so a legal order with it gives one without it and
  back. The exception: a failed CAS(e) linearized while the write's value was current, where
  without the write the register would hold e; that needs the CAS to return, and e to be
  still possibly current (no write invoked after e's write returned has returned yet), after
  the write was invoked.

A violation comes with a minimal failing sub-history (`KeyResult.minimal`): a subset of the
key's operations that admits no legal order while every smaller one found by shrinking does,
closed under "the write of each value it reads" so that every read in it has its writer.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "CheckResult",
    "KeyResult",
    "Op",
    "check",
    "check_key",
    "minimal_failing",
    "simulated_history",
]

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
    member: str = ""  # the endpoint that served it

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
        via = f" via {self.member}" if self.member else ""
        return f"client {self.client}{via} [{self.invoke:.3f}, {end}] {what}"


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
    stuck: Op | None = None  # a violation: the op that could not be linearized, at best
    minimal: list[Op] = field(default_factory=list)  # a violation's minimal failing sub-history


@dataclass
class CheckResult:
    ok: bool
    keys: list[KeyResult] = field(default_factory=list)
    cpu_seconds: float = 0.0  # the checking thread's CPU time, shrinking violations included

    @property
    def violations(self) -> list[KeyResult]:
        return [k for k in self.keys if not k.ok and not k.exhausted]

    @property
    def undecided(self) -> list[KeyResult]:
        return [k for k in self.keys if k.exhausted]

    @property
    def ops(self) -> int:
        return sum(k.ops for k in self.keys)

    def summary(self) -> str:
        took = f"checked in {self.cpu_seconds:.2f} s CPU"
        if self.violations:
            k = self.violations[0]
            return f"NOT linearizable: key {k.key!r}: {k.detail} ({self.ops} ops, {took})"
        if self.undecided:
            keys = ", ".join(repr(k.key) for k in self.undecided)
            return f"undecided (search budget exhausted) on {keys}; {self.ops} ops, {took}"
        return f"linearizable: {self.ops} ops on {len(self.keys)} keys, {took}"


def _unknown_deadlines(ops: list[Op], initial: bytes | None) -> dict[int, float | None]:
    """For unknown writes of a value no other op writes (see the module docstring): id(op) ->
    the time by which it took effect, or None when it can be dropped."""
    writer: dict[bytes | None, Op | None] = {initial: None}  # None: the initial state
    count: dict[bytes | None, int] = defaultdict(int)
    seen_by: dict[bytes, float] = {}  # value -> earliest return of an op that saw it
    mentioned: set[bytes | None] = {initial}
    for op in ops:
        if op.kind != "get":
            count[op.value] += 1
            writer[op.value] = op
            mentioned.add(op.expected)
        saw = op.output if op.kind == "get" else (op.expected if op.output is True else None)
        if isinstance(saw, bytes) and op.complete is not None:
            seen_by[saw] = min(seen_by.get(saw, INF), op.complete)
            mentioned.add(saw)
    # a value is gone for good once a write invoked after it returned has returned itself
    done = sorted(
        (op.invoke, op.complete)
        for op in ops
        if op.complete is not None and (op.kind == "put" or op.output is True)
    )
    invokes = [t for t, _ in done]
    gone_after = [INF] * (len(done) + 1)  # suffix minimum of the returns
    for i in range(len(done) - 1, -1, -1):
        gone_after[i] = min(done[i][1], gone_after[i + 1])

    def gone(value: bytes | None) -> float:
        w = writer.get(value, False)
        if w is False:  # never written, not the initial state: never there at all
            return -INF
        if count[value] > 1 or (w is not None and w.complete is None):
            return INF  # may come back, or may still be written
        return gone_after[bisect.bisect_right(invokes, w.complete if w else -INF)]

    # the last time a failed CAS could have relied on the register holding something else
    reliance = max(
        (
            min(op.complete, gone(op.expected))
            for op in ops
            if op.kind == "cas" and op.output is False and op.complete is not None
        ),
        default=-INF,
    )
    out: dict[int, float | None] = {}
    for op in ops:
        if not op.unknown or op.kind == "get" or count[op.value] != 1 or op.value == initial:
            continue
        if op.value in seen_by:
            out[id(op)] = max(seen_by[op.value], op.invoke)
        elif op.value not in mentioned and reliance < op.invoke:  # touching ops are concurrent
            out[id(op)] = None
    return out


def check_key(
    ops: Iterable[Op], initial: bytes | None = None, max_steps: int = 5_000_000
) -> KeyResult:
    """Is this single-key history linearizable, starting from `initial`?"""
    ops = [op for op in ops if not (op.kind == "get" and op.unknown)]
    n_ops = len(ops)
    key = ops[0].key if ops else ""
    deadline = _unknown_deadlines(ops, initial)
    # ids in call order: the linearized set is then mostly a prefix (see `seen` below)
    kept = [op for op in ops if not (id(op) in deadline and deadline[id(op)] is None)]
    ops = sorted(kept, key=lambda op: op.invoke)
    events: list[tuple[float, int, int, _Entry]] = []
    for i, op in enumerate(ops):
        call = _Entry(op, i, True, op.invoke)
        end = deadline.get(id(op)) if op.complete is None else op.complete
        ret = _Entry(op, i, False, INF if end is None else end)
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
    # configurations explored: (n, rest, state) for the linearized set {0..n-1} + (rest << n),
    # n its first missing id; rest stays a few bits wide, where the whole set would be one
    # bit per op of the key (and hashing and keeping it would cost that much per step)
    seen: set[tuple[int, int, bytes | None]] = set()
    stack: list[tuple[_Entry, bytes | None]] = []
    best, stuck_at = -1, None
    steps = 0
    entry = head.next
    while head.next is not None:
        steps += 1
        if steps > max_steps:
            return KeyResult(key, False, n_ops, steps, exhausted=True, detail="budget")
        if entry.call:
            ok, new_state = _step(state, entry.op)
            if ok:
                new_lin = linearized | (1 << entry.id)
                n = ((new_lin + 1) & ~new_lin).bit_length() - 1
                config = (n, new_lin >> n, new_state)
                if config not in seen:
                    seen.add(config)
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
                    n_ops,
                    steps,
                    stuck=op,
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
    return KeyResult(key, True, n_ops, steps)


def _writers(ops: list[Op]) -> dict[bytes, Op]:
    """The write of each value written exactly once (chaos writes unique values)."""
    seen: dict[bytes, list[Op]] = defaultdict(list)
    for op in ops:
        if op.kind != "get" and op.value is not None:
            seen[op.value].append(op)
    return {v: w[0] for v, w in seen.items() if len(w) == 1}


def _closure(sub: list[Op], writers: dict[bytes, Op]) -> list[Op]:
    """sub plus the write of every value its reads and successful CASes saw, transitively (a
    CAS brought in for the value it wrote brings in the write of the value it compared)."""
    have = {id(op) for op in sub}
    out = list(sub)
    todo = list(sub)
    while todo:
        op = todo.pop()
        seen = op.output if op.kind == "get" else (op.expected if op.output is True else None)
        w = writers.get(seen) if isinstance(seen, bytes) else None
        if w is not None and id(w) not in have:
            have.add(id(w))
            out.append(w)
            todo.append(w)
    return sorted(out, key=lambda op: op.invoke)


def minimal_failing(
    ops: list[Op], initial: bytes | None = None, max_steps: int = 5_000_000, max_checks: int = 400
) -> list[Op]:
    """A small non-linearizable sub-history of a non-linearizable single-key history.

    Shortest failing prefix by invocation, then the latest failing start, then delta
    debugging (drop chunks, halving their size, while it still fails); each candidate is closed
    under the writes of the values it reads, so a stale read keeps the write it should have
    seen. A candidate whose search runs out of budget counts as passing."""
    ops = sorted(ops, key=lambda op: op.invoke)
    writers = _writers(ops)
    checks = 0

    def fails(sub: list[Op]) -> bool:
        nonlocal checks
        checks += 1
        r = check_key(_closure(sub, writers), initial, max_steps=max_steps)
        return not r.ok and not r.exhausted

    lo, hi = 0, len(ops)  # ops[:hi] fails, ops[:lo] passes
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if fails(ops[:mid]) else (mid, hi)
    lo, top = 0, hi - 1  # ops[lo:hi] fails, ops[top + 1:hi] passes
    while top - lo > 0:
        mid = (lo + top + 1) // 2
        lo, top = (mid, top) if fails(ops[mid:hi]) else (lo, mid - 1)
    cur, n = ops[lo:hi], 2
    while len(cur) >= 2 and checks < max_checks:
        size = -(-len(cur) // n)
        for i in range(0, len(cur), size):
            candidate = cur[:i] + cur[i + size :]
            if fails(candidate):
                cur, n = candidate, max(n - 1, 2)
                break
        else:
            if n >= len(cur):
                break
            n = min(2 * n, len(cur))
    return _closure(cur, writers)


def check(
    history: Iterable[Op],
    initial: dict[str, bytes | None] | None = None,
    max_steps: int = 5_000_000,
    log: Callable[[str], None] | None = None,
) -> CheckResult:
    """Check every key's sub-history; linearizable iff each one is. A violation is shrunk to a
    minimal failing sub-history; `log` hears about each key that takes over a second."""
    t0 = time.thread_time()
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    initial = initial or {}
    results = []
    for key, ops in sorted(by_key.items()):
        t = time.thread_time()
        r = check_key(ops, initial.get(key), max_steps=max_steps)
        if not r.ok and not r.exhausted:
            r.minimal = minimal_failing(ops, initial.get(key), max_steps=max_steps)
        if log is not None and time.thread_time() - t > 1.0:
            log(f"key {key!r}: {r.ops} ops, {r.steps} steps, {time.thread_time() - t:.1f} s CPU")
        results.append(r)
    return CheckResult(
        ok=all(r.ok for r in results), keys=results, cpu_seconds=time.thread_time() - t0
    )


def simulated_history(
    rng: random.Random,
    ops: int = 40,
    keys: int = 1,
    clients: int = 4,
    unknown: float = 0.1,
    think: float = 1.0,
    latency: float = 1.5,
) -> list[Op]:
    """A history of atomic registers, linearizable by construction (for tests and the
    benchmark): each client issues one operation at a time (after up to `think` seconds; it
    takes an exponential time of mean `latency`), which takes effect at a random point inside
    its interval. A share `unknown` of the writes lose their answer; half of those never take
    effect at all (a request lost before the leader got it)."""
    drafts = []
    free = [0.0] * clients
    for n in range(ops):
        c = rng.randrange(clients)
        invoke = free[c] + rng.random() * think
        complete = invoke + rng.expovariate(1 / latency)
        point = invoke + rng.random() * (complete - invoke)
        kind = rng.choice(("put", "get", "get", "cas"))
        drafts.append(
            (point, invoke, complete, c, kind, f"v{n}".encode(), f"k{rng.randrange(keys)}")
        )
        free[c] = complete
    state: dict[str, bytes | None] = {}
    history = []
    for _, invoke, complete, c, kind, value, key in sorted(drafts):
        lost = kind != "get" and rng.random() < unknown
        applies = not lost or rng.random() < 0.5
        end = None if lost else complete
        now = state.get(key)
        if kind == "get":
            history.append(Op(key, "get", invoke, end, output=now, client=c))
            continue
        if kind == "put":
            history.append(Op(key, "put", invoke, end, value=value, client=c))
            ok = True
        else:
            expected = now if rng.random() < 0.7 else b"other"
            ok = now == expected
            out = None if lost else ok
            history.append(Op(key, "cas", invoke, end, value, expected, out, client=c))
        if ok and applies:
            state[key] = value
    return sorted(history, key=lambda op: op.invoke)
