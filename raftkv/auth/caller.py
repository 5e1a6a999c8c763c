"""The caller of the client request being served, as etcd carries it in the request's context.

``CALLER`` is set by the client API's pipeline (``raftkv.api.unary``) around one call: the
``AuthInfo`` of the caller's token, ``NO_USER`` when auth is on and no token came, or None
(auth off, no token: nothing to check). The proposer copies it into the proposal's
``RequestHeader``, so the applier checks the permissions of whoever asked. Tasks the member
starts for itself run outside any call and propose as the member (no header).
"""

from __future__ import annotations

from contextvars import ContextVar

from raftkv.auth.tokens import NO_USER, AuthInfo

__all__ = ["CALLER", "NO_USER"]

CALLER: ContextVar[AuthInfo | None] = ContextVar("raftkv_auth_caller", default=None)
