"""Auto-compaction policies with a fake clock: etcd 3.4's periodic and revision compactors
(the schedules in v3compactor/periodic.go's comment), retention parsing, and one real member
compacting on its own in each mode."""

from __future__ import annotations

import pytest

from cluster import LocalCluster
from raftkv.server.compactor import (
    HOUR,
    PeriodicPolicy,
    RevisionPolicy,
    parse_go_duration,
    parse_retention,
)
from tests.cluster.real import needs_server
from tests.ops.helpers import FAST, eventually


def run_periodic(period: float, minutes: float, rev_per_step: int = 10) -> list[tuple[float, int]]:
    """Drive the policy as the compactor does; (time, revision) of each compaction."""
    p = PeriodicPolicy(period, now=0.0)
    now, rev, out = 0.0, 1, []
    while now < minutes * 60:
        p.record(rev)
        now += p.retry_interval
        rev += rev_per_step
        got = p.due(now, paused=False)
        if got is not None:
            out.append((now, got))
            p.succeeded(now)
    return out


def test_periodic_one_hour_waits_an_hour_then_compacts_hourly_what_is_an_hour_old():
    got = run_periodic(HOUR, minutes=190)
    assert [t / 60 for t, _ in got] == pytest.approx([60, 120, 180])
    # samples every 6 minutes, 11 kept: the first compaction takes the sample of 60 minutes
    # before, the later ones the oldest kept, 66 minutes before (the current sample is taken
    # after the check, as in etcd's loop)
    assert got[0][1] == 1
    for t, rev in got[1:]:
        assert rev == 1 + 10 * round((t - HOUR - 360) / 360)


def test_periodic_ten_minutes_compacts_every_ten_minutes():
    got = run_periodic(600, minutes=35)
    assert [t / 60 for t, _ in got] == pytest.approx([10, 20, 30])
    assert got[0][1] == 1  # the revision at the start


def test_periodic_day_retention_keeps_a_day_and_compacts_hourly():
    got = run_periodic(24 * HOUR, minutes=27 * 60)
    assert [t / HOUR for t, _ in got] == pytest.approx([24, 25, 26, 27])
    assert got[0][1] == 1 and got[1][1] > got[0][1]


def test_periodic_failure_retries_every_tenth_and_nothing_while_paused():
    p = PeriodicPolicy(600, now=0.0)
    for step in range(1, 11):
        p.record(step)
        assert p.due(step * 60.0, paused=True) is None
    assert p.due(600.0, paused=False) == 1
    # not marked succeeded (the proposal failed): retried at the next sample, at the oldest
    # revision still kept
    p.record(11)
    assert p.due(660.0, paused=False) == 1
    p.record(12)
    assert p.due(720.0, paused=False) == 2
    p.succeeded(720.0)
    p.record(13)
    assert p.due(780.0, paused=False) is None  # next one a compact interval later


def test_revision_mode_compacts_current_minus_retention_once_per_revision():
    r = RevisionPolicy(1000)
    assert r.due(500, paused=False) is None  # nothing to compact yet
    assert r.due(1500, paused=True) is None  # not the leader
    assert r.due(1500, paused=False) == 500
    r.succeeded(500)
    assert r.due(1500, paused=False) is None  # same revision as last time
    assert r.due(1600, paused=False) == 600


@pytest.mark.parametrize(
    ("mode", "text", "want"),
    [
        ("periodic", "1", HOUR),
        ("periodic", "0", 0.0),
        ("periodic", "30m", 1800.0),
        ("periodic", "1h30m", 5400.0),
        ("periodic", "1.5h", 5400.0),
        ("periodic", "500ms", 0.5),
        ("revision", "1000", 1000.0),
        ("revision", "1s", 1e9),  # etcd: a duration's nanoseconds, as revisions
    ],
)
def test_retention_parsing_as_etcd(mode, text, want):
    assert parse_retention(mode, text) == pytest.approx(want)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", 'error parsing CompactionRetention: time: invalid duration "abc"'),
        ("-1", 'error parsing CompactionRetention: time: missing unit in duration "-1"'),
        ("", 'error parsing CompactionRetention: time: invalid duration ""'),
    ],
)
def test_bad_retention_is_etcds_error(text, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_retention("periodic", text)


def test_go_durations():
    assert parse_go_duration("2h45m") == 9900.0
    assert parse_go_duration("-1.5s") == -1.5
    assert parse_go_duration("1us") == pytest.approx(1e-6)


# --- one member compacting by itself, in each mode -----------------------------------------------


async def _compacted_to(c: LocalCluster, at_least: int) -> int | None:
    cl = c.client(1)
    hk = await cl.hashkv()
    return hk["compact_revision"] if hk["compact_revision"] >= at_least else None


@needs_server
@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("mode", "retention", "env"),
    [
        ("periodic", "2s", {}),
        ("revision", "5", {"RAFTKV_REVISION_COMPACTION_INTERVAL": "0.5"}),
    ],
)
async def test_member_compacts_by_itself(tmp_path, mode, retention, env):
    import os

    settings = {"auto_compaction_mode": mode, "auto_compaction_retention": retention, **FAST}
    async with LocalCluster(1, tmp_path, env={**os.environ, **env}, **settings) as c:
        cl = c.client(1)
        for i in range(20):
            await cl.put("k", str(i))
        rev = int((await cl.status())["header"]["revision"])
        want = rev - 5 if mode == "revision" else 2
        got = await eventually(lambda: _compacted_to(c, want), 30, "auto-compaction")
        assert got <= rev
        if mode == "revision":
            assert got == rev - 5
        # history before the compacted revision is gone, after it is readable
        with pytest.raises(Exception, match="required revision has been compacted"):
            await cl.range("k", revision=got - 1)
        assert (await cl.range("k", revision=got))["count"] == 1
