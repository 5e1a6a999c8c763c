"""``raftkvctl snapshot save FILE``, ``snapshot restore FILE ...`` and ``snapshot status FILE``
(etcdctl 3.4).

save: streams ``/v3/maintenance/snapshot`` from the one endpoint given into ``FILE.part``
(every blob, the trailing sha256 included, as etcdctl writes it), fsyncs, renames to ``FILE``
and prints ``Snapshot saved at FILE``.

restore: offline, ``raftkv.server.restore``; flags and defaults as etcdctl's
(``--name default``, ``--initial-cluster default=http://localhost:2380``,
``--initial-cluster-token etcd-cluster``, ``--initial-advertise-peer-urls
http://localhost:2380``, ``--data-dir <name>.etcd``, ``--skip-hash-check``).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from raftkv.cli.ctl_client import Client, CtlError
from raftkv.cli.ctl_print import humanize_bytes, json_line, out, table
from raftkv.pb import rpc

__all__ = ["add_parser", "cmd_snapshot"]

SNAPSHOT_PATH = "/v3/maintenance/snapshot"


def add_parser(sp: Any, common: argparse.ArgumentParser) -> None:
    q = sp.add_parser("snapshot", parents=[common])
    sub = q.add_subparsers(dest="snapshot_cmd", required=True)
    for name in ("save", "restore", "status"):
        x = sub.add_parser(name, parents=[common])
        x.add_argument("args", nargs="*")
        if name == "restore":
            x.add_argument("--data-dir", default="")
            x.add_argument("--wal-dir", default="")
            x.add_argument("--name", default="default")
            x.add_argument("--initial-cluster", default="default=http://localhost:2380")
            x.add_argument("--initial-cluster-token", default="etcd-cluster")
            x.add_argument("--initial-advertise-peer-urls", default="http://localhost:2380")
            x.add_argument("--skip-hash-check", action="store_true")
    q.set_defaults(fn=cmd_snapshot)


def cmd_snapshot(c: Client, a: argparse.Namespace) -> None:
    args: list[str] = getattr(a, "args", [])
    if len(args) != 1:
        if a.snapshot_cmd == "restore":
            raise CtlError("snapshot restore requires exactly one argument", 128)
        raise CtlError(f"snapshot {a.snapshot_cmd} expects one argument", 128)
    if a.snapshot_cmd == "save":
        _save(c, args[0])
    elif a.snapshot_cmd == "status":
        _status(a, args[0])
    else:
        _restore(a, args[0])


def _save(c: Client, path: str) -> None:
    if len(c.endpoints) != 1:
        raise CtlError(  # (Go prints the slice as [a b]; etcdctl exits ExitInterrupted)
            "snapshot must be requested to one selected node, not multiple "
            f"[{' '.join(c.endpoints)}]",
            5,
        )
    part = path + ".part"
    try:
        with open(part, "wb") as f:
            for resp in c.stream(SNAPSHOT_PATH, [rpc.SnapshotRequest()], rpc.SnapshotResponse):
                f.write(resp.blob)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    except BaseException:
        if os.path.exists(part):
            os.remove(part)
        raise
    out(f"Snapshot saved at {path}")


def _status(a: argparse.Namespace, path: str) -> None:
    from raftkv.server.restore import RestoreError, snapshot_status

    try:
        st = snapshot_status(path)
    except RestoreError as e:
        raise CtlError(str(e)) from None
    except OSError as e:
        raise CtlError(_go_open_error(e, "stat")) from None
    if a.write_out == "json":
        d = {"hash": st.hash, "revision": st.revision, "totalKey": st.total_key}
        out(json_line({**d, "totalSize": st.total_size}))
        return
    row = [f"{st.hash:x}", str(st.revision), str(st.total_key), humanize_bytes(st.total_size)]
    if a.write_out == "table":
        out(table(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE"], [row]))
    else:
        out(", ".join(row))


def _go_open_error(e: OSError, op: str = "open") -> str:
    """An OSError as Go's os.Open (or os.Stat) words it."""
    what = (e.strerror or str(e)).lower()
    return f"{op} {e.filename}: {what}" if e.filename else what


def _parse_cluster(text: str) -> dict[str, list[str]]:
    cluster: dict[str, list[str]] = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise CtlError(f"invalid --initial-cluster entry {item!r}")
        cluster.setdefault(name, []).append(url)
    return cluster


def _restore(a: argparse.Namespace, path: str) -> None:
    from raftkv.server.restore import RestoreError, restore_snapshot

    try:
        restore_snapshot(
            path,
            a.data_dir or f"{a.name}.etcd",
            a.name,
            _parse_cluster(a.initial_cluster),
            a.initial_cluster_token,
            [u.strip() for u in a.initial_advertise_peer_urls.split(",") if u.strip()],
            skip_hash_check=a.skip_hash_check,
            wal_dir=a.wal_dir,
        )
    except RestoreError as e:
        raise CtlError(str(e)) from None
    except OSError as e:
        raise CtlError(_go_open_error(e)) from None
