"""``POST /v3/maintenance/snapshot``: the server-streaming Snapshot call through the gateway.

The body (a ``SnapshotRequest``, which has no fields) is decoded like any other; the answer is
200, chunked, one ``{"result": SnapshotResponse}`` line per message as etcd 3.4 sends them:
32 KiB blobs with ``remaining_bytes`` (omitted once it reaches 0), then the sha256 of the data.
Root only when auth is on (refused before the first line, as etcd's authMaintenanceServer).
A failure after the first line ends the stream with grpc-gateway's in-stream error object.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from raftkv.api.gojson import GoJSONError
from raftkv.api.http import request_token
from raftkv.api.streams import _line, _LineWriter, _send_line
from raftkv.api.unary import admin_refusal
from raftkv.errors import EtcdError, GrpcCode
from raftkv.pb import rpc

__all__ = ["handle_snapshot"]


async def handle_snapshot(request: web.Request, server: Any) -> web.StreamResponse:
    from raftkv.api.app import parse_body
    from raftkv.api.http import gateway_error

    try:
        req = parse_body(await request.read(), rpc.SnapshotRequest)
    except GoJSONError as e:
        return gateway_error(str(e))
    out = _LineWriter(request)
    try:
        await admin_refusal(server, request_token(request))
        async for resp in server.snapshot(req):
            await _send_line(out, _line(resp))
    except EtcdError as e:
        await out.stream_error(e)
    except OSError as e:
        await out.stream_error(EtcdError(str(e), GrpcCode.UNKNOWN))
    return await out.finish()
