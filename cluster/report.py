"""A chaos run's report: one self-contained HTML page and a PNG of the same figure.

The figure (matplotlib, drawn off-screen) has five panels on one time axis, seconds since the
workload started: the faults as bars (a row per kind, labelled with the target), answered
reads and writes per second, latency p50/p99 per second (by completion second), failed
requests per second (timeouts, other errors, refused), and the leader with its term at every
change. Every fault is also a shaded interval across the panels, every leader change a dotted
line. The page embeds the PNG as a data: URL (no external resources), then the verdict and the
tables behind it: linearizability (with the minimal failing sub-history of each bad key), lost
writes, member agreement, the nemesis log (with the longest write stall in each fault) and the
leader changes. A JSON block (id "chaos-data") holds the drawn fault intervals, the leader
changes and the per-second series, for tools and tests.

Re-rendering a saved run (`python -m cluster report PATH`) checks linearizability again from
the saved ops; lost writes and agreement need the live cluster and come from the saved checks.
"""

from __future__ import annotations

import base64
import bisect
import html
import io
import itertools
import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from cluster.linearizability import CheckResult, Op, check, check_key
from cluster.runlog import LeaderSample, RunLog

__all__ = ["Series", "figure", "leader_changes", "render", "series", "verdict", "write_report"]

# one colour per fault kind (tab10 order), shared by the bars, the shading and the legend
FAULT_COLORS = {
    "kill-leader": "#d62728",
    "pause": "#9467bd",
    "isolate": "#ff7f0e",
    "isolate-leader": "#8c564b",
    "one-way": "#e377c2",
    "lossy": "#bcbd22",
    "slow": "#17becf",
}


@dataclass
class Series:
    """Per-second counts and latencies; index i covers [i, i + 1) seconds."""

    reads: list[int]
    writes: list[int]
    p50_ms: list[float | None]
    p99_ms: list[float | None]
    timeouts: list[int]
    errors: list[int]
    refused: list[int]


def _run_ops(run: RunLog) -> list[Op]:
    # client -1: the final reads after healing, part of the checks, not of the workload
    return [op for op in run.ops if op.client >= 0]


def _end(run: RunLog) -> float:
    times = [float(run.meta.get("duration", 0))]
    times += [op.complete for op in _run_ops(run) if op.complete is not None]
    times += [f.end if f.end is not None else f.start for f in run.faults]
    times += [f.t for f in run.failures]
    return max(times, default=0.0)


def series(run: RunLog) -> Series:
    n = math.floor(_end(run)) + 1
    reads, writes = [0] * n, [0] * n
    latencies: list[list[float]] = [[] for _ in range(n)]
    for op in _run_ops(run):
        if op.complete is None:
            continue
        i = min(math.floor(op.complete), n - 1)
        (reads if op.kind == "get" else writes)[i] += 1
        latencies[i].append((op.complete - op.invoke) * 1000)
    p50: list[float | None] = []
    p99: list[float | None] = []
    for lat in latencies:
        q = np.percentile(lat, [50, 99]) if lat else (None, None)
        p50.append(None if q[0] is None else round(float(q[0]), 2))
        p99.append(None if q[1] is None else round(float(q[1]), 2))
    timeouts, errors, refused = [0] * n, [0] * n, [0] * n
    for f in run.failures:
        i = min(math.floor(f.t), n - 1)
        bucket = timeouts if f.timeout else (refused if f.error == "refused" else errors)
        bucket[i] += 1
    return Series(reads, writes, p50, p99, timeouts, errors, refused)


def leader_changes(samples: list[LeaderSample]) -> list[LeaderSample]:
    """The samples where the leader or the term differs from the sample before."""
    out: list[LeaderSample] = []
    for s in samples:
        if not out or (s.leader, s.term) != (out[-1].leader, out[-1].term):
            out.append(s)
    return out


def write_stalls(run: RunLog) -> list[float]:
    """Per fault: the longest time without an answered write that overlaps its interval."""
    done = sorted(op.complete for op in _run_ops(run) if op.kind != "get" and op.complete)
    end = _end(run)
    stalls = []
    for f in run.faults:
        stop = f.end if f.end is not None else end
        i = max(bisect.bisect_left(done, f.start) - 1, 0)
        points = done[i : bisect.bisect_right(done, stop) + 1]
        if not points or points[0] > f.start:
            points.insert(0, f.start)
        if points[-1] < stop:
            points.append(end)  # no write answered after the fault until the end
        stalls.append(max((b - a for a, b in itertools.pairwise(points)), default=0.0))
    return stalls


