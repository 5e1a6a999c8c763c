"""Auth tokens, as etcd 3.4 issues and reads them (auth/simple_token.go, auth/jwt.go).

``--auth-token`` chooses the provider: ``simple`` (the default) or
``jwt,pub-key=<pem file>,priv-key=<pem file>,sign-method=<RS256|ES256|HS256|...>,ttl=<5m>``.

- **simple**: ``<16 random letters>.<index of the Authenticate entry>``. The proposer picks the
  letters; every member applies the entry and so knows the token. A token lives
  ``--auth-token-ttl`` seconds after its last use on the member it is used on (each member
  keeps its own clock for it), and is forgotten when its user is deleted or changes password,
  and when auth is disabled. A token whose index this member has not applied yet is waited
  for (up to the request timeout) before it is judged.
- **jwt**: a signed JWT with the claims ``username``, ``revision`` (the auth revision at
  sign time) and ``exp``; nothing is kept. A token from before the latest auth change is
  refused by the permission checks as "revision of auth store is old", as in etcd.

``info`` never raises for a bad token: it answers None (the caller says "invalid auth token").
"""

from __future__ import annotations

import asyncio
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from raftkv.errors import ErrVerifyOnly

__all__ = [
    "DEFAULT_SIMPLE_TTL",
    "NO_USER",
    "AuthInfo",
    "InvalidAuthOptions",
    "JWTTokens",
    "SimpleTokens",
    "TokenProvider",
    "new_token_provider",
    "wait_index",
]

log = structlog.get_logger("raftkv.auth")

