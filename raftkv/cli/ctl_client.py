"""raftkvctl's HTTP client for the etcd v3 JSON gateway, with endpoint failover.

Stdlib only (urllib / http.client). A request goes to the first endpoint that accepts a
connection; connection failures move on to the next one. An etcd error reply becomes a
``CtlError`` carrying etcd's message, as etcdctl prints it.
"""

from __future__ import annotations

import http.client
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

from raftkv.api.codec import decode_message, encode_message

__all__ = ["Client", "CtlError"]


class CtlError(Exception):
    """An error etcdctl would print as ``Error: <message>``, exiting with ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _norm_endpoint(e: str, tls: bool) -> str:
    e = e.strip()
    if "://" not in e:
        e = ("https://" if tls else "http://") + e
    return e.rstrip("/")


def tls_context(cacert: str, cert: str, key: str, insecure: bool) -> ssl.SSLContext | None:
    """etcdctl's --cacert/--cert/--key/--insecure-skip-tls-verify as a client context (None:
    plain http, unless an endpoint says https)."""
    if not (cacert or cert or insecure):
        return None
    ctx = ssl.create_default_context(cafile=cacert or None)
    if cert:
        ctx.load_cert_chain(cert, key or None)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Client:
    def __init__(
        self, endpoints: list[str], timeout: float = 5.0, tls: ssl.SSLContext | None = None
    ) -> None:
        self.endpoints = [_norm_endpoint(e, tls is not None) for e in endpoints if e.strip()]
        self.timeout = timeout
        self._tls = tls
        self._good = 0  # index of the endpoint that last answered
        self.token: str | None = None  # sent as ``Authorization`` once logged in (--user)

    def _headers(self) -> dict[str, str]:
        h = {"Content-Type": "application/json"}
        if self.token is not None:
            h["Authorization"] = self.token
        return h

    def _order(self) -> list[str]:
        n = len(self.endpoints)
        return [self.endpoints[(self._good + i) % n] for i in range(n)]

    def call_raw(self, path: str, body: Any, endpoint: str | None = None) -> Any:
        data = json.dumps(body).encode()
        last: Exception | None = None
        for ep in [endpoint] if endpoint else self._order():
            req = urllib.request.Request(ep + path, data=data, headers=self._headers())
            try:
                with urllib.request.urlopen(req, timeout=self.timeout, context=self._tls) as r:
                    out = json.loads(r.read() or b"{}")
                if endpoint is None:
                    self._good = self.endpoints.index(ep)
                return out
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    msg = json.loads(raw).get("message") or json.loads(raw).get("error")
                except ValueError:
                    msg = raw.decode("utf-8", "replace").strip() or str(e)
                raise CtlError(msg) from None
            except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
                last = e
                continue
        reason = getattr(last, "reason", last)
        raise CtlError(f"context deadline exceeded ({reason})")

    def call(self, path: str, req: Any, resp_cls: type, endpoint: str | None = None) -> Any:
        return decode_message(resp_cls, self.call_raw(path, encode_message(req), endpoint))

    def stream(self, path: str, reqs: list[Any], resp_cls: type) -> Iterator[Any]:
        """POST concatenated requests to a streaming route; yield each ``result``."""
        body = b"".join(json.dumps(encode_message(r)).encode() for r in reqs)
        last: Exception | None = None
        for ep in self._order():
            u = urlsplit(ep)
            conn: http.client.HTTPConnection = (
                http.client.HTTPSConnection(
                    u.hostname, u.port or 443, timeout=None, context=self._tls
                )
                if u.scheme == "https"
                else http.client.HTTPConnection(u.hostname, u.port or 80, timeout=None)
            )
            try:
                conn.request("POST", path, body=body, headers=self._headers())
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException) as e:
                last = e
                conn.close()
                continue
            try:
                if resp.status != 200:
                    raw = resp.read()
                    try:
                        msg = json.loads(raw).get("message")
                    except ValueError:
                        msg = raw.decode("utf-8", "replace")
                    raise CtlError(msg)
                while True:
                    line = resp.readline()
                    if not line:
                        return
                    if not line.strip():
                        continue
                    d = json.loads(line)
                    if "error" in d:
                        err = d["error"]
                        raise CtlError(
                            err.get("message", str(err)) if isinstance(err, dict) else err
                        )
                    yield decode_message(resp_cls, d.get("result"))
            except (TimeoutError, OSError, http.client.HTTPException) as e:
                raise CtlError(str(e)) from None
            finally:
                conn.close()
        raise CtlError(f"context deadline exceeded ({last})")
