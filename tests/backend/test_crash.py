"""Crash tests with real files: kill -9 a committing child, reopen, compare with the model.

Each runs with the child committing on its own thread (``sync``) and with pipelined commits
(``commit_async``: the crash hits the commit thread while the next batch is being written).

After any crash the file must hold exactly the last committed batch the child reported, or
the one it was committing (its meta may have reached the file before the kill), and
``check()`` must pass. Named failpoints pin the crash to each step of the commit protocol,
where the expected outcome is exact.
"""

import os
import random
import select
import signal
import subprocess
import sys
import time

import pytest

from raftkv import failpoint
from raftkv.backend import FAILPOINTS, Backend, BackendError

from .crash_child import BUCKETS, state_after

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# failpoint -> which state survives: the last reported batch ("old") or the one in flight
OUTCOME = {
    "backend.after_page_write": "old",
    "backend.before_meta_write": "old",
    "backend.after_meta_write": "new",  # the meta write reached the page cache before the kill
    "backend.after_meta_sync": "new",
}


@pytest.fixture
def children():
    """Child processes of a test; killed at teardown whatever happened."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()
        if p.stdout and not p.stdout.closed:
            p.stdout.close()


def start_child(path: str, seed: int, failpoints: str = "", arm_after: int = 0, mode: str = "sync"):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["RAFTKV_FAILPOINTS"] = failpoints
    args = [sys.executable, "-m", "tests.backend.crash_child", path, str(seed), str(arm_after)]
    if mode == "pipelined":
        args.append(mode)
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)


def recovered_batch(path: str, seed: int, last_reported: int) -> int:
    """Reopen, check the data is exactly one of the two allowed states; its batch number."""
    be = Backend.open(path)
    try:
        assert be.check() == []
        with be.read_snapshot() as snap:
            raw = snap.get(b"meta", b"batch")
            got = int.from_bytes(raw, "big") if raw else 0
            assert got in (last_reported, last_reported + 1), (got, last_reported)
            expect = state_after(seed, got)
            for bucket in (*BUCKETS, b"meta"):
                assert dict(snap.items(bucket)) == expect[bucket], bucket
        return got
    finally:
        be.close()


def test_failpoints_are_registered():
    assert set(FAILPOINTS) <= failpoint.KNOWN
    assert set(OUTCOME) == set(FAILPOINTS)


@pytest.mark.parametrize("mode", ["sync", "pipelined"])
def test_kill_at_random_points_leaves_one_of_the_last_two_states(tmp_path, children, mode):
    path = str(tmp_path / "db")
    seed = 11
    rnd = random.Random(seed)
    last = 0
    for _ in range(12):
        child = start_child(path, seed, mode=mode)
        children.append(child)
        lines = 0
        want = rnd.randint(1, 4)
        while lines < want:
            ready, _, _ = select.select([child.stdout], [], [], 60)
            if not ready:
                child.kill()
                pytest.fail("child printed nothing for 60 s")
            line = child.stdout.readline()
            if not line:
                break
            last = int(line)
            lines += 1
        time.sleep(rnd.uniform(0, 0.05))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        assert child.returncode == -signal.SIGKILL  # it did not stop on its own
        for line in out.split():
            last = int(line)
        last = recovered_batch(path, seed, last)


@pytest.mark.parametrize("mode", ["sync", "pipelined"])
@pytest.mark.parametrize("name", sorted(OUTCOME))
def test_kill_at_failpoint_leaves_the_expected_state(tmp_path, name, children, mode):
    path = str(tmp_path / "db")
    seed = 23
    last = 0
    for arm_after in (1, 3):  # the second run resumes on the recovered file
        child = start_child(path, seed, f"{name}=crash", arm_after, mode)
        children.append(child)
        out, _ = child.communicate(timeout=60)
        assert child.returncode == -signal.SIGKILL
        reported = [int(x) for x in out.split()]
        assert len(reported) == arm_after
        last = reported[-1]
        got = recovered_batch(path, seed, last)
        assert got == (last if OUTCOME[name] == "old" else last + 1)
        last = got


def test_commit_failing_before_the_meta_write_rolls_back_and_can_be_retried(tmp_path):
    path = str(tmp_path / "db")
    be = Backend.open(path)
    be.create_bucket(b"key")
    for i in range(3000):
        be.put(b"key", b"%05d" % i, b"1" * 50)
    be.commit()
    for i in range(3000):
        be.put(b"key", b"%05d" % i, b"2" * 50)
    for name in ("backend.after_page_write", "backend.before_meta_write"):
        failpoint.arm(name, "raise")
        try:
            with pytest.raises(failpoint.FailpointTriggered):
                be.commit()
        finally:
            failpoint.disarm(name)
        assert be.get(b"key", b"00007") == b"2" * 50  # still buffered
        with be.read_snapshot() as snap:
            assert snap.get(b"key", b"00007") == b"1" * 50
        assert be.check() == []
    be.commit()
    assert be.check() == []
    be.close()
    with Backend.open(path) as b:
        assert b.get(b"key", b"02999") == b"2" * 50
        assert b.check() == []


def test_commit_failing_after_the_meta_write_stops_the_backend(tmp_path):
    path = str(tmp_path / "db")
    be = Backend.open(path)
    be.create_bucket(b"key")
    be.put(b"key", b"a", b"1")
    be.commit()
    be.put(b"key", b"a", b"2")
    failpoint.arm("backend.after_meta_write", "raise")
    try:
        with pytest.raises(BackendError, match="meta write"):
            be.commit()
    finally:
        failpoint.disarm("backend.after_meta_write")
    with pytest.raises(BackendError, match="reopen"):
        be.commit()
    be.close()  # does not try to commit again
    with Backend.open(path) as b:
        assert b.get(b"key", b"a") in (b"1", b"2")
        assert b.check() == []


def test_defragment_interrupted_before_its_rename_leaves_the_file_as_it_was(tmp_path):
    path = str(tmp_path / "db")
    be = Backend.open(path)
    be.create_bucket(b"key")
    for i in range(3000):
        be.put(b"key", b"%05d" % i, b"v" * 100)
    be.commit()
    h = be.hash()
    failpoint.arm("backend.defrag_before_rename", "raise")
    try:
        with pytest.raises(failpoint.FailpointTriggered):
            be.defragment()
    finally:
        failpoint.disarm("backend.defrag_before_rename")
    assert os.path.exists(path + ".defrag")
    assert be.hash() == h
    be.put(b"key", b"after", b"x")
    be.close()
    with Backend.open(path) as b:
        assert not os.path.exists(path + ".defrag")
        assert b.get(b"key", b"after") == b"x"
        assert b.check() == []
