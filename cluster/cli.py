"""`python -m cluster`: run and disturb a local cluster from the shell.

The cluster runs detached: `up` starts the members and the fault-proxy helper in their own
sessions, waits for a leader and healthy members, prints the endpoints and returns. With
--follow it stays in the foreground streaming the members' logs, as `docker compose up`
without -d does. Ctrl-C while `up` is in the foreground (still starting, or following) takes
down what it started: every process, by PID, and the state dir if this `up` created it (a
stopped cluster it was starting again keeps its data); `logs -f` is the way to watch a cluster
that should outlive the terminal. Everything the other commands need (PIDs, ports, the
proxy's control URL) is in the state dir, .cluster/ by default (--state-dir or
RAFTKV_CLUSTER_DIR). `down` stops every process by PID.

    python -m cluster up [-n 3] [--set heartbeat-interval=50] [--follow]
    python -m cluster status
    python -m cluster kill m1 | restart m1 | pause m2 | resume m2 | wipe m3
    python -m cluster cut m1 m2 [--one-way] | isolate m1 | heal [m1 [m2]]
    python -m cluster latency m1 m2 200 | drop m1 m2 0.3 | faults
    python -m cluster leader | endpoints | logs [-f] [m1 ...]
    python -m cluster down [--clean]
    python -m cluster report chaos-runs/20260101-120000/history.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shlex
import shutil
import sys
from pathlib import Path

from cluster.config import CLIENT_CERT, CONFIGS_DIR
from cluster.linearizability import check
from cluster.local import ClusterError, LocalCluster
from cluster.runlog import RunLog

__all__ = ["main"]


def _state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir or os.environ.get("RAFTKV_CLUSTER_DIR") or ".cluster")


def _settings(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set expects NAME=VALUE (etcd flag name), got {pair!r}")
        out[key.lstrip("-")] = value
    return out


def _fmt_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


async def status_table(c: LocalCluster) -> str:
    sts = await c.statuses()
    rows = [
        [
            "MEMBER",
            "ENDPOINT",
            "PROCESS",
            "ROLE",
            "TERM",
            "RAFT INDEX",
            "APPLIED",
            "DB SIZE",
            "LEADER",
        ]
    ]
    for m in c.members:
        st = sts[m.name]
        if st is None:
            rows.append([m.name, m.endpoint, m.state(), "-", "-", "-", "-", "-", "-"])
            continue
        lid = int(st.get("leader", 0))
        me = int(st["header"]["member_id"])
        leader = c.by_id(lid)
        role = "leader" if lid and lid == me else ("follower" if lid else "no leader")
        rows.append(
            [
                m.name,
                m.endpoint,
                m.state(),
                role,
                str(st.get("raftTerm", st["header"].get("raft_term", "0"))),
                str(st.get("raftIndex", "0")),
                str(st.get("raftAppliedIndex", "0")),
                _fmt_size(int(st.get("dbSize", 0))),
                leader.name if leader else (f"{lid:x}" if lid else "-"),
            ]
        )
    return _table(rows)


async def follow_logs(c: LocalCluster, names: list[str], follow: bool) -> None:
    """Print the members' logs, each line prefixed with its member; tail -f with follow."""
    members = [c.member(n) for n in names] if names else c.members
    files = {m.name: Path(m.spec.log_path) for m in members}
    if not names:
        files["proxy"] = c.base_dir / "logs" / "proxy.log"
    offsets = dict.fromkeys(files, 0)
    width = max(len(n) for n in files)
    while True:
        for name, path in files.items():
            if not path.exists():
                continue
            with path.open("rb") as f:
                f.seek(offsets[name])
                data = f.read()
            cut = data.rfind(b"\n") + 1 if follow else len(data)
            offsets[name] += cut
            for line in data[:cut].decode(errors="replace").splitlines():
                sys.stdout.write(f"{name.ljust(width)} | {line}\n")
        sys.stdout.flush()
        if not follow:
            return
        await asyncio.sleep(0.2)


def _live(c: LocalCluster) -> list[str]:
    live = [m.name for m in c.members if m.proc and m.proc.alive()]
    if c.proxy_proc and c.proxy_proc.alive():
        live.append("proxy")
    return live


