"""A small async client of etcd's v3 JSON gateway (put/get/delete/txn/status/hashkv).

Keys and values go in as str or bytes and come back as bytes; int64 fields (sent by the
gateway as JSON strings) come back as ints in the few places this client decodes.

    async with Client("http://127.0.0.11:2379") as c:
        rev = (await c.put("k", "v"))["header"]["revision"]
        kv = await c.get("k")                  # KV(key=b"k", value=b"v", mod_revision=...)
        ok = await c.cas("k", b"v", b"w")      # txn: value == v ? put w
"""

from __future__ import annotations

import base64
import json
import ssl as ssl_module
from dataclasses import dataclass
from typing import Any

import aiohttp

__all__ = ["KV", "Client", "EtcdError", "b64", "unb64"]


def b64(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unb64(data: str | None) -> bytes:
    return base64.b64decode(data) if data else b""


class EtcdError(Exception):
    """An error answer from a member: HTTP status, gRPC code and etcd's message."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"HTTP {status} code {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class KV:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int = 0

    @classmethod
    def from_json(cls, d: dict) -> KV:
        return cls(
            key=unb64(d.get("key")),
            value=unb64(d.get("value")),
            create_revision=int(d.get("create_revision", 0)),
            mod_revision=int(d.get("mod_revision", 0)),
            version=int(d.get("version", 0)),
            lease=int(d.get("lease", 0)),
        )


def _header(resp: dict) -> dict:
    h = resp.get("header") or {}
    resp["header"] = {k: int(v) for k, v in h.items()}
    return resp


class Client:
    """One member's client endpoint. Owns an aiohttp session unless one is given."""

    def __init__(
        self,
        endpoint: str,
        *,
        timeout: float = 10.0,
        session: aiohttp.ClientSession | None = None,
        ssl: ssl_module.SSLContext | None = None,
        user: tuple[str, str] | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._ssl = ssl
        self._user = user  # (name, password): authenticate, and again when the token dies
        self._token: str | None = None
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, connector=aiohttp.TCPConnector(limit=0, ssl=self._ssl or True)
            )
            self._own_session = True
        return self._session

    async def call(self, path: str, body: dict | None = None, timeout: float | None = None) -> dict:
        """POST `body` to /v3/<path>; the decoded JSON answer, or EtcdError. With a user, the
        request carries its token; a token the member no longer knows (it restarted, or the
        token expired) is renewed once, as etcd's clientv3 does."""
        if self._user is None:
            return await self._post(path, body, timeout, None)
        if self._token is None:
            self._token = await self._login(timeout)
        try:
            return await self._post(path, body, timeout, self._token)
        except EtcdError as e:
            if e.message != "etcdserver: invalid auth token":
                raise
        self._token = await self._login(timeout)
        return await self._post(path, body, timeout, self._token)

    async def _login(self, timeout: float | None) -> str:
        assert self._user is not None
        name, password = self._user
        got = await self._post("auth/authenticate", {"name": name, "password": password}, timeout)
        return str(got["token"])

    async def _post(
        self, path: str, body: dict | None, timeout: float | None, token: str | None = None
    ) -> dict:
        kw: dict[str, Any] = {}
        if timeout is not None:
            kw["timeout"] = aiohttp.ClientTimeout(total=timeout)
        if token is not None:
            kw["headers"] = {"Authorization": token}
        async with self._sess().post(f"{self.endpoint}/v3/{path}", json=body or {}, **kw) as r:
            text = await r.text()
            try:
                data = json.loads(text) if text else {}
            except ValueError:
                data = {"error": text}
            if r.status != 200 or ("error" in data and "header" not in data):
                raise EtcdError(r.status, data.get("code"), data.get("message") or str(data))
            return data

    async def health(self, timeout: float | None = None) -> bool:
        kw = {"timeout": aiohttp.ClientTimeout(total=timeout)} if timeout else {}
        async with self._sess().get(f"{self.endpoint}/health", **kw) as r:
            data = json.loads(await r.text() or "{}")
            return r.status == 200 and data.get("health") == "true"

    # ---- kv
    async def put(self, key: str | bytes, value: str | bytes, **opts: Any) -> dict:
        return _header(await self.call("kv/put", {"key": b64(key), "value": b64(value), **opts}))

    async def range(
        self, key: str | bytes, range_end: str | bytes | None = None, **opts: Any
    ) -> dict:
        body = {"key": b64(key), **opts}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        resp = _header(await self.call("kv/range", body))
        resp["kvs"] = [KV.from_json(kv) for kv in resp.get("kvs", [])]
        resp["count"] = int(resp.get("count", 0))
        return resp

    async def get(self, key: str | bytes, **opts: Any) -> KV | None:
        kvs = (await self.range(key, **opts))["kvs"]
        return kvs[0] if kvs else None

    async def delete(self, key: str | bytes, range_end: str | bytes | None = None) -> dict:
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        return _header(await self.call("kv/deleterange", body))

    async def txn(
        self, compare: list[dict], success: list[dict], failure: list[dict] | None = None
    ) -> dict:
        """Gateway-shaped compare/ops (see cmp_* and op_* below)."""
        body = {"compare": compare, "success": success, "failure": failure or []}
        resp = _header(await self.call("kv/txn", body))
        resp["succeeded"] = bool(resp.get("succeeded", False))
        return resp

    async def cas(
        self, key: str | bytes, expected: bytes | None, new: str | bytes
    ) -> tuple[bool, int]:
        """Put `new` iff the value is `expected` (None: iff the key is absent).

        Returns (succeeded, revision of the answer's header)."""
        cmp = cmp_absent(key) if expected is None else cmp_value(key, expected)
        resp = await self.txn([cmp], [op_put(key, new)])
        return resp["succeeded"], resp["header"].get("revision", 0)

    # ---- maintenance
    async def status(self, timeout: float | None = None) -> dict:
        return await self.call("maintenance/status", {}, timeout=timeout)

    async def hashkv(self, revision: int = 0) -> dict:
        resp = await self.call("maintenance/hashkv", {"revision": revision})
        return {
            "hash": int(resp.get("hash", 0)),
            "compact_revision": int(resp.get("compact_revision", 0)),
            "header": _header(resp)["header"],
        }


async def enable_auth(endpoint: str, user: tuple[str, str], ssl: Any = None) -> None:
    """Make ``user`` a root user and enable auth (what ``etcdctl user add; auth enable`` do);
    a cluster where it is already so is left as it is."""
    name, password = user
    async with Client(endpoint, timeout=10, ssl=ssl) as c:
        try:
            await c.call("auth/user/add", {"name": name, "password": password})
        except EtcdError as e:
            if e.message == "etcdserver: user name is empty":
                return  # auth is on already (a request without a token)
            if e.message != "etcdserver: user name already exists":
                raise
        await c.call("auth/user/grant", {"user": name, "role": "root"})
        await c.call("auth/enable")


def cmp_value(key: str | bytes, value: str | bytes, result: str = "EQUAL") -> dict:
    return {"key": b64(key), "target": "VALUE", "result": result, "value": b64(value)}


def cmp_absent(key: str | bytes) -> dict:
    return {"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}


def op_put(key: str | bytes, value: str | bytes) -> dict:
    return {"request_put": {"key": b64(key), "value": b64(value)}}


def op_get(key: str | bytes) -> dict:
    return {"request_range": {"key": b64(key)}}