# ---- the figure


def _label_room(ax: Any, fig: Figure, seconds: float) -> float:
    """How many characters of 7-pt text fit into `seconds` of this axis."""
    width_px = ax.get_position().width * fig.get_figwidth() * fig.dpi
    lo, hi = ax.get_xlim()
    return seconds * width_px / max(hi - lo, 1e-9) / 5.5  # ~5.5 px per 7-pt character


def verdict(run: RunLog, lin: CheckResult) -> str:
    """The saved verdict, unless checking the saved ops again found what the run did not."""
    saved = run.checks.get("verdict", "")
    if not lin.ok and lin.summary() not in saved:
        return f"chaos FAIL: {lin.summary()}"
    return saved


def figure(run: RunLog, s: Series, verdict: str) -> Figure:
    members = list(run.meta.get("members", {})) or sorted(
        {x.leader for x in run.leaders if x.leader}
    )
    kinds = list(dict.fromkeys(f.kind for f in run.faults)) or ["(none)"]
    fig = Figure(figsize=(14, 11.5), dpi=100, layout="constrained")
    heights = [0.5 + 0.32 * len(kinds), 2.2, 2.2, 1.8, 0.6 + 0.32 * (len(members) + 1)]
    axes = fig.subplots(5, 1, sharex=True, gridspec_kw={"height_ratios": heights})
    ax_f, ax_t, ax_l, ax_e, ax_ldr = axes
    end = _end(run)
    secs = np.arange(len(s.reads)) + 0.5  # a second's value drawn at its middle
    for ax in axes:
        ax.set_xlim(0, max(end, 1))
        ax.set_axisbelow(True)
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
        for f in run.faults:
            ax.axvspan(
                f.start,
                f.end if f.end is not None else end,
                alpha=0.12,
                linewidth=0,
                color=FAULT_COLORS.get(f.kind, "#7f7f7f"),
            )

    # faults: a row per kind, the target written on (or after) the bar
    last_label_end = dict.fromkeys(kinds, -math.inf)
    for f in run.faults:
        row = kinds.index(f.kind)
        stop = f.end if f.end is not None else end
        color = FAULT_COLORS.get(f.kind, "#7f7f7f")
        ax_f.barh(row, stop - f.start, left=f.start, height=0.6, color=color, alpha=0.85)
        if f.start >= last_label_end[f.kind]:  # skip a label that would run into the last one
            ax_f.text(
                f.start,
                row,
                f" {f.target}",
                va="center",
                ha="left",
                fontsize=7,
                color="black",
                clip_on=True,
            )
            room = _label_room(ax_f, fig, 1.0)
            last_label_end[f.kind] = f.start + (len(f.target) + 2) / max(room, 1e-9)
    ax_f.set_yticks(range(len(kinds)), kinds, fontsize=8)
    ax_f.set_ylim(len(kinds) - 0.5, -0.5)
    ax_f.set_title(
        "faults (bar: kind, label: target; shaded across all panels)", fontsize=9, loc="left"
    )

    ax_t.step(secs, s.reads, where="mid", label="reads answered", color="#1f77b4")
    ax_t.step(secs, s.writes, where="mid", label="writes answered", color="#2ca02c")
    ax_t.set_ylabel("ops / s")
    ax_t.set_ylim(bottom=0)
    ax_t.legend(loc="upper right", fontsize=8, framealpha=0.9)

    p50 = np.array([np.nan if v is None else v for v in s.p50_ms])
    p99 = np.array([np.nan if v is None else v for v in s.p99_ms])
    ax_l.plot(secs, p50, marker=".", markersize=3, linewidth=1, label="p50", color="#1f77b4")
    ax_l.plot(secs, p99, marker=".", markersize=3, linewidth=1, label="p99", color="#d62728")
    if np.isfinite(p99).any():
        ax_l.set_yscale("log")
        # plain numbers at 1, 3, 10, 30, ... ms, whatever the range; minor ticks unlabelled
        ax_l.yaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
        ax_l.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax_l.yaxis.set_minor_formatter(NullFormatter())
    ax_l.set_ylabel("latency (ms)")
    ax_l.legend(loc="upper right", fontsize=8, framealpha=0.9)

    bottom = np.zeros(len(secs))
    for values, label, color in (
        (s.timeouts, "timeouts", "#ff7f0e"),
        (s.errors, "errors", "#d62728"),
        (s.refused, "refused", "#7f7f7f"),
    ):
        ax_e.bar(secs, values, width=0.9, bottom=bottom, label=label, color=color)
        bottom += np.array(values)
    ax_e.set_ylabel("failed / s")
    ax_e.set_ylim(bottom=0, top=max(bottom.max() * 1.15, 1))
    ax_e.legend(loc="upper right", fontsize=8, framealpha=0.9, ncols=3)

    rows = [*members, "none"]
    changes = leader_changes(run.leaders)
    if run.leaders:
        ys = [rows.index(x.leader) if x.leader in rows else len(members) for x in run.leaders]
        ax_ldr.step([x.t for x in run.leaders], ys, where="post", color="#555555", linewidth=1)
    last_note = [-math.inf] * len(rows)  # per row: where the last term label ends
    for c in changes:
        y = rows.index(c.leader) if c.leader in rows else len(members)
        lost = c.leader is None
        ax_ldr.plot(
            c.t,
            y,
            marker="v" if lost else "o",
            markersize=6,
            color="#d62728" if lost else "#1f77b4",
        )
        if not lost and c.t >= last_note[y]:  # the new leader's term, if there is room
            ax_ldr.annotate(
                f"t{c.term}", (c.t, y), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
            last_note[y] = c.t + 5 / max(_label_room(ax_ldr, fig, 1.0), 1e-9)
        if len(changes) <= 40:  # a long run's lines would hide the curves: the panel has them
            for ax in (ax_t, ax_l, ax_e):
                ax.axvline(c.t, color="#555555", linestyle=":", linewidth=0.8)
    ax_ldr.set_yticks(range(len(rows)), rows, fontsize=8)
    ax_ldr.set_ylim(len(rows) - 0.5, -0.5)
    ax_ldr.set_ylabel("leader")
    ax_ldr.set_xlabel("seconds since the workload started")
    ax_ldr.set_title(
        "leader (o) and term (tN) at each change; v: no leader; dotted lines above",
        fontsize=9,
        loc="left",
    )

    handles = [Patch(color=FAULT_COLORS.get(k, "#7f7f7f"), alpha=0.5, label=k) for k in kinds]
    fig.legend(
        handles=handles,
        loc="outside upper right",
        ncols=len(kinds),
        fontsize=8,
        title="faults",
        title_fontsize=8,
    )
    said = verdict.split(":", 1)[0].removeprefix("chaos ") or "no verdict"
    title = " ".join(filter(None, ["chaos run", run.meta.get("started")])) + f": {said}"
    fig.suptitle(title, fontsize=11, x=0.01, ha="left")
    return fig


# ---- the page


def _table(head: list[str], rows: list[list[str]], attrs: list[str] | None = None) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    trs = "".join(
        f"<tr{(' ' + attrs[i]) if attrs and attrs[i] else ''}>"
        + "".join(f"<td>{html.escape(c)}</td>" for c in r)
        + "</tr>"
        for i, r in enumerate(rows)
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def _t(x: float | None) -> str:
    return "?" if x is None else f"{x:.3f}"


def _ops_table(ops: list[Op], mark: Op | None) -> str:
    rows, attrs = [], []
    for op in ops:
        what = op.describe().split("] ", 1)[1]
        rows.append([str(op.client), op.member, _t(op.invoke), _t(op.complete), what])
        attrs.append('class="offending"' if op is mark else "")
    return _table(["client", "member", "invoke", "complete", "operation"], rows, attrs)


def _linearizability_html(lin: CheckResult) -> str:
    out = [f"<p>{html.escape(lin.summary())}</p>"]
    for k in lin.violations:
        own = check_key(k.minimal) if k.minimal else None
        out.append(
            f"<h3>key {html.escape(k.key)}: minimal failing sub-history "
            f"({len(k.minimal)} of {k.ops} ops)</h3>"
            f'<p class="bad">{html.escape(own.detail if own else k.detail)}</p>'
            + _ops_table(k.minimal, own.stuck if own else None)
        )
    return "".join(out)


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; }
.verdict { padding: .6em 1em; border-radius: 4px; font-weight: 600; }
.pass { background: #e3f4e3; } .fail { background: #fbe3e3; }
.bad, tr.offending td { color: #b00; font-weight: 600; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def _lost_html(lost: list[dict] | None) -> str:
    if lost is None:
        return "<p>not checked (the cluster did not converge first)</p>"
    if not lost:
        return "<p>none: every acknowledged write was read back at its revision</p>"
    return _table(
        ["key", "value", "revision", "read instead"],
        [[w["key"], w["value"], str(w["revision"]), w["read"]] for w in lost],
    )


def _agreement_html(agreement: dict) -> str:
    hashes = agreement.get("hashes") or {}
    if not hashes:
        return "<p>members did not converge: no hashkv compared</p>"
    agree = "members agree" if len(set(hashes.values())) == 1 else "members DISAGREE"
    return f"<p>{agree} at revision {agreement.get('revision', '?')}</p>" + _table(
        ["member", "hashkv"], [[m, str(h)] for m, h in hashes.items()]
    )


def _faults_html(run: RunLog) -> str:
    rows, attrs = [], []
    for f, stall in zip(run.faults, write_stalls(run), strict=True):
        held = "" if f.end is None else f"{f.end - f.start:.2f}"
        rows.append([f.kind, f.target, _t(f.start), _t(f.end), held, f"{stall:.2f}"])
        end = "" if f.end is None else repr(f.end)
        attrs.append(
            f'data-kind="{html.escape(f.kind)}" data-target="{html.escape(f.target)}" '
            f'data-start="{f.start!r}" data-end="{end}"'
        )
    head = ["kind", "target", "start (s)", "end (s)", "held (s)", "longest write stall (s)"]
    return _table(head, rows, attrs)


def render(run: RunLog, png: bytes, lin: CheckResult, s: Series) -> str:
    """The HTML page: the figure (png) embedded, the verdict and the tables behind it."""
    meta, checks = run.meta, run.checks
    said = verdict(run, lin)
    ok = said.startswith("chaos PASS")
    changes = leader_changes(run.leaders)
    failures: dict[str, int] = defaultdict(int)
    for f in run.failures:
        failures[f.error] += 1
    problems = checks.get("problems") or []
    if not lin.ok and lin.summary() not in problems:  # found again by `report`
        problems = [*problems, lin.summary()]
    members = ", ".join(f"{k} {v}" for k, v in meta.get("members", {}).items())
    data = {
        "faults": [asdict(f) for f in run.faults],
        "leader_changes": [asdict(c) for c in changes],
        "series": asdict(s),
        "linearizable": lin.ok,
    }
    alt = "chaos timeline: faults, throughput, latency, failures, leader"
    src = "data:image/png;base64," + base64.b64encode(png).decode()
    esc = html.escape
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f"<title>raftkv chaos run {esc(str(meta.get('started', '')))}</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>raftkv chaos run</h1>",
        f"<p>started {esc(str(meta.get('started', '?')))}, {meta.get('duration', '?')} s of "
        f"faults ({esc(', '.join(meta.get('faults', [])))}), seed {meta.get('seed')}, "
        f"{meta.get('clients', '?')} clients on {meta.get('keys', '?')} keys; "
        f"members {esc(members)}</p>",
        f'<p class="verdict {"pass" if ok else "fail"}" id="verdict">{esc(said)}</p>',
        f'<figure><img id="timeline" alt="{alt}" src="{src}"><figcaption>{alt}</figcaption>'
        "</figure>",
        "<h2>Problems</h2>",
        "<ul>" + "".join(f'<li class="bad">{esc(p)}</li>' for p in problems) + "</ul>"
        if problems
        else "<p>none</p>",
        '<h2 id="linearizability">Linearizability</h2>',
        _linearizability_html(lin),
        '<h2 id="lost-writes">Lost writes</h2>',
        _lost_html(checks.get("lost")),
        '<h2 id="agreement">Member agreement</h2>',
        _agreement_html(checks.get("agreement") or {}),
        '<h2 id="faults">Faults (nemesis log)</h2>',
        _faults_html(run),
        '<h2 id="leaders">Leader changes</h2>',
        _table(
            ["t (s)", "leader", "term"],
            [[_t(c.t), c.leader or "none", str(c.term)] for c in changes],
        ),
        '<h2 id="failures">Failed requests</h2>',
        _table(["error", "count"], [[k, str(n)] for k, n in sorted(failures.items())]),
        # "</" can't appear inside a script element: JSON allows escaping the slash
        '<script type="application/json" id="chaos-data">'
        + json.dumps(data).replace("</", "<\\/")
        + "</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(run: RunLog, history_path: Path, lin: CheckResult | None = None) -> Path:
    """Write <history>.html and <history>.png next to the history; the HTML path. lin: the
    run's own linearizability result (checked again from run.ops when None)."""
    if lin is None:
        lin = check(run.ops)
    s = series(run)
    buf = io.BytesIO()
    figure(run, s, verdict(run, lin)).savefig(buf, format="png")
    png = buf.getvalue()
    history_path.with_suffix(".png").write_bytes(png)
    out = history_path.with_suffix(".html")
    out.write_text(render(run, png, lin, s))
    return out
