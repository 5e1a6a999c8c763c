"""etcd v3.4's protobuf messages as dataclasses (kv.proto, rpc.proto), and their wire codec.

``raftkv.pb.kv`` and ``raftkv.pb.rpc`` hold the messages; ``raftkv.pb.fields`` the field kinds
and the msgpack wire codec (``encode``/``decode``). The JSON gateway codec lives in
``raftkv.api`` and reads the same field tables.
"""

from raftkv.pb.fields import decode, encode, from_wire, specs, to_wire

__all__ = ["decode", "encode", "from_wire", "specs", "to_wire"]
