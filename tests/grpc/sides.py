"""Run one conversation against a fresh etcd 3.4 and a fresh raftkv cluster at once (the
differential tests' ``_both``) and compare the two transcripts step by step."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.api.clusters import Cluster
from tests.api.test_differential import _both, _side

Steps = list[tuple[str, Any]]

__all__ = ["Steps", "assert_same", "on_both"]


def on_both(run: Callable[[Cluster, Steps], None]) -> dict[str, Steps]:
    """``run(cluster, steps)`` on both sides; a step that raises ends its transcript with the
    error, so the comparison shows where it broke. Skips when a side cannot start."""

    def guarded(c: Cluster) -> Steps:
        steps: Steps = []
        try:
            run(c, steps)
        except Exception as e:
            steps.append(("failed", repr(e)))
        return steps

    got = _both(guarded)
    return {k: _side(got, k) for k in ("etcd", "raftkv")}


def assert_same(got: dict[str, Steps]) -> None:
    etcd, raftkv = dict(got["etcd"]), dict(got["raftkv"])
    keys = list(dict.fromkeys([*etcd, *raftkv]))
    diffs = [k for k in keys if etcd.get(k) != raftkv.get(k)]
    assert not diffs, "\n".join(
        f"{k}:\n  etcd:   {etcd.get(k)!r}\n  raftkv: {raftkv.get(k)!r}" for k in diffs
    )
