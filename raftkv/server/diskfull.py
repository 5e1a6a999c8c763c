"""A full disk stops the member, cleanly, with a message that says what to do.

ENOSPC (or EDQUOT) can surface while the WAL appends or cuts a segment, or while the backend
writes a commit's pages. Neither leaves damage: a WAL record that was not written whole is a
torn tail, truncated at the next start; a backend commit that fails before its meta page is
rolled back (the previous meta stays the valid one). What must not happen is a member that
goes on half-working (applying without being able to commit, or retrying forever), so every
place that meets such an error hands it to the server's ``fatal``: the member stops serving,
exits 1, and the reason is the last thing it prints. Once space is freed it restarts from its
WAL and catches up from the other members like any member that was down.
"""

from __future__ import annotations

import errno

__all__ = ["describe_failure", "is_disk_full"]

_FULL = {errno.ENOSPC, errno.EDQUOT}


def _chain(e: BaseException | None):
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def is_disk_full(e: BaseException) -> bool:
    """True if ``e`` (or what caused it) is a full disk or an exhausted quota."""
    return any(isinstance(x, OSError) and x.errno in _FULL for x in _chain(e))


def describe_failure(e: BaseException, data_dir: str) -> str:
    """The one line a member prints when it stops because of ``e``."""
    if is_disk_full(e):
        return (
            f"stopped: the disk holding {data_dir} is full ({e}); nothing was served after "
            "the failed write and nothing on disk is damaged: free space, then restart this "
            "member (it recovers from its WAL and catches up from the other members)"
        )
    return f"stopped after a fatal error: {e!r}"
