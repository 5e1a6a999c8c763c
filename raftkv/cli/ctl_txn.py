"""etcdctl's ``txn`` input: compares, a blank line, success ops, a blank line, failure ops,
a blank line. Compares look like ``value("k") = "v"``, ``mod("k") > "0"``,
``version("k") = "1"``, ``create("k") = "0"``, ``lease("k") = "0"``; ops are ``put``, ``get``
and ``del`` command lines with their usual flags."""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Callable
from typing import TextIO

from raftkv.pb import rpc

__all__ = ["TxnInputError", "parse_compare", "read_txn"]


class TxnInputError(Exception):
    """Bad txn input: etcdctl exits with ExitInvalidInput (3)."""


_PROMPTS = (
    "compares:",
    "success requests (get, put, del):",
    "failure requests (get, put, del):",
)
_OPS = {
    "=": rpc.CompareResult.EQUAL,
    "!=": rpc.CompareResult.NOT_EQUAL,
    ">": rpc.CompareResult.GREATER,
    "<": rpc.CompareResult.LESS,
}
_TARGETS = {
    "ver": "version",
    "version": "version",
    "c": "create",
    "create": "create",
    "m": "mod",
    "mod": "mod",
    "val": "value",
    "value": "value",
    "lease": "lease",
}
_CMP_RE = re.compile(r'^"((?:[^"\\]|\\.)*)"\)\s+(\S+)\s+"((?:[^"\\]|\\.)*)"')


def _unquote(s: str) -> str:
    return s.encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse_compare(line: str) -> rpc.Compare:
    if "(" not in line:
        raise TxnInputError(f"malformed comparison: {line}")
    target, rest = line.split("(", 1)
    m = _CMP_RE.match(rest)
    if m is None:
        raise TxnInputError(f"malformed comparison: {line}")
    key, op, val = _unquote(m.group(1)), m.group(2), _unquote(m.group(3))
    t = _TARGETS.get(target)
    if t is None:
        raise TxnInputError(f"malformed comparison: {line} (unknown target {target})")
    if op not in _OPS:
        raise TxnInputError(f"invalid txn compare request: {line}")
    c = rpc.Compare(result=_OPS[op], key=key.encode())
    try:
        if t == "value":
            c.target, c.value = rpc.CompareTarget.VALUE, val.encode()
        elif t == "version":
            c.target, c.version = rpc.CompareTarget.VERSION, int(val)
        elif t == "create":
            c.target, c.create_revision = rpc.CompareTarget.CREATE, int(val)
        elif t == "mod":
            c.target, c.mod_revision = rpc.CompareTarget.MOD, int(val)
        else:
            c.target, c.lease = rpc.CompareTarget.LEASE, int(val)
    except ValueError:
        raise TxnInputError(f"invalid txn compare request: {line}") from None
    return c


def _read_block(f: TextIO) -> list[str]:
    out = []
    while True:
        line = f.readline()
        if not line:
            raise TxnInputError("EOF")
        line = line.strip()
        if not line:
            return out
        out.append(line)


def read_txn(
    f: TextIO, op_of: Callable[[list[str]], rpc.RequestOp], *, interactive: bool
) -> rpc.TxnRequest:
    blocks = []
    for prompt in _PROMPTS:
        if interactive:
            sys.stdout.write(prompt + "\n")
            sys.stdout.flush()
        blocks.append(_read_block(f))
    compares = [parse_compare(x) for x in blocks[0]]

    def ops(lines: list[str]) -> list[rpc.RequestOp]:
        out = []
        for line in lines:
            try:
                args = shlex.split(line)
            except ValueError:
                raise TxnInputError(f"invalid txn request: {line}") from None
            if len(args) < 2:
                raise TxnInputError(f"invalid txn compare request: {line}")
            try:
                out.append(op_of(args))
            except (SystemExit, ValueError):
                raise TxnInputError(f"invalid txn request: {line}") from None
        return out

    return rpc.TxnRequest(compare=compares, success=ops(blocks[1]), failure=ops(blocks[2]))
