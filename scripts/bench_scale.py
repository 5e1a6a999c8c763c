"""The scale part of ``scripts/bench.py``: keys stored before the workloads, the memory they
take, and how long a member with them takes to start.

- ``preload``: N distinct keys ``pre/<i>`` (fixed width, so every request for one of them has
  the same length), written as txns of up to etcd's default ``--max-txn-ops`` (128) puts, each
  txn kept under 1 MB marshalled (etcd's default ``--max-request-bytes`` is 1.5 MiB), by many
  loaders at once, all to the leader (a follower would only forward them).
- ``rss``: a member's resident memory from ``/proc/PID/status``: VmRSS (all of it, including
  the pages of a memory-mapped db file, as bbolt's) and RssAnon (the heap alone).
- ``startup_seconds``: stop one member (SIGTERM), start it again with the same flags, and time
  until it answers ``/health`` and a serializable range of a preloaded key with that key
  (served from its own state, so this is the time to open the data dir and rebuild the index).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp

TXN_OPS = 128  # etcd's default --max-txn-ops (raftkv's too)
TXN_BYTES = 1_000_000  # under etcd's default --max-request-bytes (1.5 MiB), with room to spare
LOADERS = 16


def key_width(n: int) -> int:
    """Digits of ``pre/<i>``: at least 7 (1M keys), the same for every key of a run."""
    return max(7, len(str(n - 1)))


def preload_key(i: int, width: int) -> bytes:
    return b"pre/%0*d" % (width, i)


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


async def preload(
    session: aiohttp.ClientSession,
    url: str,
    n: int,
    value: bytes,
    headers: dict[str, str] | None,
) -> float:
    """Store keys ``pre/0 .. pre/<n-1>``; returns the seconds it took."""
    width = key_width(n)
    per_op = len(value) + width + 32  # key, value and the RequestOp / PutRequest framing
    ops = max(1, min(TXN_OPS, TXN_BYTES // per_op))
    val = b64(value)
    batches = iter(range(0, n, ops))

    async def loader() -> None:
        for start in batches:  # one shared iterator: each batch goes to exactly one loader
            puts = [
                {"request_put": {"key": b64(preload_key(i, width)), "value": val}}
                for i in range(start, min(n, start + ops))
            ]
            body = json.dumps({"success": puts}).encode()
            for attempt in range(5):  # a leader change or a timeout under load: once more
                try:
                    async with session.post(url + "/v3/kv/txn", data=body, headers=headers) as r:
                        status, text = r.status, await r.read()
                except (aiohttp.ClientError, TimeoutError) as e:
                    status, text = 0, repr(e).encode()
                if status == 200:
                    break
                if attempt == 4:
                    raise RuntimeError(f"preload txn at {start}: {status} {text[:200]!r}")
                await asyncio.sleep(0.5)

    t0 = time.monotonic()
    await asyncio.gather(*(loader() for _ in range(LOADERS)))
    return time.monotonic() - t0


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, RssAnon) of a process, in bytes."""
    fields: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "RssAnon"):
                fields[name] = int(rest.split()[0]) * 1024
    return fields["VmRSS"], fields["RssAnon"]


async def startup_seconds(
    restart: Callable[[], None],
    session: aiohttp.ClientSession,
    url: str,
    key: bytes,
    token: Callable[[], Awaitable[str]] | None,
    timeout: float = 300.0,
) -> float:
    """Time from ``restart()`` (which stops the member and starts it again) until the member
    at ``url`` is healthy and answers a serializable range of ``key`` with that key. With
    ``token``, the member is asked for a token first (a simple token lives in the memory of the
    member that assigned it, so the restarted one knows none)."""
    restart()
    t0 = time.monotonic()
    body = json.dumps({"key": b64(key), "serializable": True}).encode()
    headers: dict[str, str] | None = None
    probe = aiohttp.ClientTimeout(total=2)
    while time.monotonic() - t0 < timeout:
        try:
            if token is not None and headers is None:
                headers = {"Authorization": await token()}
            async with session.get(url + "/health", timeout=probe) as r:
                healthy = r.status == 200 and (await r.json(content_type=None)).get("health") in (
                    "true",
                    True,
                )
            if healthy:
                async with session.post(
                    url + "/v3/kv/range", data=body, headers=headers, timeout=probe
                ) as r:
                    answer = await r.json(content_type=None)
                    if r.status == 200 and answer.get("count") == "1":
                        return time.monotonic() - t0
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError):
            pass
        await asyncio.sleep(0.01)
    raise RuntimeError(f"{url} did not answer within {timeout}s of its restart")
