"""The proxy helper process: every member's FaultProxy plus a small HTTP control endpoint.

Runs detached from the runner so that the proxies outlive `python -m cluster up`:

    python -m cluster.proxy_server SPEC.json

SPEC.json: {"members": [{"name", "ip", "proxy_port", "peer_port"}, ...],
            "control_host": "127.0.0.1", "ready_file": PATH}
Once every listener is bound it writes READY_FILE: {"control": "http://127.0.0.1:PORT", "pid": N}.

Control API (JSON):
    GET  /faults                     -> {"rules": [...], "connections": {"m1->m2": 1, ...}}
    POST /faults {"src","dst", "cut"?, "mode"?, "latency_ms"?, "drop"?} -> the link's rule
    POST /heal   {"src"?, "dst"?}    -> clears the matching links (all when empty)
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

from cluster.proxy import FaultProxy, Faults

__all__ = ["ProxyControl", "ProxySet", "main"]


class ProxySet:
    """All proxies of one cluster, sharing one fault table."""

    def __init__(self, members: list[dict]) -> None:
        self.faults = Faults()
        sources = {m["ip"]: m["name"] for m in members}
        self.proxies = [
            FaultProxy(
                m["name"],
                (m["ip"], int(m["proxy_port"])),
                (m["ip"], int(m["peer_port"])),
                sources,
                self.faults,
            )
            for m in members
        ]

    async def start(self) -> None:
        for p in self.proxies:
            await p.start()

    async def close(self) -> None:
        for p in self.proxies:
            await p.close()


def _log(msg: str) -> None:
    sys.stdout.write(f"{time.strftime('%H:%M:%S')} {msg}\n")
    sys.stdout.flush()


def control_app(proxies: ProxySet) -> web.Application:
    faults = proxies.faults

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(faults.snapshot())

    async def post_faults(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            src, dst = body.pop("src"), body.pop("dst")
            rule = faults.set(src, dst, **body)
        except (KeyError, ValueError, TypeError) as e:
            return web.json_response({"error": str(e)}, status=400)
        _log(f"{src}->{dst}: {rule.to_json()}")
        return web.json_response({"src": src, "dst": dst, **rule.to_json()})

    async def post_heal(request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        faults.heal(body.get("src"), body.get("dst"))
        _log(f"heal {body.get('src') or '*'}->{body.get('dst') or '*'}")
        return web.json_response(faults.snapshot())

    app = web.Application()
    app.router.add_get("/faults", get_faults)
    app.router.add_post("/faults", post_faults)
    app.router.add_post("/heal", post_heal)
    return app


class ProxyControl:
    """Client of a proxy helper's control endpoint."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")

    async def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as s,
            s.request(method, self.url + path, json=body) as r,
        ):
            data = await r.json(content_type=None)
            if r.status != 200:
                raise RuntimeError(f"proxy control {path}: {data.get('error', r.status)}")
            return data

    async def set(self, src: str, dst: str, **rule) -> dict:
        return await self._call("POST", "/faults", {"src": src, "dst": dst, **rule})

    async def heal(self, src: str | None = None, dst: str | None = None) -> dict:
        body = {k: v for k, v in (("src", src), ("dst", dst)) if v is not None}
        return await self._call("POST", "/heal", body)

    async def faults(self) -> dict:
        return await self._call("GET", "/faults")


async def serve(spec: dict) -> None:
    proxies = ProxySet(spec["members"])
    await proxies.start()
    runner = web.AppRunner(control_app(proxies), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, spec.get("control_host", "127.0.0.1"), 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    ready = Path(spec["ready_file"])
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(json.dumps({"control": f"http://127.0.0.1:{port}", "pid": os.getpid()}))
    tmp.rename(ready)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    _log(
        f"proxies up: {', '.join(f'{p.name} {p.listen[0]}:{p.listen[1]}' for p in proxies.proxies)}"
    )
    await stop.wait()
    await runner.cleanup()
    await proxies.close()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m cluster.proxy_server SPEC.json", file=sys.stderr)
        return 2
    asyncio.run(serve(json.loads(Path(args[0]).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
