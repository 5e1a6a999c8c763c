"""Pipelined commits: writes and reads go on while a commit is in flight in the commit thread.

A gate (a failpoint armed with a callable that waits) holds the commit thread at a chosen step
of the commit protocol, so "in flight" is a state a test can stand in, not a race it hopes for.
"""

import asyncio
import random
import threading
import time
from bisect import bisect_left

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, settings
from hypothesis.stateful import precondition, rule

from raftkv import failpoint
from raftkv.backend import Backend, BackendError
from raftkv.backend.page import PAGE_SIZE

from .test_concurrency import commit_generation, reachable_pages
from .test_property import BackendVsDict


class Gate:
    """Holds the commit thread at failpoint ``name`` until opened."""

    def __init__(self, name: str = "backend.before_meta_write") -> None:
        self.name = name
        self.reached = threading.Event()
        self.opened = threading.Event()
        failpoint.arm(name, self._hold)

    def _hold(self) -> None:
        self.reached.set()
        assert self.opened.wait(30), "gate never opened"

    def wait_reached(self) -> None:
        assert self.reached.wait(30), "the commit never reached the gate"

    def open(self) -> None:
        failpoint.disarm(self.name)
        self.opened.set()


@pytest.fixture(autouse=True)
def _no_failpoints_left():
    yield
    failpoint.disarm()


def expect_range(model: dict, start: bytes, end: bytes | None, limit: int, reverse: bool):
    items = sorted(model.items())
    lo = bisect_left(items, (start,))
    hi = len(items) if end is None else max(lo, bisect_left(items, (end,)))
    out = items[lo:hi]
    if reverse:
        out.reverse()
    return out[:limit] if limit else out


def assert_view(be: Backend, bucket: bytes, model: dict) -> None:
    for k in [b"k%04d" % i for i in range(0, 400, 7)] + [b"\x00missing"]:
        assert be.get(bucket, k) == model.get(k)
    for start, end in ((b"", None), (b"k0100", b"k0200"), (b"k0150", b"k0151"), (b"z", None)):
        for reverse in (False, True):
            for limit in (0, 3):
                got = be.range(bucket, start, end, limit=limit, reverse=reverse)
                assert got == expect_range(model, start, end, limit, reverse), (start, end)


def test_reads_merge_the_buffer_over_the_commit_in_flight_over_the_committed_state(tmp_path):
    be = Backend.open(str(tmp_path / "db"), batch_limit=10**9)
    be.create_bucket(b"key")
    model: dict[bytes, bytes] = {}
    for i in range(0, 400, 2):
        k = b"k%04d" % i
        be.put(b"key", k, b"c" * (i % 7) * 300)  # some values out of line
        model[k] = b"c" * (i % 7) * 300
    be.commit()
    committed = dict(model)
    for i in range(0, 400, 3):  # the batch to be in flight: overwrite, add, delete
        k = b"k%04d" % i
        if i % 9 == 0:
            be.delete(b"key", k)
            model.pop(k, None)
        else:
            be.put(b"key", k, b"f%d" % i)
            model[k] = b"f%d" % i
    frozen = dict(model)
    gate = Gate()
    fut = be.commit_async()
    gate.wait_reached()
    assert be.pending == 0
    assert_view(be, b"key", model)
    for i in range(0, 400, 5):  # the new buffer, on top of the frozen batch
        k = b"k%04d" % i
        if i % 4 == 0:
            be.delete(b"key", k)
            model.pop(k, None)
        else:
            be.put(b"key", k, b"n%d" % i)
            model[k] = b"n%d" % i
    assert_view(be, b"key", model)
    with be.read_snapshot() as snap:  # a snapshot sees the last commit only
        assert dict(snap.items(b"key")) == committed
    assert be.check() == []  # the walker is valid while a commit is in flight
    assert not fut.done()
    gate.open()
    be.wait_commit()
    assert fut.done() and fut.exception() is None
    assert_view(be, b"key", model)
    with be.read_snapshot() as snap:
        assert dict(snap.items(b"key")) == frozen
    be.close()
    with Backend.open(str(tmp_path / "db")) as b:
        assert dict(b.range(b"key", b"")) == model
        assert b.check() == []