async def cmd_up(args: argparse.Namespace) -> int:
    state_dir = _state_dir(args)
    try:
        old = LocalCluster.attach(state_dir)
    except ClusterError:
        old = None
    if old is not None and (live := _live(old)):
        print(
            f"a cluster is already running from {state_dir} ({', '.join(live)}); "
            "run `python -m cluster down` first",
            file=sys.stderr,
        )
        return 1
    if old is not None and args.fresh:
        shutil.rmtree(state_dir)
    # what Ctrl-C takes away: the state dir this `up` creates, or just the data of a new
    # cluster in a dir that was there (a stopped cluster started again keeps everything)
    remove = state_dir if not state_dir.exists() else None
    if old is None and remove is None:
        remove = state_dir / "data"
    if old is not None and not args.fresh:
        c = old  # start the stopped cluster again: same members, ports and data
        c.ready_timeout = args.timeout
        print(f"starting the stopped cluster in {state_dir} again (--fresh for a new one)")
    else:
        c = LocalCluster(
            size=args.size,
            base_dir=state_dir,
            member_cmd=shlex.split(args.member_cmd) if args.member_cmd else None,
            configs_dir=args.configs_dir or CONFIGS_DIR,
            proxy=not args.no_proxy,
            detached=True,
            etcd_ports=not args.free_ports,
            ready_timeout=args.timeout,
            tls=args.tls,
            **_settings(args.set),
        )
    try:
        try:
            await c.start()
            leader = await c.wait_ready()
        except (ClusterError, OSError) as e:
            print(f"cluster did not come up: {e}", file=sys.stderr)
            await c.stop(grace=0)
            return 1
        print(f"cluster up: {len(c.members)} members, leader {leader.name}; state in {c.base_dir}")
        print(await status_table(c))
        print("endpoints: " + ",".join(c.endpoints), flush=True)
        certs = c.members[0].spec.certs_dir
        if certs:
            print(
                f"tls: --cacert {certs}/ca/ca.crt --cert {certs}/client.crt "
                f"--key {certs}/client.key",
                flush=True,
            )
        await c.close_clients()
        if args.follow:
            await follow_logs(c, [], follow=True)
    except asyncio.CancelledError:  # Ctrl-C (asyncio.run cancels us, then raises it)
        await c.stop(grace=2)
        if remove is not None:
            shutil.rmtree(remove, ignore_errors=True)
        gone = f"; removed {remove}" if remove is not None else ""
        print(f"interrupted: stopped every process of the cluster{gone}", file=sys.stderr)
        raise
    return 0


