"""A mutual-TLS 3-member cluster (cluster.LocalCluster(tls=True), as `cluster up --tls` runs
it) through a short chaos run with leader kills, pauses and isolation: every acknowledged
write readable, the members agree, the history is linearizable (scripts/chaos.py --tls)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_chaos_run_over_tls_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    history = tmp_path / "run" / "history.jsonl"
    r = subprocess.run(
        [
            sys.executable,
            "scripts/chaos.py",
            "--tls",
            "--duration",
            "20",
            "--quiet",
            "--history",
            str(history),
            "--faults",
            "kill-leader,pause,isolate",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert r.stdout.startswith("chaos PASS"), r.stdout
    assert "kill-leader" in r.stdout
    assert history.exists() and (history.parent / "history.html").exists()
