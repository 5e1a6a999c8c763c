"""A mutual-TLS 3-member cluster (cluster.LocalCluster(tls=True), as `cluster up --tls` runs
it) with auth enabled, through a short chaos run with leader kills, pauses and isolation:
every acknowledged write readable, the members agree, the history is linearizable
(scripts/chaos.py --tls --auth: every client authenticates, and again when a restarted member
no longer knows its token)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_chaos_run_over_tls_with_auth_keeps_every_acknowledged_write(tmp_path: Path) -> None:
    history = tmp_path / "run" / "history.jsonl"
    r = subprocess.run(
        [
            sys.executable,
            "scripts/chaos.py",
            "--tls",
            "--auth",
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
    acked = re.search(r"(\d+) acked writes", r.stdout)
    assert acked is not None and int(acked.group(1)) > 0, r.stdout  # (as root, with tokens)
    assert history.exists() and (history.parent / "history.html").exists()
