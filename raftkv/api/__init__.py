"""etcd v3.4's HTTP/JSON gateway API over an ``EtcdServer``.

``create_app(server)`` returns the aiohttp application; ``raftkv.api.codec`` is the JSON codec
(generic over ``raftkv.pb``), ``raftkv.api.gojson`` reproduces Go's decoding errors,
``raftkv.api.validate`` the checks etcd's gRPC layer makes, ``raftkv.api.streams`` the watch
and lease keep-alive streams.
"""

from raftkv.api.app import create_app

__all__ = ["create_app"]
