"""The event-loop lag probe (``server/looplag.py``): a loop held by blocking work shows as lag
in both readings, ``take_max`` resets, ``recent`` forgets wakes older than its window; and a
member's /metrics carries both gauges."""

import asyncio
import time
import urllib.request

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
        assert probe.take_max() >= 0.15
        assert probe.recent() >= 0.15
        # take_max() starts again from nothing (no wake in between)
        assert probe.take_max() == 0.0
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
        assert probe.take_max() >= 0.45  # still there for the scraper: nobody took it yet
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
    assert probe.take_max() == 0.0


def test_member_metrics_export_the_loop_lag(make_cluster):
    c = make_cluster(1)
    c.start()
    m = c.wait_leader()
    with urllib.request.urlopen(m.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    got = {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}
    assert got["raftkv_event_loop_lag_seconds"] >= 0.0
    assert got["raftkv_event_loop_lag_max_seconds"] >= 0.0
    assert "# TYPE raftkv_event_loop_lag_seconds gauge" in text
    assert "# TYPE raftkv_event_loop_lag_max_seconds gauge" in text
