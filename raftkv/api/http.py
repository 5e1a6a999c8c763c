"""HTTP framing of etcd's gateway answers: headers, JSON bodies, and the error shapes.

etcd 3.4 answers through grpc-gateway behind a CORS wrapper, so every response carries the
three ``Access-Control-*`` headers. Success: ``application/json`` with
``Grpc-Metadata-Content-Type: application/grpc`` and a Content-Length. Errors raised while the
gateway decodes the body: a plain JSON error with a Content-Length. Errors returned by the gRPC
server: the same JSON, but chunked, with an HTTP trailer ``Grpc-Trailer-Content-Type``.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from raftkv.api.codec import dumps
from raftkv.errors import EtcdError, GrpcCode, http_status

__all__ = [
    "CORS",
    "ERR_HEADERS",
    "METRICS_CONTENT_TYPE",
    "OK_HEADERS",
    "Response",
    "error_body",
    "gateway_error",
    "grpc_error",
    "json_ok",
    "method_not_allowed",
    "not_found",
    "request_token",
]

log = structlog.get_logger("raftkv.api")


def request_token(request: web.Request) -> str | None:
    """The caller's auth token: grpc-gateway passes ``Grpc-Metadata-Token`` as the ``token``
    metadata and ``Authorization`` as ``authorization``; etcd reads ``token`` first."""
    h = request.headers
    got = h.get("Grpc-Metadata-Token")
    return got if got is not None else h.get("Authorization")


CORS = {
    "Access-Control-Allow-Headers": "accept, content-type, authorization",
    "Access-Control-Allow-Methods": "POST, GET, OPTIONS, PUT, DELETE",
    "Access-Control-Allow-Origin": "*",
}
OK_HEADERS = {
    **CORS,
    "Content-Type": "application/json",
    "Grpc-Metadata-Content-Type": "application/grpc",
}
ERR_HEADERS = {**CORS, "Content-Type": "application/json"}
_TEXT_HEADERS = {
    **CORS,
    "Content-Type": "text/plain; charset=utf-8",
    "X-Content-Type-Options": "nosniff",
}


class Response(web.Response):
    """A Response without aiohttp's ``Server`` header (Go's net/http sends none)."""

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self._headers.popall("Server", None)


class _RawChunked(web.StreamResponse):
    """A chunked response whose framing we write ourselves, so it can end with a trailer."""

    _length_check = False

    async def _prepare_headers(self) -> None:
        await super()._prepare_headers()
        self._headers.popall("Server", None)


# Go's net/http buffers 2048 bytes before it commits to a Content-Length; grpc-gateway writes
# a body in one Write, so a longer body goes out chunked, as a single chunk.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # etcd 3.4's promhttp
GO_BUFFER_BEFORE_CHUNKING = 2048


async def json_ok(request: web.Request, body: bytes) -> web.StreamResponse:
    if len(body) <= GO_BUFFER_BEFORE_CHUNKING or request.version < (1, 1):
        return Response(body=body, headers=OK_HEADERS)
    resp = _RawChunked(headers={**OK_HEADERS, "Transfer-Encoding": "chunked"})
    await _send_raw(request, resp, b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
    return resp


async def _send_raw(request: web.Request, resp: _RawChunked, data: bytes) -> None:
    """Write a whole raw-chunked answer. A client that hung up first (it gave up waiting, e.g.
    on a request that timed out) is no error of ours: noted at debug level, nothing raised."""
    try:
        await resp.prepare(request)
        await resp.write(data)
        await resp.write_eof()
    except ConnectionResetError:  # aiohttp: "Cannot write to closing transport"
        log.debug("client_gone", path=request.path, status=resp.status)


def error_body(message: str, code: int) -> bytes:
    return dumps({"error": message, "message": message, "code": code})


def gateway_error(message: str, code: GrpcCode = GrpcCode.INVALID_ARGUMENT) -> web.Response:
    """An error from the gateway itself (body decoding): JSON with a Content-Length."""
    return Response(
        status=http_status(code), body=error_body(message, int(code)), headers=ERR_HEADERS
    )


async def grpc_error(request: web.Request, err: EtcdError) -> web.StreamResponse:
    """An error returned by the gRPC server: chunked JSON, then the gRPC trailer."""
    body = error_body(err.message, int(err.code))
    if request.version < (1, 1):  # no chunks (nor trailers) in HTTP/1.0
        headers = {**ERR_HEADERS, "Trailer": "Grpc-Trailer-Content-Type"}
        return Response(status=err.http_status, body=body, headers=headers)
    resp = _RawChunked(
        status=err.http_status,
        headers={
            **ERR_HEADERS,
            "Trailer": "Grpc-Trailer-Content-Type",
            "Transfer-Encoding": "chunked",
        },
    )
    await _send_raw(
        request,
        resp,
        b"%x\r\n%s\r\n0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n" % (len(body), body),
    )
    return resp


def not_found(path: str) -> web.Response:
    # grpc-gateway answers under /v3/; anything else falls to Go's default mux.
    text = b"Not Found\n" if path.startswith("/v3/") else b"404 page not found\n"
    return Response(status=404, body=text, headers=_TEXT_HEADERS)


def method_not_allowed(allow: str | None = None) -> web.Response:
    headers = dict(_TEXT_HEADERS)
    if allow:
        headers = {
            **CORS,
            "Allow": allow,
            **{k: v for k, v in _TEXT_HEADERS.items() if k not in CORS},
        }
    return Response(status=405, body=b"Method Not Allowed\n", headers=headers)
