"""Golden-file scenarios in tests/raft/testdata/*.txt (see golden.py; RAFT_REWRITE=1 rewrites)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.raft.golden import run_file

DATA = Path(__file__).parent / "testdata"


@pytest.mark.parametrize("path", sorted(DATA.glob("*.txt")), ids=lambda p: p.stem)
def test_scenario(path: Path) -> None:
    rewrite = os.environ.get("RAFT_REWRITE") == "1"
    for b in run_file(path, rewrite):
        if not rewrite:
            assert b.actual == b.expected, (
                f"{path.name}:{b.line}: {b.command}\n"
                f"--- expected\n{b.expected}\n--- got\n{b.actual}"
            )
