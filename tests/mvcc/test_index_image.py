"""The index image written at a clean stop: the next start takes it instead of a rebuild, gets
exactly the index a rebuild gives, and never uses an image that does not match its backend."""

from __future__ import annotations

import os
import shutil
import zlib
from pathlib import Path

import msgpack
import pytest

from raftkv.mvcc import index_image
from tests.mvcc.helpers import Env, delete, get, put


def _history(env: Env) -> None:
    """Keys with one revision, with many, deleted, re-created, leased, and a compaction."""
    env.lessor.grant(7, 60, now=0.0)
    s = env.store
    for i in range(2000):
        s.put(put(b"k%04d" % (i % 700), b"v%d" % i, lease=7 if i % 9 == 0 else 0))
    s.delete_range(delete(b"k0100", b"k0150"))
    s.put(put(b"k0120", b"again"))
    s.compact(1500)
    while s.compact_step():
        pass
    s.delete_range(delete(b"k0600"))
    s.put(put(b"only-once", b"x"))


def _stop(env: Env) -> None:
    env.backend.commit()
    env.store.save_image()
    env.close()


def test_a_clean_stop_image_gives_the_index_a_rebuild_gives(tmp_path):
    env = Env(str(tmp_path / "m"))
    _history(env)
    _stop(env)
    image_path = index_image.path_beside(env.path)
    assert os.path.exists(image_path)

    os.makedirs(tmp_path / "copy")
    shutil.copyfile(env.path, tmp_path / "copy" / "db")  # the same file, without the image

    env._open()  # the start after the clean stop
    taken = env.store
    assert taken.restored_from == "image"
    assert not os.path.exists(image_path)  # good for one start only
    other = Env(str(tmp_path / "copy"))
    rebuilt = other.store
    assert rebuilt.restored_from == "backend"

    assert taken._index == rebuilt._index
    assert (taken.current_revision, taken.compact_revision) == (
        rebuilt.current_revision,
        rebuilt.compact_revision,
    )
    everything = get(b"\x00", b"\x00")
    assert taken.range(everything).kvs == rebuilt.range(everything).kvs
    at = get(b"\x00", b"\x00", revision=1600)
    assert taken.range(at).kvs == rebuilt.range(at).kvs
    env.close()
    other.close()
    env._open()  # and the start after that rebuilds: the image was taken
    assert env.store.restored_from == "backend"
    env.close()


def test_leases_and_history_come_back_from_the_image(tmp_path):
    env = Env(str(tmp_path / "m"))
    _history(env)
    keys_before = env.lessor.keys_of(7)
    rev = env.store.current_revision
    _stop(env)
    env._open()
    s = env.store
    assert s.restored_from == "image"
    assert env.lessor.keys_of(7) == keys_before != []
    assert s.current_revision == rev
    # a key with history keeps working as one: a put after the start bumps its version
    before = s.range(get(b"k0001")).kvs[0]
    s.put(put(b"k0001", b"new"))
    after = s.range(get(b"k0001")).kvs[0]
    assert after.version == before.version + 1
    assert after.create_revision == before.create_revision
    assert s.range(get(b"k0600")).kvs == []  # deleted before the stop
    env.close()


def test_an_image_is_ignored_once_the_backend_moved_on(tmp_path):
    """A start that did not stop cleanly (a crash after more writes) meets an old image only
    if one was left behind; its txid gives it away."""
    env = Env(str(tmp_path / "m"))
    _history(env)
    _stop(env)
    image_path = index_image.path_beside(env.path)
    saved = Path(image_path).read_bytes()
    env._open()
    env.store.put(put(b"written-after", b"1"))
    env.backend.commit()
    env.close()
    with open(image_path, "wb") as f:  # as if the old image were still there
        f.write(saved)
    env._open()
    assert env.store.restored_from == "backend"
    assert env.store.range(get(b"written-after")).kvs
    assert not os.path.exists(image_path)
    env.close()


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: b[:-1],  # cut short
        lambda b: b[:40] + bytes([b[40] ^ 1]) + b[41:],  # one bit flipped
        lambda b: b"NOT-AN-IMAGE\n" + b[13:],
        lambda b: b"",
    ],
    ids=["truncated", "bit-flip", "magic", "empty"],
)
def test_a_damaged_image_means_a_rebuild_never_a_wrong_index(tmp_path, damage):
    env = Env(str(tmp_path / "m"))
    _history(env)
    _stop(env)
    image_path = index_image.path_beside(env.path)
    data = Path(image_path).read_bytes()
    with open(image_path, "wb") as f:
        f.write(damage(data))
    env._open()
    assert env.store.restored_from == "backend"
    assert len(env.store.range(get(b"\x00", b"\x00")).kvs) == 700 - 50 + 1 - 1 + 1
    env.close()


def test_an_image_of_another_shape_means_a_rebuild(tmp_path):
    """Intact bytes (the CRC holds) of an unexpected layout, e.g. from another version."""
    env = Env(str(tmp_path / "m"))
    _history(env)
    _stop(env)
    for payload in [(5, 1), (12, 1, [b"a"], [(1, 1, 1)], [], []), ((1, b""), "x", [], [], [], [])]:
        body = msgpack.packb(payload)
        with open(index_image.path_beside(env.path), "wb") as f:
            f.write(index_image.MAGIC + body + zlib.crc32(body).to_bytes(4, "big"))
        env._open()
        assert env.store.restored_from == "backend"
        env.close()


def test_no_image_while_a_compaction_is_unfinished(tmp_path):
    env = Env(str(tmp_path / "m"))
    s = env.store
    for i in range(3000):
        s.put(put(b"k%04d" % (i % 100), b"v"))
    s.compact(2000)
    assert s.compact_step()  # started, more to do
    _stop(env)
    assert not os.path.exists(index_image.path_beside(env.path))
