"""Whether the real member (`python -m raftkv`, raftkv.server) is there to run against."""

from __future__ import annotations

import importlib.util

import pytest


def _server_missing() -> str | None:
    for module in ("raftkv.__main__", "raftkv.server.etcdserver", "raftkv.cli.server"):
        try:
            if importlib.util.find_spec(module) is None:
                return module
        except ImportError:
            return module
    return None


_missing = _server_missing()
needs_server = pytest.mark.skipif(
    _missing is not None,
    reason=f"raftkv.server is not there yet ({_missing} missing): `python -m raftkv` can't run",
)
