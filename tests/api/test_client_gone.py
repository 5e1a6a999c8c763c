"""A client that hangs up before its answer (it gave up waiting on a request that timed out)
is not an error: no traceback, at most a debug-level event."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from raftkv import errors
from raftkv.api.http import grpc_error, json_ok


async def _answer_after_hang_up(caplog, answer) -> None:
    done = asyncio.Event()
    outcome: list[object] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        try:
            while request.transport is not None and not request.transport.is_closing():
                await asyncio.sleep(0.01)
            return await answer(request)
        except BaseException as e:
            outcome.append(e)
            raise
        finally:
            done.set()

    app = web.Application()
    app.router.add_post("/v3/kv/put", handler)
    runner = web.AppRunner(app, handler_cancellation=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    try:
        with caplog.at_level(logging.DEBUG):
            _r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            await w.drain()
            await asyncio.sleep(0.05)
            w.transport.abort()
            await asyncio.wait_for(done.wait(), 5)
            await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
    assert outcome == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "Traceback" not in caplog.text


async def test_timeout_answer_to_a_client_that_hung_up_is_quiet(caplog):
    await _answer_after_hang_up(
        caplog, lambda request: grpc_error(request, errors.ErrTimeoutDueToConnectionLost)
    )


async def test_long_answer_to_a_client_that_hung_up_is_quiet(caplog):
    await _answer_after_hang_up(caplog, lambda request: json_ok(request, b"{" + b" " * 4096 + b"}"))
