"""Member processes by PID: spawn, signal, wait, and tell a live process from a reused PID.

A process is named by (pid, start time): the start time (field 22 of /proc/PID/stat, in clock
ticks since boot) is recorded when it is spawned and checked before every signal, so a PID
that the kernel handed to some other program after ours died is never signalled.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Proc", "kill_spawned", "spawn"]

_PR_SET_PDEATHSIG = 1
_attached: list[Proc] = []  # non-detached children: SIGKILLed at interpreter exit if still alive


@atexit.register
def kill_spawned() -> None:
    """SIGKILL every non-detached child still alive and reap it: the last resort of a run that
    was interrupted before it could stop its processes in order (and at interpreter exit)."""
    for proc in _attached:
        if proc.signal(signal.SIGKILL) and proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return raw[raw.rindex(")") + 2 :].split()


def start_time(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[19]) if fields else None


@dataclass
class Proc:
    """A process we started, as recorded in a state file: enough to find it again by PID."""

    pid: int
    started: int  # /proc start time, to refuse a reused PID
    popen: subprocess.Popen | None = None  # only in the process that spawned it

    def to_json(self) -> dict:
        return {"pid": self.pid, "started": self.started}

    @classmethod
    def from_json(cls, d: dict) -> Proc:
        return cls(pid=int(d["pid"]), started=int(d["started"]))

    def _ours(self) -> bool:
        return start_time(self.pid) == self.started

    def alive(self) -> bool:
        """Running or stopped (SIGSTOP), not a zombie, and still the process we started."""
        if self.popen is not None and self.popen.poll() is not None:
            return False
        fields = _stat(self.pid)
        if fields is None or int(fields[19]) != self.started:
            return False
        return fields[0] not in ("Z", "X")

    def state(self) -> str:
        """'running', 'paused' (SIGSTOP), or 'dead'."""
        if not self.alive():
            return "dead"
        fields = _stat(self.pid)
        return "paused" if fields and fields[0] in ("T", "t") else "running"

    def signal(self, sig: int) -> bool:
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    async def wait(self, timeout: float) -> bool:
        """Wait until the process is gone (reaping it when it is our child); True if it is."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.02)
        if self.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=1)
        return True

    async def kill(self) -> None:
        """SIGKILL and wait until it is gone (a stopped process dies of SIGKILL too)."""
        if self.signal(signal.SIGKILL):
            await self.wait(10)

    async def stop(self, grace: float = 5.0) -> None:
        """SIGCONT + SIGTERM, then SIGKILL after `grace` seconds."""
        if not self.alive():
            await self.wait(0)
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        if not await self.wait(grace):
            await self.kill()


def spawn(
    argv: list[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    detached: bool = False,
) -> Proc:
    """Start `argv` with stdout+stderr appended to `log_path`.

    detached=False: the child gets SIGKILL when the spawning thread's process dies
    (PR_SET_PDEATHSIG), so a crashed test run leaves nothing behind. detached=True: a new
    session that outlives the caller (the CLI's `up`), stopped later by PID from the state file.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab", buffering=0) as log:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=detached,
            preexec_fn=None if detached else _die_with_parent,
        )
    started = None
    for _ in range(100):
        started = start_time(popen.pid)
        if started is not None:
            break
        time.sleep(0.001)
    proc = Proc(pid=popen.pid, started=started or 0, popen=popen)
    if not detached:
        _attached[:] = [p for p in _attached if p.alive()]
        _attached.append(proc)
    return proc
