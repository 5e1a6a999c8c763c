"""Property tests: the backend behaves like a plain dict across commits and reopens."""

import shutil
import tempfile
from bisect import bisect_left

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftkv.backend import Backend

BUCKETS = [b"key", b"lease"]
keys = st.binary(min_size=1, max_size=6).map(lambda b: b.ljust(2, b"\x00"))
values = st.one_of(
    st.binary(max_size=40),
    st.integers(0, 255).map(lambda n: bytes([n]) * 700),  # ~6 per page
    st.integers(0, 255).map(lambda n: bytes([n]) * 5000),  # out of line
)
buckets = st.sampled_from(BUCKETS)


class BackendVsDict(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="backend_prop_")
        self.path = self.dir + "/db"
        self.be = Backend.open(self.path, batch_limit=10**9)
        for b in BUCKETS:
            self.be.create_bucket(b)
        self.model: dict[bytes, dict[bytes, bytes]] = {b: {} for b in BUCKETS}
        self.committed = {b: {} for b in BUCKETS}
        self.snaps: list = []  # (open ReadSnapshot, the committed data it must keep seeing)

    def teardown(self):
        for snap, _ in self.snaps:
            snap.close()
        self.be.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(bucket=buckets, key=keys, value=values)
    def put(self, bucket, key, value):
        self.be.put(bucket, key, value)
        self.model[bucket][key] = value

    @rule(
        bucket=buckets, first=st.integers(0, 2**16), n=st.integers(1, 300), size=st.integers(0, 300)
    )
    def put_many(self, bucket, first, n, size):
        for i in range(first, first + n):
            k = i.to_bytes(3, "big")
            v = k * (size // 3)
            self.be.put(bucket, k, v)
            self.model[bucket][k] = v

    @rule(bucket=buckets, key=keys)
    def delete(self, bucket, key):
        self.be.delete(bucket, key)
        self.model[bucket].pop(key, None)

    @precondition(lambda self: any(self.model.values()))
    @rule(bucket=buckets, data=st.data())
    def delete_range(self, bucket, data):
        ks = sorted(self.model[bucket])
        if not ks:
            return
        a = data.draw(st.integers(0, len(ks) - 1))
        b = data.draw(st.integers(a, len(ks)))
        for k in ks[a:b]:
            self.be.delete(bucket, k)
            del self.model[bucket][k]

    @rule(bucket=buckets, key=keys)
    def get(self, bucket, key):
        assert self.be.get(bucket, key) == self.model[bucket].get(key)

    @rule(
        bucket=buckets,
        start=keys,
        end=st.one_of(st.none(), keys),
        limit=st.integers(0, 5),
        reverse=st.booleans(),
    )
    def range(self, bucket, start, end, limit, reverse):
        items = sorted(self.model[bucket].items())
        lo = bisect_left(items, (start,))
        hi = len(items) if end is None else max(lo, bisect_left(items, (end,)))
        expect = items[lo:hi]
        if reverse:
            expect.reverse()
        if limit:
            expect = expect[:limit]
        assert self.be.range(bucket, start, end, limit=limit, reverse=reverse) == expect

    @rule()
    def commit(self):
        self.be.commit()
        self.committed = {b: dict(d) for b, d in self.model.items()}

    @rule()
    def reopen(self):
        for snap, _ in self.snaps:
            snap.close()
        self.snaps = []
        self.be.close()
        self.be = Backend.open(self.path, batch_limit=10**9)
        self.committed = {b: dict(d) for b, d in self.model.items()}

    @precondition(lambda self: len(self.snaps) < 3)
    @rule()
    def open_snapshot(self):
        model = {b: dict(d) for b, d in self.committed.items()}
        self.snaps.append((self.be.read_snapshot(), model))

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def old_snapshot_still_sees_its_state(self, data):
        snap, model = data.draw(st.sampled_from(self.snaps))
        for b in BUCKETS:
            assert dict(snap.items(b)) == model[b]

    @precondition(lambda self: self.snaps)
    @rule(data=st.data())
    def close_snapshot(self, data):
        i = data.draw(st.integers(0, len(self.snaps) - 1))
        self.snaps.pop(i)[0].close()

    @rule()
    def snapshot_sees_the_last_commit(self):
        with self.be.read_snapshot() as snap:
            for b in BUCKETS:
                assert dict(snap.items(b)) == self.committed[b]

    @invariant()
    def healthy(self):
        assert self.be.check() == []


BackendVsDict.TestCase.settings = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
TestBackendVsDict = BackendVsDict.TestCase


def test_deep_trees_grow_and_collapse_under_random_batches(tmp_path):
    import random

    rnd = random.Random(7)
    be = Backend.open(str(tmp_path / "db"), batch_limit=10**9)
    be.create_bucket(b"key")
    model: dict[bytes, bytes] = {}
    for round_ in range(12):
        for _ in range(6000):
            k = rnd.randrange(200_000).to_bytes(4, "big")
            if round_ >= 8 or rnd.random() < 0.15:
                be.delete(b"key", k)
                model.pop(k, None)
            else:
                v = rnd.randbytes(rnd.choice((0, 8, 60, 3000)))
                be.put(b"key", k, v)
                model[k] = v
        if round_ >= 8:  # delete most of what is left: the tree shrinks level by level
            for k in list(model)[: len(model) * 3 // 4]:
                be.delete(b"key", k)
                del model[k]
        be.commit()
        assert be.check() == []
        assert be.range(b"key", b"") == sorted(model.items())
    be.close()
