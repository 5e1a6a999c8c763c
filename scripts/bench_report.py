"""What ``scripts/bench.py`` prints: every phase of every round, then per workload the ratio
raftkv/etcd of each round (round i of one against round i of the other: the rounds alternate
which system goes first, so a pair shares the machine's state), their min and median, and a
PASS/FAIL line against issue 13's targets:

- put with 64 and with 256 clients: throughput >= 1.25x etcd's in every round, p99 <= etcd's;
- linearizable and serializable range: throughput >= 1.25x etcd's in every round;
- put with 1 client: p50 <= etcd's in every round.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

TARGET_RATE = 1.25


@dataclass
class Result:
    """One phase: requests that started inside the measured window and their latencies (s)."""

    ops: int
    errors: int
    seconds: float
    lat: list[float]
    member_cpu_us: float = math.nan  # the 3 members' CPU over the window, per request
    client_cpu_us: float = math.nan  # the client processes' own CPU over the window, per request

    def __post_init__(self) -> None:
        self.lat.sort()

    @property
    def rate(self) -> float:
        return self.ops / self.seconds

    def pct(self, p: float) -> float:
        """The p-quantile latency in ms (p=1.0: the max)."""
        if not self.lat:
            return math.nan
        return self.lat[min(len(self.lat) - 1, int(p * len(self.lat)))] * 1000


@dataclass
class Round:
    """One system's cluster for one round: its phases and, with --preload, the scale figures."""

    phases: dict[str, Result] = field(default_factory=dict)
    preload_s: float = math.nan
    rss_per_key: list[float] = field(default_factory=list)  # VmRSS growth / key, per member
    anon_per_key: list[float] = field(default_factory=list)  # RssAnon growth / key, per member
    startup_s: float = math.nan


def phase_line(i: int, kind: str, name: str, r: Result) -> str:
    return (
        f"[round {i + 1}] {kind:6s} {name:12s} {r.rate:8.0f} ops/s  p50 {r.pct(0.5):6.2f}  "
        f"p99 {r.pct(0.99):6.2f}  p99.9 {r.pct(0.999):7.2f}  max {r.pct(1.0):7.2f} ms  "
        f"errors {r.errors}  CPU/op members {r.member_cpu_us:4.0f} us, "
        f"clients {r.client_cpu_us:4.0f} us"
    )


def scale_line(i: int, kind: str, rd: Round, n: int) -> str:
    rss = " ".join(f"{x:.0f}" for x in rd.rss_per_key)
    anon = " ".join(f"{x:.0f}" for x in rd.anon_per_key)
    return (
        f"[round {i + 1}] {kind:6s} preload {n} keys in {rd.preload_s:.1f} s "
        f"({n / rd.preload_s:.0f} keys/s)  memory per key, members: RSS {rss} B, "
        f"anon {anon} B  restart with them: {rd.startup_s:.2f} s"
    )


def _check(name: str) -> tuple[str, Callable[[Result, Result], bool]] | None:
    """Issue 13's target for a workload, as (text, test of one round's pair raftkv, etcd)."""
    if name in ("put64", "put256"):
        return (
            f"throughput >= {TARGET_RATE}x and p99 <= etcd's in every round",
            lambda a, b: a.rate >= TARGET_RATE * b.rate and a.pct(0.99) <= b.pct(0.99),
        )
    if name.startswith("range_"):
        return (
            f"throughput >= {TARGET_RATE}x in every round",
            lambda a, b: a.rate >= TARGET_RATE * b.rate,
        )
    if name == "put1":
        return "p50 <= etcd's in every round", lambda a, b: a.pct(0.5) <= b.pct(0.5)
    return None


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def _ratios(xs: list[float]) -> str:
    each = " ".join(f"{x:.2f}" for x in xs)
    return f"{each}  (min {min(xs):.2f}, median {statistics.median(xs):.2f})"


def summary(rounds: dict[str, list[Round]], workloads: list[str], preload: int) -> list[str]:
    out = ["--- medians over rounds"]
    for name in workloads:
        for kind, rs in rounds.items():
            ph = [r.phases[name] for r in rs]
            rate, p50, p99, p999, mcpu, ccpu = (
                statistics.median(f(r) for r in ph)
                for f in (
                    lambda r: r.rate,
                    lambda r: r.pct(0.5),
                    lambda r: r.pct(0.99),
                    lambda r: r.pct(0.999),
                    lambda r: r.member_cpu_us,
                    lambda r: r.client_cpu_us,
                )
            )
            out.append(
                f"{kind:6s} {name:12s} {rate:8.0f} ops/s  p50 {p50:6.2f}  p99 {p99:6.2f}  "
                f"p99.9 {p999:7.2f} ms  CPU/op members {mcpu:4.0f} us, clients {ccpu:4.0f} us"
            )
    if preload:
        for kind, rs in rounds.items():
            rss = statistics.median(x for r in rs for x in r.rss_per_key)
            anon = statistics.median(x for r in rs for x in r.anon_per_key)
            start = statistics.median(r.startup_s for r in rs)
            out.append(
                f"{kind:6s} {preload} keys: memory per key {rss:.0f} B RSS ({anon:.0f} B anon), "
                f"restart {start:.2f} s"
            )
    if set(rounds) != {"raftkv", "etcd"}:
        return out
    out.append("--- raftkv / etcd, round by round")
    failed: list[str] = []
    for name in workloads:
        pairs = list(zip(rounds["raftkv"], rounds["etcd"], strict=True))
        a_b = [(a.phases[name], b.phases[name]) for a, b in pairs]
        out.append(f"{name:12s} throughput {_ratios([_div(a.rate, b.rate) for a, b in a_b])}")
        for label, p in (("p50", 0.5), ("p99", 0.99), ("p99.9", 0.999)):
            xs = [_div(a.pct(p), b.pct(p)) for a, b in a_b]
            out.append(f"{'':12s} {label:10s} {_ratios(xs)}")
        check = _check(name)
        if check is not None:
            text, ok = check
            bad = [i + 1 for i, (a, b) in enumerate(a_b) if not ok(a, b)]
            verdict = "PASS" if not bad else f"FAIL (rounds {', '.join(map(str, bad))})"
            out.append(f"{'':12s} target: {text}: {verdict}")
            if bad:
                failed.append(name)
    if preload:
        for label, f in (
            ("memory/key (RSS)", lambda r: statistics.median(r.rss_per_key)),
            ("restart time", lambda r: r.startup_s),
        ):
            xs = [_div(f(a), f(b)) for a, b in zip(rounds["raftkv"], rounds["etcd"], strict=True)]
            out.append(f"{label:17s} {_ratios(xs)}")
    checked = [n for n in workloads if _check(n) is not None]
    if checked:
        verdict = "PASS" if not failed else "FAIL: " + ", ".join(failed)
        out.append(f"issue 13 targets ({', '.join(checked)}): {verdict}")
    return out
