"""Shared bits of the operations tests: fast member settings, raw calls, waiting on a condition."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from cluster import LocalCluster
from cluster.client import EtcdError, b64

__all__ = ["FAST", "b64", "call_error", "eventually", "member_ids", "scrape"]

FAST = {"heartbeat_interval": 50, "election_timeout": 500}


async def eventually(
    check: Callable[[], Awaitable[Any]], timeout: float = 20.0, what: str = "condition"
) -> Any:
    """Until ``check()`` returns a truthy value (returned); AssertionError after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = await check()
            if last:
                return last
        except (TimeoutError, EtcdError, OSError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s (last: {last!r})")
        await asyncio.sleep(0.1)


async def call_error(client: Any, path: str, body: dict) -> tuple[int, int | None, str]:
    """(HTTP status, gRPC code, message) of a call that must fail."""
    try:
        resp = await client.call(path, body)
    except EtcdError as e:
        return e.status, e.code, e.message
    raise AssertionError(f"{path} {body} succeeded: {resp}")


async def member_ids(c: LocalCluster) -> dict[str, int]:
    sts = await c.statuses()
    return {name: int(st["header"]["member_id"]) for name, st in sts.items() if st}


async def scrape(endpoint: str) -> tuple[str, dict[str, float]]:
    """GET /metrics: (content type, {sample name with labels: value})."""
    async with aiohttp.ClientSession() as http, http.get(f"{endpoint}/metrics") as r:
        assert r.status == 200
        text = await r.text()
        ctype = r.headers["Content-Type"]
    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(smp.labels.items()))
            out[smp.name + (f"{{{labels}}}" if labels else "")] = smp.value
    return ctype, out
