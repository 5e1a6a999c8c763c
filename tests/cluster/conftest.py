from __future__ import annotations

import sys
from pathlib import Path

import pytest

FAKE_MEMBER = Path(__file__).resolve().parent / "fake_member.py"


@pytest.fixture
def fake_member_cmd() -> list[str]:
    """The stand-in member (tests/cluster/fake_member.py) instead of `python -m raftkv`."""
    return [sys.executable, str(FAKE_MEMBER)]
