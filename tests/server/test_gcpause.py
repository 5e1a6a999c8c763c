"""The collector-pause watch times real collections and logs the long ones."""

from __future__ import annotations

import gc

import structlog

from raftkv.server import gcpause
from raftkv.server.gcpause import GCPauseWatch


def test_a_full_collection_is_timed_and_a_long_one_logged(monkeypatch):
    w = GCPauseWatch()
    w.start()
    w.start()  # (a second user installs nothing more)
    assert gc.callbacks.count(w._on_gc) == 1
    w.stop()
    assert w._on_gc in gc.callbacks  # (one user left)
    heap = [[i] for i in range(300_000)]  # tracked objects for the collector to walk
    assert len(heap) == 300_000
    try:
        monkeypatch.setattr(gcpause, "LOG_OVER", 0.0)
        with structlog.testing.capture_logs() as logs:
            gc.collect(2)
        first = w.take_max()
        assert first[2] > 0.0
        assert w.counts[2] >= 1
        assert w.take_max() == [0.0, 0.0, 0.0]  # reset by the read
        pause = [e for e in logs if e["event"] == "gc_pause"]
        assert pause and pause[-1]["generation"] == 2
    finally:
        w.stop()
    assert w._on_gc not in gc.callbacks
    gc.collect(2)
    assert w.take_max() == [0.0, 0.0, 0.0]  # stopped: nothing timed
