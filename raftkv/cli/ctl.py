"""raftkvctl: an etcdctl (v3 API, etcd 3.4) work-alike over the JSON gateway.

    raftkvctl [--endpoints=a,b,c] [-w simple|json|table] [--user name[:password]] COMMAND ...

Commands: put, get, del, txn, watch, compaction, lease (grant|revoke|timetolive|keep-alive|
list), member list, endpoint (status|health), user, role, auth (ctl_auth.py). Output matches
etcdctl's byte for byte where the data is the same; errors print ``Error: <etcd's message>``
to stderr and exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from typing import Any

from raftkv.cli import ctl_auth, ctl_snapshot
from raftkv.cli.ctl_admin import (
    cmd_alarm,
    cmd_defrag,
    cmd_endpoint,
    cmd_lease,
    cmd_member,
    cmd_move_leader,
)
from raftkv.cli.ctl_client import Client, CtlError, tls_context
from raftkv.cli.ctl_print import (
    fields_del,
    fields_get,
    fields_put,
    fields_txn,
    go_json,
    json_line,
    kv_lines,
)
from raftkv.cli.ctl_print import out as _out
from raftkv.cli.ctl_txn import TxnInputError, read_txn
from raftkv.pb import kv, rpc

__all__ = ["main"]


def _prefix_end(key: bytes) -> bytes:
    """clientv3.GetPrefixRangeEnd: the key with its last incrementable byte incremented."""
    k = bytearray(key)
    for i in range(len(k) - 1, -1, -1):
        if k[i] < 0xFF:
            k[i] += 1
            return bytes(k[: i + 1])
    return b"\x00"


def _range_args(a: argparse.Namespace) -> tuple[bytes, bytes]:
    key = a.key.encode()
    end = a.range_end.encode() if getattr(a, "range_end", None) else b""
    if getattr(a, "prefix", False):
        end = _prefix_end(key) if key else b"\x00"
    if getattr(a, "from_key", False):
        end = b"\x00"
        if not key:
            key = b"\x00"
    return key, end


# --- printing of responses ---------------------------------------------------------------------


def _print_put(a: argparse.Namespace, r: rpc.PutResponse) -> None:
    if a.write_out == "fields":
        _out(fields_put(r))
        return
    if a.write_out == "json":
        _out(json_line(go_json(r)))
        return
    _out("OK")
    if r.prev_kv is not None:
        _out(kv_lines(r.prev_kv, hex_=a.hex))


def _print_get(a: argparse.Namespace, r: rpc.RangeResponse) -> None:
    if a.write_out == "fields":
        _out(fields_get(r))
        return
    if a.write_out == "json":
        _out(json_line(go_json(r)))
        return
    if a.write_out == "table":
        raise CtlError("table not supported as output format", 4)  # ExitBadFeature
    if getattr(a, "count_only", False):
        _out(str(r.count))
        return
    for x in r.kvs:
        _out(kv_lines(x, value_only=getattr(a, "print_value_only", False), hex_=a.hex))


def _print_del(a: argparse.Namespace, r: rpc.DeleteRangeResponse) -> None:
    if a.write_out == "fields":
        _out(fields_del(r))
        return
    if a.write_out == "json":
        _out(json_line(go_json(r)))
        return
    _out(str(r.deleted))
    for x in r.prev_kvs:
        _out(kv_lines(x, hex_=a.hex))


def _print_txn(a: argparse.Namespace, r: rpc.TxnResponse) -> None:
    if a.write_out == "fields":
        _out(fields_txn(r))
        return
    if a.write_out == "json":
        _out(json_line(go_json(r)))
        return
    _out("SUCCESS" if r.succeeded else "FAILURE")
    for op in r.responses:
        _out("")
        if op.response_delete_range is not None:
            _print_del(a, op.response_delete_range)
        elif op.response_put is not None:
            _print_put(a, op.response_put)
        elif op.response_range is not None:
            _print_get(a, op.response_range)


# --- commands ----------------------------------------------------------------------------------


def _put_req(a: argparse.Namespace) -> rpc.PutRequest:
    if a.value is None and not a.ignore_value:
        raise CtlError("put command needs 1 argument and input from stdin or 2 arguments")
    return rpc.PutRequest(
        key=a.key.encode(),
        value=(a.value or "").encode(),
        lease=int(a.lease, 16) if a.lease else 0,
        prev_kv=a.prev_kv,
        ignore_value=a.ignore_value,
        ignore_lease=a.ignore_lease,
    )


def cmd_put(c: Client, a: argparse.Namespace) -> None:
    _print_put(a, c.call("/v3/kv/put", _put_req(a), rpc.PutResponse))


_SORT_ORDERS = {"": 0, "ASCEND": 1, "DESCEND": 2}
_SORT_TARGETS = {"KEY": 0, "VERSION": 1, "CREATE": 2, "MODIFY": 3, "VALUE": 4}


def _get_req(a: argparse.Namespace) -> rpc.RangeRequest:
    key, end = _range_args(a)
    order = _SORT_ORDERS.get(a.order.upper()) if a.order else 0
    if order is None:
        raise CtlError(f"bad sort order {a.order}")
    target = _SORT_TARGETS.get(a.sort_by.upper()) if a.sort_by else 0
    if target is None:
        raise CtlError(f"bad sort target {a.sort_by}")
    if a.sort_by and not a.order:
        order = 1
    return rpc.RangeRequest(
        key=key,
        range_end=end,
        limit=a.limit,
        revision=a.rev,
        sort_order=rpc.SortOrder(order),
        sort_target=rpc.SortTarget(target),
        serializable=a.consistency == "s",
        keys_only=a.keys_only,
        count_only=a.count_only,
    )


def cmd_get(c: Client, a: argparse.Namespace) -> None:
    _print_get(a, c.call("/v3/kv/range", _get_req(a), rpc.RangeResponse))


def _del_req(a: argparse.Namespace) -> rpc.DeleteRangeRequest:
    key, end = _range_args(a)
    return rpc.DeleteRangeRequest(key=key, range_end=end, prev_kv=a.prev_kv)


def cmd_del(c: Client, a: argparse.Namespace) -> None:
    _print_del(a, c.call("/v3/kv/deleterange", _del_req(a), rpc.DeleteRangeResponse))


def _txn_op(args: list[str]) -> rpc.RequestOp:
    with contextlib.redirect_stderr(io.StringIO()):
        a = _parser().parse_args(args)
    try:
        _bind_args(a, None)
    except CtlError as e:
        raise ValueError(str(e)) from None
    if a.cmd == "put":
        return rpc.RequestOp(request_put=_put_req(a))
    if a.cmd == "get":
        return rpc.RequestOp(request_range=_get_req(a))
    if a.cmd == "del":
        return rpc.RequestOp(request_delete_range=_del_req(a))
    raise ValueError(a.cmd)


def cmd_txn(c: Client, a: argparse.Namespace) -> None:
    req = read_txn(sys.stdin, _txn_op, interactive=a.interactive)
    _print_txn(a, c.call("/v3/kv/txn", req, rpc.TxnResponse))


def cmd_compaction(c: Client, a: argparse.Namespace) -> None:
    try:
        rev = int(a.revision)
    except ValueError:
        raise CtlError(f'strconv.ParseInt: parsing "{a.revision}": invalid syntax') from None
    r = c.call(
        "/v3/kv/compaction",
        rpc.CompactionRequest(revision=rev, physical=a.physical),
        rpc.CompactionResponse,
    )
    if a.write_out == "json":
        _out(json_line(go_json(r)))
    else:
        _out(f"compacted revision {rev}")


def cmd_watch(c: Client, a: argparse.Namespace) -> None:
    if not a.key:
        raise CtlError("watch in non-interactive mode requires one or two arguments")
    key, end = _range_args(a)
    create = rpc.WatchCreateRequest(key=key, range_end=end, start_revision=a.rev, prev_kv=a.prev_kv)
    for r in c.stream("/v3/watch", [rpc.WatchRequest(create_request=create)], rpc.WatchResponse):
        if r.compact_revision:
            sys.stderr.write(
                "watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
            )
            raise CtlError("watch is canceled by the server", 5)  # ExitInterrupted
        if r.canceled:
            raise CtlError("watch is canceled by the server", 5)
        if not r.events:
            continue
        if a.write_out == "json":
            hdr = go_json(r.header) if r.header is not None else {}
            d = {
                "Header": hdr,
                "Events": [go_json(e) for e in r.events],
                "CompactRevision": r.compact_revision,
                "Canceled": r.canceled,
                "Created": r.created,
            }
            _out(json_line(d))
        else:
            for e in r.events:
                _out("DELETE" if e.type == kv.EventType.DELETE else "PUT")
                if e.prev_kv is not None:
                    _out(kv_lines(e.prev_kv, hex_=a.hex))
                _out(kv_lines(e.kv, hex_=a.hex))
        sys.stdout.flush()


# --- argument parsing --------------------------------------------------------------------------


def _globals(p: argparse.ArgumentParser, default: Any) -> None:
    d = (lambda v: v) if default else (lambda v: argparse.SUPPRESS)
    p.add_argument("--endpoints", default=d(os.environ.get("ETCDCTL_ENDPOINTS", "127.0.0.1:2379")))
    p.add_argument(
        "-w",
        "--write-out",
        default=d("simple"),
        choices=["simple", "json", "table", "fields", "protobuf"],
    )
    p.add_argument("--hex", action="store_true", default=d(False))
    p.add_argument("--command-timeout", default=d("5s"))
    p.add_argument("--dial-timeout", default=d("2s"))
    p.add_argument("--user", default=d(""))
    p.add_argument("--password", default=d(""))
    # etcdctl's TLS flags (ETCDCTL_CACERT, ... as in etcdctl)
    p.add_argument("--cacert", default=d(os.environ.get("ETCDCTL_CACERT", "")))
    p.add_argument("--cert", default=d(os.environ.get("ETCDCTL_CERT", "")))
    p.add_argument("--key", default=d(os.environ.get("ETCDCTL_KEY", "")))
    p.add_argument("--insecure-skip-tls-verify", action="store_true", default=d(False))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raftkvctl", description="etcdctl-like client for raftkv")
    _globals(p, True)
    common = argparse.ArgumentParser(add_help=False)
    _globals(common, False)
    sp = p.add_subparsers(dest="cmd", required=True)

    q = sp.add_parser("put", parents=[common])
    q.add_argument("args", nargs="*")
    q.add_argument("--lease", default="")
    q.add_argument("--prev-kv", action="store_true")
    q.add_argument("--ignore-value", action="store_true")
    q.add_argument("--ignore-lease", action="store_true")
    q.set_defaults(fn=cmd_put)

    q = sp.add_parser("get", parents=[common])
    q.add_argument("args", nargs="*")
    q.add_argument("--prefix", action="store_true")
    q.add_argument("--from-key", action="store_true")
    q.add_argument("--rev", type=int, default=0)
    q.add_argument("--limit", type=int, default=0)
    q.add_argument("--keys-only", action="store_true")
    q.add_argument("--count-only", action="store_true")
    q.add_argument("--print-value-only", action="store_true")
    q.add_argument("--order", default="")
    q.add_argument("--sort-by", default="")
    q.add_argument("--consistency", default="l")
    q.set_defaults(fn=cmd_get)

    q = sp.add_parser("del", parents=[common])
    q.add_argument("args", nargs="*")
    q.add_argument("--prefix", action="store_true")
    q.add_argument("--from-key", action="store_true")
    q.add_argument("--prev-kv", action="store_true")
    q.set_defaults(fn=cmd_del)

    q = sp.add_parser("txn", parents=[common])
    q.add_argument("-i", "--interactive", action="store_true")
    q.set_defaults(fn=cmd_txn)

    q = sp.add_parser("watch", parents=[common])
    q.add_argument("args", nargs="*")
    q.add_argument("--prefix", action="store_true")
    q.add_argument("--rev", type=int, default=0)
    q.add_argument("--prev-kv", action="store_true")
    q.set_defaults(fn=cmd_watch)

    q = sp.add_parser("compaction", parents=[common])
    q.add_argument("args", nargs="*")
    q.add_argument("--physical", action="store_true")
    q.set_defaults(fn=cmd_compaction)

    q = sp.add_parser("lease", parents=[common])
    lp = q.add_subparsers(dest="lease_cmd", required=True)
    x = lp.add_parser("grant", parents=[common])
    x.add_argument("args", nargs="*")
    x = lp.add_parser("revoke", parents=[common])
    x.add_argument("args", nargs="*")
    x = lp.add_parser("timetolive", parents=[common])
    x.add_argument("args", nargs="*")
    x.add_argument("--keys", action="store_true")
    x = lp.add_parser("keep-alive", parents=[common])
    x.add_argument("args", nargs="*")
    x.add_argument("--once", action="store_true")
    lp.add_parser("list", parents=[common])
    q.set_defaults(fn=cmd_lease)

    q = sp.add_parser("member", parents=[common])
    mp = q.add_subparsers(dest="member_cmd", required=True)
    mp.add_parser("list", parents=[common])
    for name in ("add", "remove", "update", "promote"):
        x = mp.add_parser(name, parents=[common])
        x.add_argument("args", nargs="*")
        if name in ("add", "update"):
            x.add_argument("--peer-urls", default="")
        if name == "add":
            x.add_argument("--learner", action="store_true")
    q.set_defaults(fn=cmd_member)

    q = sp.add_parser("defrag", parents=[common])
    q.add_argument("--cluster", action="store_true")
    q.set_defaults(fn=cmd_defrag)

    q = sp.add_parser("alarm", parents=[common])
    ap = q.add_subparsers(dest="alarm_cmd", required=True)
    ap.add_parser("list", parents=[common])
    ap.add_parser("disarm", parents=[common])
    q.set_defaults(fn=cmd_alarm)

    q = sp.add_parser("move-leader", parents=[common])
    q.add_argument("args", nargs="*")
    q.set_defaults(fn=cmd_move_leader)

    q = sp.add_parser("endpoint", parents=[common])
    q.add_argument("--cluster", action="store_true")
    ep = q.add_subparsers(dest="endpoint_cmd", required=True)
    for name in ("status", "health"):
        x = ep.add_parser(name, parents=[common])
        x.add_argument("--cluster", action="store_true", default=argparse.SUPPRESS)
    q.set_defaults(fn=cmd_endpoint)

    ctl_snapshot.add_parser(sp, common)
    ctl_auth.add_parsers(sp, common)
    return p


def _seconds(s: str) -> float:
    s = s.strip()
    for suffix, mul in (("ms", 0.001), ("s", 1.0), ("m", 60.0)):
        if s.endswith(suffix):
            return float(s[: -len(suffix)]) * mul
    return float(s)


_ARG_ERRORS = {
    "put": "put command needs 1 argument and input from stdin or 2 arguments",
    "get": "get command needs one argument as key and an optional argument as range_end",
    "del": "del command needs one argument as key and an optional argument as range_end",
    "watch": "bad number of arguments",
    "compaction": "compaction command needs 1 argument",
    "grant": "lease grant command needs TTL argument",
    "revoke": "lease revoke command needs 1 argument",
    "timetolive": "lease timetolive command needs lease ID as argument",
    "keep-alive": "lease keep-alive command needs lease ID as argument",
}


def _bind_args(a: argparse.Namespace, stdin: Any) -> None:
    """etcdctl's positional-argument rules (ExitBadArgs, 128, on violation)."""
    args: list[str] = getattr(a, "args", [])
    what = a.lease_cmd if a.cmd == "lease" else a.cmd
    bad = CtlError(_ARG_ERRORS.get(what, "bad number of arguments"), 128)
    if a.cmd == "put":
        if not args:
            raise bad
        a.key = args[0]
        if len(args) > 1:
            a.value = args[1]
        else:
            data = "" if stdin is None or stdin.isatty() else stdin.read()
            if not data and not a.ignore_value:
                raise bad
            a.value = data
    elif a.cmd in ("get", "del", "watch"):
        if not args or (a.cmd != "get" and len(args) > 2):
            raise bad
        a.key = args[0]
        a.range_end = args[1] if len(args) > 1 else None
    elif a.cmd == "compaction":
        if len(args) != 1:
            raise bad
        a.revision = args[0]
    elif a.cmd == "lease" and what != "list":
        if len(args) != 1:
            raise bad
        if what == "grant":
            a.ttl = args[0]
        else:
            a.id = args[0]


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    client = Client(
        a.endpoints.split(","),
        timeout=_seconds(a.command_timeout),
        tls=tls_context(a.cacert, a.cert, a.key, a.insecure_skip_tls_verify),
    )
    try:
        _bind_args(a, None if a.cmd == "txn" else sys.stdin)
        if a.user:
            ctl_auth.login(client, a.user, a.password or None)
        a.fn(client, a)
    except CtlError as e:
        sys.stdout.flush()
        if str(e):
            sys.stderr.write(f"Error: {e}\n")
        return e.code
    except TxnInputError as e:
        sys.stdout.flush()
        sys.stderr.write(f"Error: {e}\n")
        return 3
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