DEFAULT_SIMPLE_TTL = 300.0
DEFAULT_JWT_TTL = 300.0
SIMPLE_TOKEN_LENGTH = 16
_LETTERS = string.ascii_lowercase + string.ascii_uppercase


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who a request runs as: ``revision`` 0 means no user (no token was given)."""

    username: str = ""
    revision: int = 0


NO_USER = AuthInfo()


class InvalidAuthOptions(ValueError):
    """``--auth-token`` cannot be used (etcd: "auth: invalid auth options" and friends)."""


class TokenProvider(Protocol):
    def gen_prefix(self) -> str: ...
    def assign(self, username: str, revision: int, prefix: str, index: int) -> str: ...
    async def info(self, token: str, revision: int) -> AuthInfo | None: ...
    def enable(self) -> None: ...
    def disable(self) -> None: ...
    def invalidate_user(self, username: str) -> None: ...


class SimpleTokens:
    def __init__(
        self,
        ttl: float = DEFAULT_SIMPLE_TTL,
        wait_applied: Callable[[int], Awaitable[bool]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl if ttl > 0 else DEFAULT_SIMPLE_TTL
        self._wait_applied = wait_applied
        self._clock = clock
        self._enabled = False
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (user, expires at)

    def gen_prefix(self) -> str:
        return "".join(secrets.choice(_LETTERS) for _ in range(SIMPLE_TOKEN_LENGTH))

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        token = f"{prefix}.{index}"
        if self._enabled:
            self._expire()
            self._tokens[token] = (username, self._clock() + self._ttl)
        return token

    async def info(self, token: str, revision: int) -> AuthInfo | None:
        parts = token.split(".")
        if len(parts) != 2:
            return None
        try:
            index = int(parts[1])
        except ValueError:
            return None
        if self._wait_applied is not None and not await self._wait_applied(index):
            return None
        got = self._tokens.get(token)
        if got is None:
            return None
        user, expires = got
        now = self._clock()
        if now > expires:
            del self._tokens[token]
            log.info("simple_token_expired", user=user)
            return None
        self._tokens[token] = (user, now + self._ttl)  # every use extends it, as in etcd
        return AuthInfo(user, revision)

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False
        self._tokens = {}

    def invalidate_user(self, username: str) -> None:
        self._tokens = {t: v for t, v in self._tokens.items() if v[0] != username}

    def _expire(self) -> None:
        now = self._clock()
        gone = [t for t, (_u, exp) in self._tokens.items() if now > exp]
        for t in gone:
            del self._tokens[t]


class JWTTokens:
    def __init__(self, method: str, key: Any, verify_key: Any, ttl: float, can_sign: bool) -> None:
        self._method = method
        self._key = key
        self._verify_key = verify_key
        self._ttl = ttl
        self._can_sign = can_sign

    def gen_prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, prefix: str, index: int) -> str:
        import jwt

        if not self._can_sign:  # (a member given only the public key)
            raise ErrVerifyOnly
        claims = {"username": username, "revision": revision, "exp": int(time.time() + self._ttl)}
        return jwt.encode(claims, self._key, algorithm=self._method)

    async def info(self, token: str, revision: int) -> AuthInfo | None:
        import jwt

        try:
            claims = jwt.decode(token, self._verify_key, algorithms=[self._method])
        except jwt.PyJWTError:
            return None
        user, rev = claims.get("username"), claims.get("revision")
        if not isinstance(user, str) or not isinstance(rev, int | float):
            return None
        return AuthInfo(user, int(rev))

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def invalidate_user(self, username: str) -> None:
        pass


def _parse_duration(s: str) -> float:
    """Go's time.ParseDuration for the forms etcd's docs use (``5m``, ``30s``, ``1h30m``,
    ``500ms``)."""
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    total, num, i = 0.0, "", 0
    if not s:
        raise InvalidAuthOptions(f"time: invalid duration {s!r}")
    while i < len(s):
        c = s[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        for u in ("ns", "us", "µs", "ms", "s", "m", "h"):
            if s.startswith(u, i) and num:
                total += float(num) * units[u]
                num, i = "", i + len(u)
                break
        else:
            raise InvalidAuthOptions(f"time: invalid duration {s!r}")
    if num:
        raise InvalidAuthOptions(f"time: missing unit in duration {s!r}")
    return total


def _jwt_provider(opts: dict[str, str]) -> JWTTokens:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    method = opts.get("sign-method", "")
    family = method[:2]
    if method not in {f"{f}{n}" for f in ("RS", "PS", "ES", "HS") for n in ("256", "384", "512")}:
        raise InvalidAuthOptions("auth: invalid auth signature method")
    ttl = _parse_duration(opts["ttl"]) if opts.get("ttl") else DEFAULT_JWT_TTL

    def read(name: str) -> bytes | None:
        path = opts.get(name)
        if not path:
            return None
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise InvalidAuthOptions(f"auth: cannot read {name} {path}: {e.strerror}") from None

    priv_pem, pub_pem = read("priv-key"), read("pub-key")
    if family == "HS":
        if not priv_pem:
            raise InvalidAuthOptions("auth: missing key data")
        return JWTTokens(method, priv_pem, priv_pem, ttl, True)
    kind = rsa if family in ("RS", "PS") else ec
    priv = serialization.load_pem_private_key(priv_pem, None) if priv_pem else None
    pub = serialization.load_pem_public_key(pub_pem) if pub_pem else None
    want_priv = rsa.RSAPrivateKey if kind is rsa else ec.EllipticCurvePrivateKey
    if priv is not None and not isinstance(priv, want_priv):
        raise InvalidAuthOptions("auth: invalid auth signature method")
    if priv is None:
        if pub is None:
            raise InvalidAuthOptions("auth: missing key data")
        return JWTTokens(method, None, pub, ttl, False)
    if pub is not None and pub.public_numbers() != priv.public_key().public_numbers():
        raise InvalidAuthOptions("auth: public and private keys don't match")
    return JWTTokens(method, priv, priv.public_key(), ttl, True)


def new_token_provider(
    spec: str, ttl: float, wait_applied: Callable[[int], Awaitable[bool]] | None = None
) -> TokenProvider:
    """The provider ``--auth-token`` names (etcd's NewTokenProvider). Raises
    InvalidAuthOptions."""
    kind, *rest = spec.split(",")
    opts: dict[str, str] = {}
    for item in rest:
        pair = item.split("=")
        if len(pair) != 2 or pair[0] in opts:
            raise InvalidAuthOptions("auth: invalid auth options")
        opts[pair[0]] = pair[1]
    if kind == "simple":
        return SimpleTokens(ttl, wait_applied)
    if kind == "jwt":
        return _jwt_provider(opts)
    raise InvalidAuthOptions("auth: invalid auth options")


async def wait_index(
    wait: Callable[[int], asyncio.Future[None]], index: int, timeout: float
) -> bool:
    """Whether this member applied ``index`` within ``timeout`` (a simple token's check)."""
    fut = wait(index)
    if fut.done():  # the common case: the token's entry was applied long ago
        return True
    try:
        await asyncio.wait_for(fut, timeout)
    except TimeoutError:
        return False
    return True
