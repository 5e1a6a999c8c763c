"""kill -9 a process writing the WAL, at random moments and at every named failpoint.

After each kill the parent reopens the WAL (repairing a torn tail) and checks it against the
batches the child reported as saved: every reported batch is there; beyond them at most a
prefix of the one batch in flight; nothing else. Then the next child appends to the same
directory, so each round also shows the repaired WAL keeps working.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

from raftkv.raft.messages import Entry, HardState
from raftkv.wal import WAL, WalSnapshot
from raftkv.wal.wal import FAILPOINTS
from tests.wal import crash_child as child

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass
class Model:
    """What the parent knows is on disk: the full log from index 1 and the hard state."""

    log: list[Entry] = field(default_factory=list)
    hs: HardState = field(default_factory=HardState)
    snap: WalSnapshot = field(default_factory=lambda: WalSnapshot(0, 0))  # next open point


def apply(log: list[Entry], entries: list[Entry]) -> list[Entry]:
    if not entries:
        return log
    return log[: entries[0].index - 1] + entries


def read_back(dirpath: str) -> tuple[int, HardState, list[Entry]]:
    snap = child.newest_snapshot(dirpath)
    w = WAL.open(dirpath, snap, segment_size=child.SEGMENT_SIZE)
    try:
        meta, hs, ents = w.read_all()
    finally:
        w.close()
    assert meta == child.METADATA
    if ents:
        assert ents[0].index == snap.index + 1
    return snap.index, hs, ents


def verify(dirpath: str, seed: int, model: Model, reported: int) -> Model:
    """Check the WAL after a child saved ``reported`` batches; return the new model."""
    if not WAL.exists(dirpath):
        assert reported == 0 and not model.log
        return model
    snap_index, hs, ents = read_back(dirpath)
    tail = [e for e in model.log if e.index > model.snap.index]
    last, term = child.start_point(model.snap, model.hs, tail)
    gen = child.batches(seed, last, term)
    log, state = model.log, model.hs
    for _ in range(reported):
        state, entries = next(gen)
        log = apply(log, entries)
    in_flight_state, in_flight = next(gen)
    candidates = [(log, state)]
    for j in range(1, len(in_flight) + 1):
        candidates.append((apply(log, in_flight[:j]), state))
    candidates.append((apply(log, in_flight), in_flight_state))
    for cand_log, cand_state in candidates:
        if [e for e in cand_log if e.index > snap_index] == ents and cand_state == hs:
            return Model(cand_log, hs, child.newest_snapshot(dirpath))
    raise AssertionError(
        f"WAL after {reported} reported batches matches no allowed state: "
        f"entries {ents[0].index if ents else None}..{ents[-1].index if ents else None}, "
        f"hs {hs}; expected at least up to {log[-1].index if log else 0}, hs {state}"
    )


def run_child(dirpath: str, seed: int, *args: str, env_failpoints: str = "", kill_after=None):
    env = dict(os.environ, PYTHONPATH=ROOT, RAFTKV_FAILPOINTS=env_failpoints)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.wal.crash_child", dirpath, str(seed), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )
    if kill_after is not None:
        line = proc.stdout.readline()
        assert line == b"ready\n", line + proc.stderr.read()
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    lines = out.decode().split()
    reported = sum(1 for w in lines if w == "ok")
    return proc.returncode, reported, err.decode()


def test_random_kill_9_loses_nothing_reported_and_the_wal_keeps_working(tmp_path):
    dirpath = str(tmp_path / "wal")
    rng = random.Random(7)
    model = Model()
    total = 0
    for round_ in range(10):
        rc, reported, err = run_child(dirpath, round_, kill_after=rng.uniform(0.0, 0.25))
        assert rc in (-signal.SIGKILL, 0), err
        model = verify(dirpath, round_, model, reported)
        total += reported
    assert total > 50  # the children really wrote (and were cut short) many times
    rc, reported, err = run_child(dirpath, 99, "--batches", "20")
    assert rc == 0 and reported == 20, err
    model = verify(dirpath, 99, model, reported)
    assert len([n for n in os.listdir(dirpath) if n.endswith(".wal")]) >= 2


@pytest.mark.parametrize("name", FAILPOINTS)
def test_kill_at_every_failpoint_loses_nothing_reported(tmp_path, name):
    dirpath = str(tmp_path / "wal")
    model = Model()
    # 1) armed through the environment: dies at the first hit (for some points: in create)
    rc, reported, err = run_child(dirpath, 1, "--batches", "80", env_failpoints=f"{name}=crash")
    assert rc == -signal.SIGKILL, err
    model = verify(dirpath, 1, model, reported)
    # 2) dies at a later hit, on a WAL with history
    nth = random.Random(name).randint(2, 4)
    rc, reported, err = run_child(dirpath, 2, "--batches", "80", "--crash-at", f"{name}:{nth}")
    assert rc == -signal.SIGKILL, err
    model = verify(dirpath, 2, model, reported)
    # 3) and the WAL keeps working
    rc, reported, err = run_child(dirpath, 3, "--batches", "20")
    assert rc == 0 and reported == 20, err
    verify(dirpath, 3, model, reported)


def test_power_loss_of_unsynced_sectors_is_repaired_and_loses_nothing_reported(tmp_path):
    dirpath = str(tmp_path / "wal")
    rng = random.Random(11)
    model = Model()
    repaired = 0
    for round_ in range(8):
        nth = rng.randint(1, 12)
        rc, reported, err = run_child(dirpath, 100 + round_, "--tear-at", str(nth))
        assert rc == -signal.SIGKILL, err
        broken_before = _broken(dirpath)
        model = verify(dirpath, 100 + round_, model, reported)
        repaired += _broken(dirpath) != broken_before
    assert repaired >= 3  # most rounds really left a torn record behind
    rc, reported, err = run_child(dirpath, 199, "--batches", "20")
    assert rc == 0 and reported == 20, err
    verify(dirpath, 199, model, reported)


def _broken(dirpath: str) -> dict[str, float]:
    if not os.path.isdir(dirpath):
        return {}
    return {
        n: os.path.getmtime(os.path.join(dirpath, n))
        for n in os.listdir(dirpath)
        if n.endswith(".broken")
    }


def test_every_registered_wal_failpoint_is_crash_tested():
    from raftkv.failpoint import KNOWN

    assert {n for n in KNOWN if n.startswith("wal.")} == set(FAILPOINTS)