async def cmd_down(args: argparse.Namespace) -> int:
    c = LocalCluster.attach(_state_dir(args))
    live = _live(c)
    await c.stop(grace=args.grace)
    print(f"stopped: {', '.join(live) or 'nothing was running'}")
    if args.clean:
        shutil.rmtree(c.base_dir)
        print(f"removed {c.base_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """Render a saved chaos run (scripts/chaos.py) again, checking linearizability anew."""
    from cluster.report import write_report  # matplotlib: imported for this command only

    path = Path(args.path)
    if path.is_dir():
        path = path / "history.jsonl"
    try:
        run = RunLog.load(path)
    except (OSError, ValueError, TypeError) as e:
        print(f"error: cannot read {path}: {e}", file=sys.stderr)
        return 1
    lin = check(run.ops)
    print(f"linearizability: {lin.summary()}")
    out = write_report(run, path, lin)
    print(f"report {out}; figure {out.with_suffix('.png')}")
    return 0 if lin.ok and not run.checks.get("problems") else 1


def cmd_certs(args: argparse.Namespace) -> int:
    """A CA, a certificate per member (valid for its host name) and a client certificate in
    DIR, for a TLS cluster run elsewhere (docker-compose.tls.yml)."""
    from raftkv.tls import issue, make_ca

    out = Path(args.dir)
    ca = make_ca(str(out / "ca"))
    for name in args.members:
        issue(*ca, str(out), name, [name, "localhost", "127.0.0.1"])
    issue(*ca, str(out), CLIENT_CERT, ["localhost", "127.0.0.1"])
    print(f"CA {out / 'ca' / 'ca.crt'}; certificates for {', '.join(args.members)} and client")
    return 0


async def run(args: argparse.Namespace) -> int:
    if args.cmd == "up":
        return await cmd_up(args)
    if args.cmd == "down":
        return await cmd_down(args)
    c = LocalCluster.attach(_state_dir(args))
    try:
        return await _run_on(c, args)
    finally:
        await c.close_clients()


async def _run_on(c: LocalCluster, args: argparse.Namespace) -> int:
    cmd = args.cmd
    if cmd == "status":
        print(await status_table(c))
    elif cmd == "endpoints":
        print(",".join(c.endpoints))
    elif cmd == "leader":
        leader = await c.leader()
        if leader is None:
            print("no leader", file=sys.stderr)
            return 1
        print(f"{leader.name} {leader.endpoint}")
    elif cmd == "logs":
        with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
            await follow_logs(c, args.members, follow=args.follow)
    elif cmd in ("kill", "restart", "pause", "resume", "wipe"):
        m = await getattr(c, cmd)(args.member)
        print(f"{cmd} {m.name}: {m.state()}" + (f" (pid {m.proc.pid})" if m.proc else ""))
    elif cmd == "cut":
        await c.cut(args.a, args.b, both=not args.one_way, mode=args.mode)
        print(f"cut {args.a} {'->' if args.one_way else '<->'} {args.b}")
    elif cmd == "isolate":
        await c.isolate(args.member, mode=args.mode)
        print(f"isolated {args.member}")
    elif cmd == "heal":
        await c.heal(args.a, args.b, both=not args.one_way)
        print("healed " + (f"{args.a}" + (f" {args.b}" if args.b else "") if args.a else "all"))
    elif cmd == "latency":
        await c.latency(args.a, args.b, args.ms, both=args.both)
        print(f"latency {args.a}->{args.b}: {args.ms} ms")
    elif cmd == "drop":
        await c.drop(args.a, args.b, args.share, both=args.both)
        print(f"drop {args.a}->{args.b}: {args.share:.0%}")
    elif cmd == "faults":
        f = await c.faults()
        for r in f["rules"]:
            print(
                f"{r['src']}->{r['dst']}: "
                + ", ".join(
                    s
                    for s in (
                        f"cut ({r['mode']})" if r["cut"] else "",
                        f"latency {r['latency_ms']} ms" if r["latency_ms"] else "",
                        f"drop {r['drop']:.0%}" if r["drop"] else "",
                    )
                    if s
                )
            )
        if not f["rules"]:
            print("no faults")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cluster",
        description="Run and disturb a local raftkv cluster.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 2)[2] if __doc__ else None,
    )
    p.add_argument("--state-dir", help="cluster state dir (default .cluster, $RAFTKV_CLUSTER_DIR)")
    sub = p.add_subparsers(dest="cmd", required=True)

    up = sub.add_parser("up", help="start N members, wait for a leader, print endpoints")
    up.add_argument("-n", "--size", type=int, default=3)
    up.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="a member flag for every member, e.g. heartbeat-interval=50",
    )
    up.add_argument("-f", "--follow", action="store_true", help="then stream the logs")
    up.add_argument(
        "--fresh", action="store_true", help="delete a stopped cluster's state and data first"
    )
    up.add_argument("--no-proxy", action="store_true", help="direct peer links (no faults)")
    up.add_argument(
        "--tls", action="store_true", help="https and mutual TLS on every link (certs made here)"
    )
    up.add_argument(
        "--free-ports", action="store_true", help="any free ports, not etcd's 2379/2380 first"
    )
    up.add_argument("--member-cmd", help="member command instead of `python -m raftkv`")
    up.add_argument("--configs-dir", help=f"member configs mN.yaml (default {CONFIGS_DIR})")
    up.add_argument("--timeout", type=float, default=60.0)

    down = sub.add_parser("down", help="stop every member and the proxy helper")
    down.add_argument("--clean", action="store_true", help="also delete the state dir")
    down.add_argument("--grace", type=float, default=5.0, help="seconds before SIGKILL")

    sub.add_parser("status", help="member, role, term, indexes, db size, leader")
    sub.add_parser("endpoints", help="client URLs, comma-separated")
    sub.add_parser("leader", help="the current leader")
    sub.add_parser("faults", help="the link faults in force")
    logs = sub.add_parser("logs", help="print (or -f follow) the members' logs")
    logs.add_argument("-f", "--follow", action="store_true")
    logs.add_argument("members", nargs="*")
    for name, help_ in (
        ("kill", "kill -9 a member"),
        ("restart", "start a member again (same data dir)"),
        ("pause", "SIGSTOP a member"),
        ("resume", "SIGCONT a member"),
        ("wipe", "kill a member and delete its data dir"),
    ):
        sub.add_parser(name, help=help_).add_argument("member")
    cut = sub.add_parser("cut", help="cut the peer link a<->b (a->b with --one-way)")
    cut.add_argument("a")
    cut.add_argument("b")
    cut.add_argument("--one-way", action="store_true")
    cut.add_argument("--mode", choices=("blackhole", "stale", "reset"), default="blackhole")
    iso = sub.add_parser("isolate", help="cut every link to and from a member")
    iso.add_argument("member")
    iso.add_argument("--mode", choices=("blackhole", "stale", "reset"), default="blackhole")
    heal = sub.add_parser("heal", help="clear faults (all, a member's, or a<->b)")
    heal.add_argument("a", nargs="?")
    heal.add_argument("b", nargs="?")
    heal.add_argument("--one-way", action="store_true")
    lat = sub.add_parser("latency", help="delay a->b by MS milliseconds")
    lat.add_argument("a")
    lat.add_argument("b")
    lat.add_argument("ms", type=float)
    lat.add_argument("--both", action="store_true")
    drop = sub.add_parser("drop", help="break SHARE (0..1) of a->b's traffic")
    drop.add_argument("a")
    drop.add_argument("b")
    drop.add_argument("share", type=float)
    drop.add_argument("--both", action="store_true")
    certs = sub.add_parser("certs", help="make a CA and member certificates (compose over TLS)")
    certs.add_argument("dir")
    certs.add_argument("members", nargs="*", default=["m1", "m2", "m3"])
    rep = sub.add_parser("report", help="render a saved chaos run into its HTML report and PNG")
    rep.add_argument("path", help="a history.jsonl written by scripts/chaos.py (or its dir)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "report":
        return cmd_report(args)
    if args.cmd == "certs":
        return cmd_certs(args)
    try:
        return asyncio.run(run(args))
    except (ClusterError, KeyError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
