"""A one-minute chaos run against a real 3-member cluster (the full run: scripts/chaos.py) and
its report, and the report of a history with a stale read injected (Ctrl-C: test_ctrl_c.py)."""

from __future__ import annotations

import base64
import json
import random
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cluster.linearizability import Op, simulated_history
from cluster.runlog import Fault, LeaderSample, RunLog
from tests.cluster.real import needs_server

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class Report(HTMLParser):
    """What the tests read back from a report page: images, table rows, the data block."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.fault_rows: list[dict[str, str]] = []
        self.offending: list[list[str]] = []  # rows marked as the op that cannot linearize
        self.rows: list[list[str]] = []
        self.ids: dict[str, str] = {}
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._mark = False
        self._in: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a.get("src", ""))
        elif tag == "tr":
            self._row, self._mark = [], a.get("class") == "offending"
            if "data-kind" in a:
                self.fault_rows.append(a)
        elif tag == "td":
            self._cell = []
        if "id" in a:
            self._in = a["id"]
            self.ids.setdefault(a["id"], "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            if self._mark:
                self.offending.append(self._row)
            self._row = None
        elif tag in ("p", "script"):
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in is not None:
            self.ids[self._in] += data


def assert_report_matches(history: Path) -> Report:
    """The report next to `history` embeds its figure (the PNG next to it) and shows the same
    fault intervals as the nemesis log saved in the history."""
    run = RunLog.load(history)
    page = Report(history.with_suffix(".html").read_text())
    assert "http://" not in "".join(page.images) and len(page.images) == 1  # self-contained
    src = page.images[0]
    assert src.startswith("data:image/png;base64,")
    png = base64.b64decode(src.split(",", 1)[1])
    assert png.startswith(PNG_MAGIC) and png == history.with_suffix(".png").read_bytes()
    shown = [(r["data-kind"], r["data-target"], float(r["data-start"])) for r in page.fault_rows]
    assert shown == [(f.kind, f.target, f.start) for f in run.faults]
    ends = [float(r["data-end"]) if r["data-end"] else None for r in page.fault_rows]
    assert ends == [f.end for f in run.faults]
    drawn = json.loads(page.ids["chaos-data"])["faults"]
    assert [Fault(**f) for f in drawn] == run.faults
    return page


@pytest.mark.slow
@pytest.mark.timeout(240)
@needs_server
def test_chaos_one_minute_and_its_report(tmp_path):
    history = tmp_path / "run" / "history.jsonl"
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "chaos.py"),
            "--duration=60",
            f"--base-dir={tmp_path / 'cluster'}",
            f"--history={history}",
        ],
        capture_output=True,
        text=True,
        timeout=230,
    )
    verdict = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    assert p.returncode == 0, f"{verdict}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    assert verdict.startswith("chaos PASS")
    assert "kill-leader" in verdict  # the nemesis did kill leaders
    assert "progress:  " in p.stderr and "/60s" in p.stderr and "fault: " in p.stderr
    assert "linearizability: linearizable: " in p.stdout and " s CPU" in p.stdout

    run = RunLog.load(history)
    assert {f.kind for f in run.faults} >= {"kill-leader", "pause"}
    assert all(f.end is not None and f.end > f.start for f in run.faults)
    assert run.ops and all(op.member in run.meta["members"] for op in run.ops)
    assert len({s.term for s in run.leaders}) > 1  # leadership moved, and was seen moving
    page = assert_report_matches(history)
    assert page.ids["verdict"].startswith("chaos PASS")

    # the same real history with one stale read injected: `report` finds it and names it
    stale = stale_read(run)
    run.ops.append(stale)
    bad = tmp_path / "stale" / "history.jsonl"
    run.save(bad)
    page = render_failing(bad)
    assert [stale.member, f"{stale.invoke:.3f}"] == page.offending[0][1:3]


def stale_read(run: RunLog) -> Op:
    """A read, after everything else, of the first value the run wrote to a key that got
    overwritten by a later acknowledged put."""
    ops = [op for op in run.ops if op.complete is not None]
    first = next(op for op in ops if op.kind == "put" and op.client >= 0)
    later = max(op.complete for op in ops)
    return Op(first.key, "get", later + 1, later + 1.5, output=first.value, client=99, member="m1")


def render_failing(history: Path) -> Report:
    p = subprocess.run(
        [sys.executable, "-m", "cluster", "report", str(history)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert p.returncode == 1, p.stdout + p.stderr
    assert "linearizability: NOT linearizable" in p.stdout and "checked in" in p.stdout
    page = assert_report_matches(history)
    assert page.ids["verdict"].startswith("chaos FAIL: NOT linearizable")
    assert page.offending, "the report marks no operation as the one that cannot linearize"
    return page


def test_report_of_a_history_with_an_injected_stale_read_names_the_operations(tmp_path):
    rng = random.Random(7)
    ops = simulated_history(rng, ops=3000, keys=4, clients=6, think=0.01, latency=0.02)
    for op in ops:
        op.key, op.member = f"chaos/{op.key}", f"m{op.client % 3 + 1}"
    end = max(op.complete for op in ops if op.complete is not None)
    run = RunLog(
        meta={"duration": end, "members": {"m1": "", "m2": "", "m3": ""}, "seed": 7},
        ops=ops,
        faults=[Fault("pause", "m2", 1.0, 2.5), Fault("kill-leader", "m1", 4.0, None)],
        leaders=[LeaderSample(0.0, "m1", 2), LeaderSample(4.2, None, 2), LeaderSample(5, "m3", 3)],
        checks={"verdict": "chaos PASS: (as the run saw it)", "lost": [], "problems": []},
    )
    stale = stale_read(run)
    run.ops.append(stale)
    history = tmp_path / "history.jsonl"
    run.save(history)
    page = render_failing(history)
    cells = [" ".join(r) for r in page.rows]
    assert any(f"{stale.invoke:.3f}" in c and stale.output.decode() in c for c in cells)
    # the minimal sub-history also holds the write the stale read returned
    first = next(op for op in ops if op.kind == "put" and op.value == stale.output)
    assert any(f"{first.invoke:.3f}" in c and "put(" in c for c in cells)
    assert page.offending[0][1:3] == [stale.member, f"{stale.invoke:.3f}"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "kill-leader,meteor"], "unknown faults: meteor"),
        (["--compose"], "--compose needs --endpoints"),
    ],
)
def test_chaos_refuses_bad_arguments(args, message):
    p = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "chaos.py"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and message in p.stderr