def test_one_commit_in_flight_the_next_waits_for_it(tmp_path):
    be = Backend.open(str(tmp_path / "db"), batch_limit=10**9)
    be.create_bucket(b"key")
    be.put(b"key", b"a", b"1")
    gate = Gate()
    first = be.commit_async()
    gate.wait_reached()
    be.put(b"key", b"a", b"2")
    threading.Timer(0.2, gate.open).start()
    t0 = time.monotonic()
    second = be.commit_async()  # waits for the first one
    assert time.monotonic() - t0 >= 0.15
    assert first.done() and first.exception() is None
    second.result(30)
    be.wait_commit()
    with be.read_snapshot() as snap:
        assert snap.get(b"key", b"a") == b"2"
    assert be.commit_async() is None  # nothing pending
    be.close()


def test_pages_reachable_from_the_committed_state_are_not_written_by_the_commit_in_flight(
    tmp_path,
):
    be = Backend.open(str(tmp_path / "db"))
    be.create_bucket(b"key")
    be.create_bucket(b"meta")
    for gen in range(5):  # the freelist has pages to hand out
        commit_generation(be, gen)
    for gen in range(5, 25):
        with be.read_snapshot() as snap:
            before = reachable_pages(snap)
        for k in (b"k%03d" % i for i in range(300)):
            be.put(b"key", k, b"%08d" % gen * 20)
        gate = Gate("backend.before_meta_write")  # its pages are written and synced
        be.commit_async()
        gate.wait_reached()
        with open(be.path, "rb") as f:
            for pgid, buf in before.items():
                f.seek(pgid * PAGE_SIZE)
                assert f.read(PAGE_SIZE) == buf, f"page {pgid} overwritten by the commit in flight"
        gate.open()
        be.wait_commit()
        assert be.check() == []
    be.close()


def test_readers_and_writer_during_pipelined_commits(tmp_path):
    be = Backend.open(str(tmp_path / "db"))
    be.create_bucket(b"key")
    be.create_bucket(b"meta")
    commit_generation(be, 0)
    stop = threading.Event()
    errors: list[str] = []
    seen: set[int] = set()

    def reader():
        try:
            while not stop.is_set():
                with be.read_snapshot() as snap:
                    gen = int(snap.get(b"meta", b"gen"))
                    values = {v for _, v in snap.range(b"key", b"")}
                    if values != {b"%08d" % gen * 20}:
                        errors.append(f"generation {gen}: mixed values {len(values)}")
                    seen.add(gen)
        except Exception as e:  # surfaced below
            errors.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for gen in range(1, 120):
            value = b"%08d" % gen * 20
            for i, k in enumerate(b"k%03d" % i for i in range(300)):
                be.put(b"key", k, value)
                if i % 50 == 0:  # the writer's merged view, while the last batch commits
                    assert be.get(b"key", k) == value
                    assert {v for _, v in be.range(b"key", b"", limit=i + 1)} == {value}
            be.put(b"meta", b"gen", b"%08d" % gen)
            be.commit_async()
            assert int(be.get(b"meta", b"gen")) == gen
            assert {v for _, v in be.range(b"key", b"k150", reverse=True)} == {value}
    finally:
        stop.set()
        for t in threads:
            t.join()
    be.wait_commit()
    assert errors == []
    assert len(seen) >= 2
    assert be.check() == []
    be.close()


def test_the_commit_in_flight_carries_the_consistent_index_of_its_writes(tmp_path):
    """The server's shape: each entry writes its index, then its data; commits start between
    entries. Every committed state must hold exactly the entries up to the index it records."""
    rnd = random.Random(5)
    be = Backend.open(str(tmp_path / "db"), batch_limit=10**9)
    be.create_bucket(b"key")
    be.create_bucket(b"meta")

    def check_committed(snap) -> int:
        raw = snap.get(b"meta", b"consistent_index")
        ci = int.from_bytes(raw, "big") if raw else 0
        entries = {int(k[1:7]) for k, _ in snap.range(b"key", b"")}
        assert entries == set(range(1, ci + 1)), ci
        return ci

    last = 0
    for index in range(1, 600):
        be.put(b"meta", b"consistent_index", index.to_bytes(8, "big"))
        for j in range(rnd.choice((1, 3, 40))):
            be.put(b"key", b"e%06d/%03d" % (index, j), rnd.randbytes(rnd.choice((8, 300, 5000))))
        if rnd.random() < 0.1:
            be.commit_async()
        if rnd.random() < 0.2:
            with be.read_snapshot() as snap:
                ci = check_committed(snap)
                assert last <= ci <= index
                last = ci
    be.close()
    with Backend.open(str(tmp_path / "db")) as b, b.read_snapshot() as snap:
        assert check_committed(snap) == 599
        assert b.check() == []


