"""The event-loop lag probe (``server/looplag.py``): a loop held by blocking work shows as lag
in both readings, ``take_max`` resets, ``recent`` forgets wakes older than its window; the
worst lag is split into the time the loop ran and the time it waited for a CPU; and a
member's /metrics carries the gauges."""

import asyncio
import math
import os
import time
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from raftkv.server.looplag import LoopLagProbe


async def _wakes(n: int) -> None:
    """Let the probe wake at least ``n`` times (its interval is 10 ms)."""
    for _ in range(n):
        await asyncio.sleep(0.011)


async def test_a_blocked_loop_shows_as_lag_at_the_next_wake():
    probe = LoopLagProbe()
    probe.start()
    try:
        await _wakes(3)
        probe.take_max()
        asyncio.get_running_loop().call_soon(time.sleep, 0.2)
        await _wakes(3)
        assert probe.take_max().lag >= 0.15
        assert probe.recent() >= 0.15
        # take_max() starts again from nothing (no wake in between)
        assert probe.take_max().lag == 0.0
    finally:
        probe.stop()


async def test_recent_forgets_wakes_older_than_its_window():
    probe = LoopLagProbe(window=0.05)
    probe.start()
    try:
        asyncio.get_running_loop().call_soon(time.sleep, 0.5)
        await _wakes(2)
        assert probe.recent() >= 0.45
        await _wakes(15)  # > 150 ms of wakes: the blocked one is out of the window
        assert probe.recent() < 0.45
        assert probe.take_max().lag >= 0.45  # still there for the scraper: nobody took it yet
    finally:
        probe.stop()


async def test_a_stopped_probe_no_longer_wakes():
    probe = LoopLagProbe()
    probe.start()
    await _wakes(2)
    probe.stop()
    probe.take_max()
    asyncio.get_running_loop().call_soon(time.sleep, 0.1)
    await _wakes(3)
    assert probe.take_max().lag == 0.0


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.skipif(not os.path.exists("/proc/thread-self/schedstat"), reason="Linux only")
async def test_the_worst_lag_says_whether_the_loop_ran_or_slept():
    probe = LoopLagProbe()
    probe.start()
    loop = asyncio.get_running_loop()
    try:
        await _wakes(3)
        probe.take_max()
        loop.call_soon(_spin, 0.2)  # work on the loop: the lag is time run
        await _wakes(3)
        busy = probe.take_max()
        assert busy.lag >= 0.15
        assert busy.ran >= 0.15
        assert busy.ran + busy.queued <= busy.lag + 0.02  # (the interval: lag + 10 ms)
        loop.call_soon(time.sleep, 0.2)  # the loop thread blocked: neither ran nor queued
        await _wakes(3)
        slept = probe.take_max()
        assert slept.lag >= 0.15
        assert slept.ran + slept.queued < 0.1
    finally:
        probe.stop()
    assert math.isnan(probe.take_max().ran)  # nothing since the last reading


def test_member_metrics_export_the_loop_lag(make_cluster):
    c = make_cluster(1)
    c.start()
    m = c.wait_leader()
    with urllib.request.urlopen(m.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    got = {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert got["raftkv_event_loop_lag_seconds"] >= 0.0
    assert got["raftkv_event_loop_lag_max_seconds"] >= 0.0
    for split in ("ran", "queued"):  # (NaN where /proc has no schedstat)
        value = got[f"raftkv_event_loop_lag_max_{split}_seconds"]
        assert value >= 0.0 or math.isnan(value)
    assert "# TYPE raftkv_event_loop_lag_seconds gauge" in text
    assert "# TYPE raftkv_event_loop_lag_max_seconds gauge" in text
