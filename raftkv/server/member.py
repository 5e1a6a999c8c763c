"""The member process: storage, the server, the peer and client listeners, signals.

Peer listener (``--listen-peer-urls``): the Raft transport (``/raft/stream``,
``/raft/snapshot``), lease forwarding (``/leases``), ``GET /members`` (the member table and
cluster id, for a member joining with ``--initial-cluster-state existing``) and
``GET /version``. Client listener(s) (``--listen-client-urls``): ``raftkv.api.create_app``.

SIGTERM/SIGINT stop the member cleanly: listeners first, then the server (the backend batch
is committed, the WAL closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import signal
from typing import Any

import structlog
from aiohttp import web

from raftkv.api.listener import serve_client
from raftkv.config import Settings
from raftkv.server import lease_http
from raftkv.server.diskfull import describe_failure
from raftkv.server.etcdserver import ETCD_VERSION, EtcdServer
from raftkv.server.membership import Member, RaftCluster
from raftkv.server.storage import StartupError, open_member_storage
from raftkv.transport.http import read_response, source_addr, split_url
from raftkv.wal import WAL

__all__ = ["run_member"]

log = structlog.get_logger("raftkv.server")


def _peer_app(server: EtcdServer) -> web.Application:
    app = web.Application(client_max_size=1 << 30)
    app.add_routes(server.transport.routes())
    app.add_routes(lease_http.routes(server))
    app.add_routes(server.member_ops.routes())

    async def members(_request: web.Request) -> web.Response:
        body = {
            "cluster_id": f"{server.cluster_id:x}",
            "members": [
                {
                    "id": f"{m.id:x}",
                    "name": m.name,
                    "peerURLs": m.peer_urls,
                    "clientURLs": m.client_urls,
                    "isLearner": m.is_learner,
                }
                for m in server.cluster.members.values()
            ],
        }
        return web.json_response(body)

    async def version(_request: web.Request) -> web.Response:
        return web.json_response({"etcdserver": ETCD_VERSION, "etcdcluster": "3.4.0"})

    app.add_routes([web.get("/members", members), web.get("/version", version)])
    return app


def _client_app(server: EtcdServer) -> web.Application:
    try:
        from raftkv.api import create_app
    except ImportError as e:  # the API is not there: keep the member running without it
        log.warning("client_api_unavailable", error=str(e))
        return web.Application()
    return create_app(server)


async def _fetch_remote_cluster(cfg: Settings) -> RaftCluster:
    """Ask the other members for the cluster id and member table (joining an existing
    cluster: a member added with ``member add`` finds its id there, by its peer URLs)."""
    local = source_addr(cfg.listen_peer_urls[0])
    for name, urls in cfg.initial_cluster_map().items():
        if name == cfg.name:
            continue
        for url in urls:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(*split_url(url), local_addr=local), 2.0
                )
            except (OSError, TimeoutError):
                continue
            try:
                host, port = split_url(url)
                head = f"GET /members HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
                writer.write(head.encode())

                status, body = await asyncio.wait_for(read_response(reader), 2.0)
                if status == 200:
                    d = json.loads(body)
                    members = {
                        int(m["id"], 16): Member(
                            int(m["id"], 16),
                            m["name"],
                            m["peerURLs"],
                            m["clientURLs"],
                            m.get("isLearner", False),
                        )
                        for m in d["members"]
                    }
                    return RaftCluster(int(d["cluster_id"], 16), members)
            except Exception:
                continue
            finally:
                writer.close()
    raise StartupError(
        "cannot fetch cluster info from peer urls: could not retrieve cluster information "
        "from the given URLs"
    )


async def _serve(app: web.Application, urls: list[str]) -> web.AppRunner:
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    for url in urls:
        host, port = split_url(url)
        site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
        await site.start()
    return runner


def _tune_gc() -> None:
    """The request path allocates many short-lived, acyclic objects (freed by refcount) while
    the MVCC index holds many long-lived ones: move what startup built out of the collector's
    way and collect the young generation less often, so full collections (a pause proportional
    to the heap) stay rare."""
    if os.environ.get("RAFTKV_GC_TUNING", "1") == "0":
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 20, 50)


async def run_member(cfg: Settings) -> int:
    """Run one member until SIGTERM/SIGINT (0) or a fatal error (1)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    def fatal(e: BaseException) -> None:
        failure.append(e)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    remote = None
    if cfg.initial_cluster_state == "existing" and not WAL.exists(cfg.wal_path):
        remote = await _fetch_remote_cluster(cfg)
    ms = open_member_storage(cfg, remote)
    server = EtcdServer(cfg, ms, fatal)
    _tune_gc()
    runners: list[Any] = []
    try:
        runners.append(await _serve(_peer_app(server), cfg.listen_peer_urls))
        server.start()
        runners.append(await serve_client(_client_app(server), server, cfg.listen_client_urls))
        log.info(
            "serving",
            name=cfg.name,
            member=f"{server.member_id:x}",
            cluster=f"{server.cluster_id:x}",
            client_urls=cfg.listen_client_urls,
            peer_urls=cfg.listen_peer_urls,
        )
        await stop.wait()
    finally:
        log.info("stopping", name=cfg.name)
        for r in reversed(runners):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(r.cleanup(), 2.0)
        try:
            await server.stop()
        except Exception as e:
            if not failure:
                raise
            # the backend's last commit meets the same failure (a full disk): already reported
            log.warning("final_commit_failed", error=repr(e))
    if failure:
        reason = describe_failure(failure[0], cfg.data_dir)
        log.critical("member_stopped", reason=reason)
    return 1 if failure else 0