def test_commit_in_flight_failing_before_its_meta_write_goes_back_under_the_buffer(tmp_path):
    path = str(tmp_path / "db")
    be = Backend.open(path, batch_limit=10**9)
    be.create_bucket(b"key")
    be.put(b"key", b"a", b"1")
    be.put(b"key", b"b", b"1")
    be.commit()
    be.put(b"key", b"a", b"2")
    be.put(b"key", b"c", b"2")
    be.delete(b"key", b"b")
    failpoint.arm("backend.after_page_write", "enospc")
    fut = be.commit_async()
    be.put(b"key", b"a", b"3")  # newer than the failing batch: must win after the fold-back
    be.put(b"key", b"d", b"3")
    assert isinstance(fut.exception(30), OSError)
    failpoint.disarm("backend.after_page_write")
    with pytest.raises(OSError):
        be.wait_commit()  # the writer thread learns of it when it reaps the commit
    want = [(b"a", b"3"), (b"c", b"2"), (b"d", b"3")]
    assert be.range(b"key", b"") == want
    assert be.pending == 5
    with be.read_snapshot() as snap:
        assert dict(snap.items(b"key")) == {b"a": b"1", b"b": b"1"}
    assert be.check() == []
    be.commit_async().result(30)  # the retry commits both batches
    be.close()
    with Backend.open(path) as b:
        assert b.range(b"key", b"") == want
        assert b.check() == []


def test_commit_in_flight_failing_after_its_meta_write_stops_the_backend(tmp_path):
    path = str(tmp_path / "db")
    be = Backend.open(path)
    be.create_bucket(b"key")
    be.put(b"key", b"a", b"1")
    be.commit()
    be.put(b"key", b"a", b"2")
    failpoint.arm("backend.after_meta_write", "raise")
    be.commit_async()
    be.put(b"key", b"a", b"3")
    with pytest.raises(BackendError, match="meta write"):
        be.wait_commit()
    failpoint.disarm("backend.after_meta_write")
    with pytest.raises(BackendError, match="reopen"):
        be.commit_async()
    be.close()
    with Backend.open(path) as b:
        assert b.get(b"key", b"a") in (b"1", b"2")
        assert b.check() == []


def test_commit_in_thread_keeps_the_event_loop_running(tmp_path):
    be = Backend.open(str(tmp_path / "db"), batch_interval=0.0)
    be.create_bucket(b"key")
    commits: list[float] = []
    be.commit_observer = commits.append

    async def main() -> None:
        be.put(b"key", b"a", b"1")
        gate = Gate()
        task = asyncio.create_task(be.commit_if_due_in_thread())
        while not gate.reached.is_set():
            await asyncio.sleep(0.001)
        for ticks in range(1, 21):  # the loop runs while the commit thread is held
            await asyncio.sleep(0)
            be.put(b"key", b"b", b"%d" % ticks)
        assert not task.done()
        gate.open()
        assert await task is True
        assert commits and be.pending == 20
        assert await be.commit_if_due_in_thread() is True
        assert await be.commit_if_due_in_thread() is False  # nothing pending
        failpoint.arm("backend.before_meta_write", "raise")
        be.put(b"key", b"c", b"1")
        with pytest.raises(failpoint.FailpointTriggered):
            await be.commit_in_thread()
        failpoint.disarm("backend.before_meta_write")
        await be.commit_in_thread()

    asyncio.run(main())
    with be.read_snapshot() as snap:
        assert dict(snap.items(b"key")) == {b"a": b"1", b"b": b"20", b"c": b"1"}
    assert len(commits) == 3
    be.close()


