"""etcdctl v3.4's output formats: simple, json and table printers.

``-w json`` is Go's ``json.Marshal`` of the gogo-protobuf structs (ints as numbers, bytes as
base64, ``omitempty`` everywhere, oneofs wrapped as ``{"Response":{"ResponsePut":...}}``);
``-w table`` is olekukonko/tablewriter with etcdctl's settings (centered headers, right-aligned
cells); sizes are go-humanize's SI ``Bytes``.
"""

from __future__ import annotations

import binascii
import json
import math
import sys
from typing import Any

from raftkv.pb import rpc
from raftkv.pb.fields import Kind, specs

__all__ = [
    "go_duration",
    "go_json",
    "humanize_bytes",
    "json_line",
    "kv_lines",
    "out",
    "table",
]


def _camel_upper(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.split("_"))


_ONEOFS = {"RequestOp": "Request", "ResponseOp": "Response", "WatchRequest": "RequestUnion"}


def go_json(obj: Any) -> Any:
    """A pb message as Go's encoding/json marshals the generated struct."""
    cname = type(obj).__name__
    d: dict[str, Any] = {}
    for s in specs(type(obj)):
        v = getattr(obj, s.name)
        if cname in _ONEOFS:
            if v is not None:
                return {_ONEOFS[cname]: {_camel_upper(s.name): go_json(v)}}
            continue
        if s.repeated:
            if v:
                d[s.name] = [_go_value(s.kind, x) for x in v]
        elif s.kind is Kind.MESSAGE:
            if v is not None:
                d[s.name] = go_json(v)
        elif v:
            d[s.name] = _go_value(s.kind, v)
    return d


def _go_value(kind: Kind, v: Any) -> Any:
    if kind is Kind.MESSAGE:
        return go_json(v)
    if kind is Kind.BYTES:
        return binascii.b2a_base64(v, newline=False).decode()
    if kind is Kind.ENUM:
        return int(v)
    return v


def out(lines: list[str] | str) -> None:
    """Print lines to stdout, each followed by a newline."""
    if isinstance(lines, str):
        lines = [lines]
    sys.stdout.write("".join(line + "\n" for line in lines))


def json_line(d: Any) -> str:
    s = json.dumps(d, separators=(",", ":"), ensure_ascii=False)
    return s.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _text(b: bytes) -> str:
    return b.decode("utf-8", "replace")


def kv_lines(kv: Any, *, value_only: bool = False, hex_: bool = False) -> list[str]:
    k, v = kv.key, kv.value
    if hex_:
        ks = "".join(f"\\x{c:02x}" for c in k)
        vs = "".join(f"\\x{c:02x}" for c in v)
    else:
        ks, vs = _text(k), _text(v)
    return [vs] if value_only else [ks, vs]


def humanize_bytes(n: int) -> str:
    """go-humanize's Bytes (SI, base 1000)."""
    if n < 10:
        return f"{n} B"
    sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = math.floor(math.log(n) / math.log(1000))
    val = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{val:.1f} {sizes[e]}" if val < 10 else f"{val:.0f} {sizes[e]}"


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String for positive durations."""
    ns = round(seconds * 1e9)
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return _trim(f"{ns / 1e3:.3f}") + "µs"
    if ns < 1_000_000_000:
        return _trim(f"{ns / 1e6:.6f}") + "ms"
    return _trim(f"{ns / 1e9:.9f}") + "s"


def _trim(s: str) -> str:
    return s.rstrip("0").rstrip(".") if "." in s else s


def table(header: list[str], rows: list[list[str]]) -> str:
    """tablewriter as etcdctl configures it: centered header, right-aligned cells."""
    widths = [len(h) for h in header]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def center(s: str, w: int) -> str:
        gap = w - len(s)
        left = gap // 2
        return " " * left + s + " " * (gap - left)

    out = [
        sep,
        "|" + "|".join(f" {center(h, w)} " for h, w in zip(header, widths, strict=True)) + "|",
        sep,
    ]
    for r in rows:
        out.append("|" + "|".join(f" {c.rjust(w)} " for c, w in zip(r, widths, strict=True)) + "|")
    out.append(sep)
    return "\n".join(out)


def member_status(m: rpc.Member) -> str:
    return "started" if m.name else "unstarted"


# --- -w fields (etcdctl's fieldsPrinter) ---------------------------------------------------------


def fields_header(h: Any) -> list[str]:
    h = h or rpc.ResponseHeader()
    return [
        f'"ClusterID" : {h.cluster_id}',
        f'"MemberID" : {h.member_id}',
        f'"Revision" : {h.revision}',
        f'"RaftTerm" : {h.raft_term}',
    ]


def fields_kv(kv: Any, pfx: str = "") -> list[str]:
    from raftkv.api.gojson import go_quote

    return [
        f'"{pfx}Key" : {go_quote(_text(kv.key))}',
        f'"{pfx}CreateRevision" : {kv.create_revision}',
        f'"{pfx}ModRevision" : {kv.mod_revision}',
        f'"{pfx}Version" : {kv.version}',
        f'"{pfx}Value" : {go_quote(_text(kv.value))}',
        f'"{pfx}Lease" : {kv.lease}',
    ]


def _go_bool(b: bool) -> str:
    return "true" if b else "false"


def fields_get(r: Any) -> list[str]:
    out = fields_header(r.header)
    for kv in r.kvs:
        out += fields_kv(kv)
    return [*out, f'"More" : {_go_bool(r.more)}', f'"Count" : {r.count}']


def fields_put(r: Any) -> list[str]:
    out = fields_header(r.header)
    return out + (fields_kv(r.prev_kv, "Prev") if r.prev_kv is not None else [])


def fields_del(r: Any) -> list[str]:
    out = [*fields_header(r.header), f'"Deleted" : {r.deleted}']
    for kv in r.prev_kvs:
        out += fields_kv(kv, "Prev")
    return out


def fields_txn(r: Any) -> list[str]:
    out = [*fields_header(r.header), f'"Succeeded" : {_go_bool(r.succeeded)}']
    for op in r.responses:
        if op.response_delete_range is not None:
            out += fields_del(op.response_delete_range)
        elif op.response_put is not None:
            out += fields_put(op.response_put)
        elif op.response_range is not None:
            out += fields_get(op.response_range)
    return out
