"""A stand-in member for the runner's tests: etcd's flags, /health, status, a toy election.

It speaks just enough: parses the member flags and the YAML config file, serves /health,
/v3/maintenance/status and a local (unreplicated) /v3/kv/put|range on the client URL, and
every 50 ms sends one line "<name>\\n" to each peer's advertised URL (through the fault proxy)
from its own peer IP. Its leader is the smallest name among itself and the peers it heard
from in the last 400 ms, so cutting links through the proxy changes who it follows.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import yaml
from aiohttp import web


def member_id(name: str) -> int:
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") >> 1


def main() -> None:
    p = argparse.ArgumentParser()
    for flag in (
        "name",
        "data-dir",
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
        "initial-cluster",
        "initial-cluster-state",
        "initial-cluster-token",
        "config-file",
    ):
        p.add_argument("--" + flag)
    args, extra = p.parse_known_args()
    config = yaml.safe_load(Path(args.config_file).read_text()) if args.config_file else {}
    asyncio.run(run(args, extra, config))


async def run(args: argparse.Namespace, extra: list[str], config: dict) -> None:
    name = args.name
    peers = {}
    for item in args.initial_cluster.split(","):
        n, url = item.split("=", 1)
        if n != name:
            peers[n] = urlparse(url)
    heard: dict[str, float] = {}
    kv: dict[str, str] = {}
    revision = [1]

    started = time.monotonic()

    def leader() -> str | None:
        now = time.monotonic()
        if now - started < 0.5:  # "election timeout": no leader until peers had a chance
            return None
        return min([name] + [n for n, t in heard.items() if now - t < 0.4])

    async def on_peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            heard[line.decode().strip()] = time.monotonic()
        writer.close()

    async def dial(peer: str) -> None:
        src = urlparse(args.listen_peer_urls.split(",")[0]).hostname
        while True:
            try:
                u = peers[peer]
                _, w = await asyncio.open_connection(u.hostname, u.port, local_addr=(src, 0))
                while True:
                    w.write(f"{name}\n".encode())
                    await w.drain()
                    await asyncio.sleep(0.05)
            except OSError:
                await asyncio.sleep(0.05)

    def header() -> dict:
        return {
            "cluster_id": "1",
            "member_id": str(member_id(name)),
            "revision": str(revision[0]),
            "raft_term": "2",
        }

    async def status(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "header": header(),
                "version": "3.4.23",
                "dbSize": "24576",
                "leader": str(member_id(leader())) if leader() else "0",
                "raftIndex": str(revision[0] + 5),
                "raftTerm": "2",
                "raftAppliedIndex": str(revision[0] + 5),
                "dbSizeInUse": "16384",
                "fake": {"config": config, "extra": extra, "state": args.initial_cluster_state},
            }
        )

    async def health(_: web.Request) -> web.Response:
        return web.Response(text=json.dumps({"health": "true"}))

    async def put(request: web.Request) -> web.Response:
        body = await request.json()
        revision[0] += 1
        kv[body["key"]] = body.get("value", "")
        return web.json_response({"header": header()})

    async def range_(request: web.Request) -> web.Response:
        body = await request.json()
        if body["key"] not in kv:
            return web.json_response({"header": header()})
        item = {"key": body["key"], "value": kv[body["key"]], "mod_revision": str(revision[0])}
        return web.json_response({"header": header(), "kvs": [item], "count": "1"})

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/v3/maintenance/status", status)
    app.router.add_post("/v3/kv/put", put)
    app.router.add_post("/v3/kv/range", range_)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    cu = urlparse(args.listen_client_urls)
    await web.TCPSite(runner, cu.hostname, cu.port).start()
    pu = urlparse(args.listen_peer_urls)
    await asyncio.start_server(on_peer, pu.hostname, pu.port)
    tasks = [asyncio.ensure_future(dial(p)) for p in peers]
    sys.stdout.write(f"fake member {name} up: client {cu.geturl()} peer {pu.geturl()}\n")
    sys.stdout.flush()
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    sys.exit(main())