class PipelinedBackendVsDict(BackendVsDict):
    """The dict model with commits left in flight (held at a gate) across other steps."""

    def __init__(self):
        super().__init__()
        self.gate: Gate | None = None
        self.landing: dict | None = None  # the committed data once the commit in flight lands

    def land(self) -> None:
        if self.gate is not None:
            self.gate.open()
            self.be.wait_commit()
            self.committed = self.landing
            self.gate = self.landing = None

    def teardown(self):
        if self.gate is not None:
            self.gate.open()
        failpoint.disarm()
        super().teardown()

    @precondition(lambda self: self.gate is None)
    @rule(step=st.sampled_from(["backend.after_page_write", "backend.before_meta_write"]))
    def commit_async(self, step):
        self.gate = Gate(step)
        self.landing = {b: dict(d) for b, d in self.model.items()}
        if self.be.commit_async() is None:
            self.gate.open()
            self.gate = None
            self.committed = self.landing
            return
        self.gate.wait_reached()

    @precondition(lambda self: self.gate is not None)
    @rule()
    def let_it_land(self):
        self.land()

    @rule()
    def commit(self):
        self.land()
        super().commit()

    @rule()
    def reopen(self):
        self.land()
        super().reopen()


PipelinedBackendVsDict.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestPipelinedBackendVsDict = PipelinedBackendVsDict.TestCase


def test_commit_soon_hands_the_batch_over_without_waiting_for_the_commit_in_flight(tmp_path):
    be = Backend.open(str(tmp_path / "db"), batch_limit=10**9)
    be.create_bucket(b"key")
    assert be.commit_soon() is True  # the bucket creation
    be.wait_commit()
    assert be.commit_soon() is False  # nothing pending
    be.put(b"key", b"a", b"1")
    gate = Gate()
    assert be.commit_soon() is True
    gate.wait_reached()
    be.put(b"key", b"b", b"2")
    assert be.commit_soon() is False  # the first is held at the gate: no wait, no freeze
    assert be.pending == 1 and be.get(b"key", b"a") == b"1"
    gate.open()
    be.wait_commit()
    assert be.commit_soon() is True  # the second batch, now that the first is reaped
    be.wait_commit()
    with be.read_snapshot() as snap:
        assert dict(snap.items(b"key")) == {b"a": b"1", b"b": b"2"}
    failpoint.arm("backend.before_meta_write", "raise")
    be.put(b"key", b"c", b"3")
    assert be.commit_soon() is True
    with pytest.raises(failpoint.FailpointTriggered):  # reaped by a later call; batch goes back
        while not be.commit_soon():  # (False while the failing commit is still in flight)
            time.sleep(0.001)
    failpoint.disarm("backend.before_meta_write")
    assert be.pending == 1 and be.commit_soon() is True
    be.close()
    with Backend.open(str(tmp_path / "db")) as b:
        assert dict(b.range(b"key", b"")) == {b"a": b"1", b"b": b"2", b"c": b"3"}


def test_forced_commits_on_the_loop_wait_for_a_hold_to_end(tmp_path):
    """A snapshot taken or sent while an online defragment copies (``hold_commits``) waits:
    committing then would make the copy stale."""
    be = Backend.open(str(tmp_path / "db"), batch_limit=10**9)
    be.create_bucket(b"key")
    be.commit()

    async def run() -> None:
        be.put(b"key", b"a", b"1")
        be.hold_commits = True
        forced = asyncio.ensure_future(be.commit_in_thread())
        marked = asyncio.ensure_future(be.commit_marked(lambda: be.pending))
        await asyncio.sleep(0.1)
        assert not forced.done() and not marked.done()
        assert be.pending == 1  # nothing committed under the hold
        assert await be.commit_if_due_in_thread() is False  # the periodic commit goes on
        be.hold_commits = False
        await asyncio.wait_for(forced, 5)
        assert await asyncio.wait_for(marked, 5) == 0  # (committed by the first)
        assert be.pending == 0

    asyncio.run(run())
    with be.read_snapshot() as snap:
        assert dict(snap.items(b"key")) == {b"a": b"1"}
    be.close()
