"""Named crash points at the durability edges (etcd's gofail, reduced to what tests need).

Hot paths call ``failpoint("wal.before_sync")``; unarmed, that is one dict lookup. Tests arm a
point either in-process (``arm(name, action)``) or for a child process through the environment
variable ``RAFTKV_FAILPOINTS="wal.before_sync=crash,backend.after_meta_write=crash"``, read once at
import. Actions: ``crash`` kills the process at once with SIGKILL (nothing is flushed, exactly like
``kill -9``); ``raise`` raises ``FailpointTriggered``; ``enospc`` raises ``OSError(ENOSPC)``,
as a full disk does; a callable is called. ``action@N`` lets the first N hits pass
(``backend.after_page_write=enospc@20``: the 21st commit finds the disk full).

Every point name used anywhere is listed in ``KNOWN`` so tests can iterate over all of them.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Callable

__all__ = ["KNOWN", "FailpointTriggered", "arm", "disarm", "failpoint", "register"]

KNOWN: set[str] = set()
_armed: dict[str, str | Callable[[], None]] = {}


class FailpointTriggered(Exception):
    """Raised by a failpoint armed with the ``raise`` action."""


def register(*names: str) -> None:
    """Declare failpoint names (modules call this at import so tests can enumerate them)."""
    KNOWN.update(names)


def arm(name: str, action: str | Callable[[], None] = "crash") -> None:
    _armed[name] = action


def disarm(name: str | None = None) -> None:
    if name is None:
        _armed.clear()
    else:
        _armed.pop(name, None)


def failpoint(name: str) -> None:
    action = _armed.get(name)
    if action is not None:
        _fire(name, action)


def _fire(name: str, action: str | Callable[[], None]) -> None:
    if action == "crash":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "raise":
        raise FailpointTriggered(name)
    elif action == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    elif callable(action):
        action()


def _arm_from_env() -> None:
    spec = os.environ.get("RAFTKV_FAILPOINTS", "")
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, action = item.partition("=")
        action, _, skip = action.partition("@")
        action = action or "crash"
        arm(name, _after(name, int(skip), action) if skip else action)


def _after(name: str, skip: int, action: str) -> Callable[[], None]:
    """``action`` from the (skip+1)-th hit on."""
    hits = 0

    def fire() -> None:
        nonlocal hits
        hits += 1
        if hits > skip:
            _fire(name, action)

    return fire


_arm_from_env()
