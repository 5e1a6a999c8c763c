"""etcd v3.4's HTTP/JSON gateway API over an ``EtcdServer``.

``create_app(server)`` returns the aiohttp application; ``raftkv.api.codec`` is the JSON codec
(generic over ``raftkv.pb``), ``raftkv.api.gojson`` reproduces Go's decoding errors,
``raftkv.api.validate`` the checks etcd's gRPC layer makes, ``raftkv.api.streams`` the watch
and lease keep-alive streams. aiohttp is imported only when ``create_app`` is used, so the
codec stays cheap to import (raftkvctl starts fast).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from raftkv.api.app import create_app

        return create_app
    raise AttributeError(name)
