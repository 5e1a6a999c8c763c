"""Regenerate raftkv's protobuf modules (raftkv/api/grpcpb/*_pb2.py) with grpcio-tools.

The .proto files next to them are etcd v3.4's rpc.proto, kv.proto and auth.proto with the
gogoproto and google.api.http options stripped and the packages renamed (raftkv.etcdserverpb,
raftkv.mvccpb, raftkv.authpb) so that another copy of etcd's protos loaded in the same process
(aetcd, python-etcd3 bundle theirs) cannot collide in protobuf's descriptor pool; health.proto
is grpc.health.v1's, renamed the same way. The gRPC method paths raftkv serves are still
etcd's (``/etcdserverpb.KV/Range``): raftkv.api.grpc_server registers them by name.

    python scripts/gen_grpc.py                  # regenerate from the committed .proto files
    python scripts/gen_grpc.py --strip DIR      # first re-derive rpc/kv/auth.proto from DIR
                                                # (etcd's originals, e.g. ../shared/reference)
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "raftkv" / "api" / "grpcpb"
PROTOS = ("kv.proto", "auth.proto", "rpc.proto", "health.proto")

_HTTP_OPTION = re.compile(r"\n\s*option \(google\.api\.http\) = \{")
_IMPORTS = {
    'import "gogoproto/gogo.proto";\n': "",
    'import "google/api/annotations.proto";\n': "",
    "// for grpc-gateway\n": "",
    'import "etcd/mvcc/mvccpb/kv.proto";': 'import "raftkv/api/grpcpb/kv.proto";',
    'import "etcd/auth/authpb/auth.proto";': 'import "raftkv/api/grpcpb/auth.proto";',
}
_PACKAGES = {
    "package etcdserverpb;": "package raftkv.etcdserverpb;",
    "package mvccpb;": "package raftkv.mvccpb;",
    "package authpb;": "package raftkv.authpb;",
}


def strip(text: str) -> str:
    """etcd's .proto without gogoproto/google.api options, under raftkv's package names."""
    while m := _HTTP_OPTION.search(text):  # the option's value nests braces
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        text = text[: m.start()] + text[text.index(";", i) + 1 :]
    text = re.sub(r"^option \(gogoproto\.[a-z_]+\) = (true|false);\n", "", text, flags=re.M)
    for old, new in {**_IMPORTS, **_PACKAGES}.items():
        text = text.replace(old, new)
    text = re.sub(r"\b(mvccpb|authpb)\.", r"raftkv.\1.", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--strip", metavar="DIR", help="re-derive the protos from etcd's in DIR")
    args = ap.parse_args()
    if args.strip:
        for name in ("kv.proto", "auth.proto", "rpc.proto"):
            src = Path(args.strip) / name
            (OUT / name).write_text(strip(src.read_text()))
    from grpc_tools import protoc

    for name in PROTOS:
        rc = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{ROOT}",
                f"--python_out={ROOT}",
                f"--pyi_out={ROOT}",
                str((OUT / name).relative_to(ROOT)),
            ]
        )
        if rc != 0:
            print(f"protoc failed on {name}", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
