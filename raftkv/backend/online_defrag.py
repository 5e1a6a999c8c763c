"""Online defragment: copy in a worker thread, swap in on the writer thread.

``Backend.defragment()`` rewrites the file with no writer running. A member must keep applying
while it defragments, so the work is split in two:

- ``compact_copy(backend)`` (a worker thread; it lets the loop's thread in, see ``breathe``):
  writes the last *committed* state compactly to ``<path>.defrag`` from a pinned read state
  (pages it reaches are never reused meanwhile) and returns the txid it copied;
- ``swap_in(backend, txid)`` (the writer thread): if no commit happened since that txid, renames
  the copy over the file and reopens it (milliseconds); writes buffered since then stay in the
  Backend's buffer and are committed onto the new file. If a commit did happen, the copy is
  stale: it is removed and the caller tries again.

``Backend.hold_commits`` keeps ``commit_if_due`` and ``commit_soon`` from committing while the
copy is being made, and makes the forced commits of the event loop (``commit_in_thread``,
``commit_marked``: a snapshot taken or sent) wait until it is over, so under steady load the
first attempt succeeds (a batch that reaches ``HELD_PENDING_LIMIT`` still commits; then the
next attempt catches it).
"""

from __future__ import annotations

import contextlib
import os

from .backend import Backend
from .breathe import Breather
from .defrag import install, write_compact
from .errors import BackendError

__all__ = ["compact_copy", "swap_in"]


def _tmp(backend: Backend) -> str:
    return backend.path + ".defrag"


def compact_copy(backend: Backend) -> int:
    """Write the committed state compactly beside the file; the txid copied."""
    try:
        meta = write_compact(backend._db, _tmp(backend), Breather())
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(_tmp(backend))
        raise BackendError(f"{backend.path}: defragment failed: {e}") from e
    return meta.txid - 1


def swap_in(backend: Backend, txid: int) -> bool:
    """Install the copy made at ``txid``; False (copy removed) if a commit came since."""
    backend.wait_commit()  # no commit thread may be writing to the file being replaced
    db = backend._db
    if db.state.meta.txid != txid:
        with contextlib.suppress(OSError):
            os.unlink(_tmp(backend))
        return False
    install(db, _tmp(backend))
    return True
