"""etcd v3.4's client API over a member's ``ClientOps`` (``ops.py``, the facade).

``serve_clients(ops, urls)`` serves it on the client URLs; ``create_app(ops)`` is the JSON
gateway's aiohttp application; ``unary.py`` is the wire-independent request pipeline (etcd's
checks in order); ``raftkv.api.codec`` is the JSON codec
(generic over ``raftkv.pb``), ``raftkv.api.gojson`` reproduces Go's decoding errors,
``raftkv.api.validate`` the checks etcd's gRPC layer makes, ``raftkv.api.streams`` the watch
and lease keep-alive streams. aiohttp is imported only when ``create_app`` or
``serve_clients`` is used, so the codec stays cheap to import (raftkvctl starts fast).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "serve_clients"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from raftkv.api.app import create_app

        return create_app
    if name == "serve_clients":
        from raftkv.api.listener import serve_clients

        return serve_clients
    raise AttributeError(name)
