"""A reader thread sees a stable committed state while the writer goes on."""

import threading

from raftkv.backend import Backend
from raftkv.backend.check import _Checker
from raftkv.backend.page import PAGE_SIZE

KEYS = [b"k%03d" % i for i in range(300)]


def commit_generation(be: Backend, gen: int) -> None:
    """Every key gets the same value: a reader must never see two generations mixed."""
    value = b"%08d" % gen * 20
    for k in KEYS:
        be.put(b"key", k, value)
    be.put(b"meta", b"gen", b"%08d" % gen)
    be.commit()


def test_reader_thread_sees_consistent_snapshots_during_writes(tmp_path):
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
                    if len(snap.range(b"key", b"", reverse=True, limit=7)) != 7:
                        errors.append("short reverse range")
                    seen.add(gen)
        except Exception as e:  # surfaced below
            errors.append(repr(e))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for gen in range(1, 80):
        commit_generation(be, gen)
        if gen % 10 == 0:
            be.put(b"meta", b"gen", b"99999999")  # the buffer is invisible to snapshots
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert len(seen) >= 2  # the readers ran while the writer committed
    assert be.check() == []
    be.close()


def reachable_pages(snap) -> dict[int, bytes]:
    st = snap._state()
    checker = _Checker(st.pager, st.meta)
    assert checker.run() == []
    out = {}
    with open(st.pager.path, "rb") as f:
        for pgid in checker.owner:
            if pgid < 2:
                continue  # the meta pages are the commit point, rewritten by design
            f.seek(pgid * PAGE_SIZE)
            out[pgid] = f.read(PAGE_SIZE)
    return out


def test_pages_a_snapshot_can_reach_are_not_reused_until_it_closes(tmp_path):
    be = Backend.open(str(tmp_path / "db"))
    be.create_bucket(b"key")
    be.create_bucket(b"meta")
    commit_generation(be, 0)
    snap = be.read_snapshot()
    before = reachable_pages(snap)
    for gen in range(1, 30):  # each generation rewrites every leaf
        commit_generation(be, gen)
    with open(be.path, "rb") as f:
        for pgid, buf in before.items():
            f.seek(pgid * PAGE_SIZE)
            assert f.read(PAGE_SIZE) == buf, f"page {pgid} was reused under an open snapshot"
    assert {v for _, v in snap.range(b"key", b"")} == {b"%08d" % 0 * 20}
    size_pinned = be.size
    snap.close()
    for gen in range(30, 60):
        commit_generation(be, gen)
    assert be.size <= size_pinned  # released pages are reused once the snapshot is gone
    with open(be.path, "rb") as f:
        changed = 0
        for pgid, buf in before.items():
            f.seek(pgid * PAGE_SIZE)
            changed += f.read(PAGE_SIZE) != buf
    assert changed > 0
    be.close()


def test_snapshot_dropped_without_close_is_unpinned_by_the_next_commit(tmp_path):
    import gc

    be = Backend.open(str(tmp_path / "db"))
    be.create_bucket(b"key")
    be.create_bucket(b"meta")
    commit_generation(be, 0)
    snap = be.read_snapshot()
    assert be._db.readers
    del snap
    gc.collect()
    commit_generation(be, 1)
    assert not be._db.readers
    be.close()


def test_write_to_from_a_thread_during_commits_copies_one_consistent_state(tmp_path):
    import io

    be = Backend.open(str(tmp_path / "db"))
    be.create_bucket(b"key")
    be.create_bucket(b"meta")
    commit_generation(be, 0)
    copies: list[bytes] = []

    def copier():
        for _ in range(5):
            buf = io.BytesIO()
            be.write_to(buf)
            copies.append(buf.getvalue())

    t = threading.Thread(target=copier)
    t.start()
    gen = 1
    while t.is_alive():
        commit_generation(be, gen)
        gen += 1
    t.join()
    be.close()
    for i, data in enumerate(copies):
        path = tmp_path / f"copy{i}"
        path.write_bytes(data)
        with Backend.open(str(path)) as c:
            assert c.check() == []
            with c.read_snapshot() as snap:
                g = int(snap.get(b"meta", b"gen"))
                assert {v for _, v in snap.range(b"key", b"")} == {b"%08d" % g * 20}
