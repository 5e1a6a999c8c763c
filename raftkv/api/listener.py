"""The client listeners: the JSON gateway (``app.py``) served on every ``--listen-client-urls``
address, over the member's ``ClientOps``."""

from __future__ import annotations

from aiohttp import web

from raftkv.api.app import create_app
from raftkv.api.ops import ClientOps
from raftkv.transport.http import split_url

__all__ = ["serve_clients"]


async def serve_clients(ops: ClientOps, urls: list[str]) -> web.AppRunner:
    """Start serving the client API on ``urls``; the runner's ``cleanup`` stops it."""
    runner = web.AppRunner(
        create_app(ops), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    for url in urls:
        host, port = split_url(url)
        await web.TCPSite(runner, host, port, reuse_address=True, backlog=1024).start()
    return runner
