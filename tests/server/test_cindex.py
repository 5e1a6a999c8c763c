"""The consistent index lives in the backend's meta bucket, is written in the open batch (so it
is durable exactly when the entry's writes are), survives a reopen, and is left out of the
MVCC hash."""

from raftkv.backend import Backend
from raftkv.lease import Lessor
from raftkv.mvcc import KVStore
from raftkv.server.cindex import ConsistentIndex, read_consistent_index


def test_the_index_is_persisted_with_the_batch_and_read_back(tmp_path):
    path = str(tmp_path / "db")
    with Backend.open(path) as b:
        KVStore(b, Lessor(b))  # creates the buckets
        ci = ConsistentIndex(b)
        assert ci.value == 0
        ci.set(42)
        assert read_consistent_index(b) == 42  # visible in the batch at once
    with Backend.open(path) as b:
        assert ConsistentIndex(b).value == 42


def test_an_uncommitted_index_is_lost_with_its_batch(tmp_path):
    path = str(tmp_path / "db")
    b = Backend.open(path)
    KVStore(b, Lessor(b))
    b.commit()
    ConsistentIndex(b).set(7)
    b._db.close()  # a crash: the batch never committed
    with Backend.open(path) as b2:
        assert ConsistentIndex(b2).value == 0


def test_the_mvcc_hash_leaves_the_index_out(tmp_path):
    with Backend.open(str(tmp_path / "db")) as b:
        kv = KVStore(b, Lessor(b))
        before = kv.hash()
        ConsistentIndex(b).set(99)
        assert kv.hash() == before


def test_reload_reads_the_index_of_a_replaced_file(tmp_path):
    src, dst = str(tmp_path / "src"), str(tmp_path / "db")
    with Backend.open(src) as b:
        KVStore(b, Lessor(b))
        ConsistentIndex(b).set(500)
    with Backend.open(dst) as b:
        KVStore(b, Lessor(b))
        ci = ConsistentIndex(b)
        ci.set(3)

        def install() -> None:
            import os

            os.replace(src, dst)

        b.replace_file(install)
        assert ci.value == 3  # the cache is the old file's until reloaded
        ci.reload()
        assert ci.value == 500
        assert b.generation == 1
