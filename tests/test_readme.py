"""The README's first two commands stay true: CI runs exactly the README's test command."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from cluster import LocalCluster
from tests.cluster.real import needs_server

ROOT = Path(__file__).resolve().parent.parent


def _quick_start_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "README.md must open with a ```sh block holding the two commands"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_readme_opens_with_setup_and_test_commands() -> None:
    setup, test = _quick_start_commands()[:2]
    assert "pip install" in setup
    assert "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    test = _quick_start_commands()[1]
    ci_lines = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()]
    assert test in ci_lines


def _block_after(heading: str) -> list[str]:
    """The command lines of the first ```sh block under a README heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no sh block under {heading!r}"
    return [line for line in block.group(1).splitlines() if line.strip()]


def _run_lines(lines: list[str], endpoint: str) -> list[tuple[str, subprocess.CompletedProcess]]:
    env = dict(os.environ, E=endpoint)
    ctl = f"{sys.executable} -m raftkv.cli.ctl"
    results = []
    for line in lines:
        if line.startswith("E="):
            continue
        cmd = line.replace(".venv/bin/raftkvctl", ctl)
        done = subprocess.run(
            ["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=30
        )
        results.append((line, done))
    return results


@needs_server
async def test_readme_curl_and_raftkvctl_examples_work(tmp_path: Path) -> None:
    async with LocalCluster(size=3, base_dir=tmp_path, proxy=False) as cluster:
        await cluster.wait_leader()
        endpoint = cluster.endpoints[0]

        curls = _run_lines(_block_after("## Talk to it with curl"), endpoint)
        for line, done in curls:
            watching = line.startswith("timeout")
            assert done.returncode == (124 if watching else 0), (line, done.stderr)
            assert '"error"' not in done.stdout, (line, done.stdout)
            first = json.loads(done.stdout.splitlines()[0])
            assert ("result" if watching else "header") in first, (line, done.stdout)
        outputs = {line: done.stdout for line, done in curls}
        get_foo = next(o for line, o in outputs.items() if '"key": "Zm9v"}\'' in line)
        assert '"value":"YmFy"' in get_foo and '"count":"1"' in get_foo
        txn = next(o for line, o in outputs.items() if "/v3/kv/txn" in line)
        assert '"succeeded":true' in txn
        ttl = next(o for line, o in outputs.items() if "timetolive" in line)
        assert '"keys":["dGVtcA=="]' in ttl
        deleted = next(o for line, o in outputs.items() if "deleterange" in line)
        assert '"deleted":"1"' in deleted and '"value":"YmF6"' in deleted

        ctl = _run_lines(_block_after("## raftkvctl"), ",".join(cluster.endpoints))
        for line, done in ctl:
            assert done.returncode == 0, (line, done.stdout, done.stderr)
        by_line = {line: done.stdout for line, done in ctl}
        assert by_line[".venv/bin/raftkvctl --endpoints=$E put greeting hello"] == "OK\n"
        assert by_line[".venv/bin/raftkvctl --endpoints=$E get greeting"] == "greeting\nhello\n"
        assert by_line[".venv/bin/raftkvctl --endpoints=$E del greeting"] == "1\n"
