"""A one-minute chaos run against a real 3-member cluster (the full run: scripts/chaos.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.cluster.real import needs_server

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(240)
@needs_server
def test_chaos_one_minute(tmp_path):
    p = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "chaos.py"),
            "--duration=60",
            f"--base-dir={tmp_path / 'cluster'}",
            f"--history={tmp_path / 'history.jsonl'}",
        ],
        capture_output=True,
        text=True,
        timeout=230,
    )
    verdict = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    assert p.returncode == 0, f"{verdict}\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}"
    assert verdict.startswith("chaos PASS")
    assert "kill-leader" in verdict  # the nemesis did kill leaders


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
