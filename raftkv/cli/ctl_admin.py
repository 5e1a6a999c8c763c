"""raftkvctl's cluster and maintenance commands: lease, member, endpoint, defrag, alarm,
move-leader (etcdctl 3.4's output formats)."""

from __future__ import annotations

import argparse
import base64
import sys
import time

from raftkv.cli.ctl_client import Client, CtlError
from raftkv.cli.ctl_print import (
    go_duration,
    go_json,
    humanize_bytes,
    json_line,
    member_status,
    table,
)
from raftkv.cli.ctl_print import (
    out as _out,
)
from raftkv.pb import rpc

__all__ = [
    "cmd_alarm",
    "cmd_defrag",
    "cmd_endpoint",
    "cmd_lease",
    "cmd_member",
    "cmd_move_leader",
]


def _hex_id(s: str, what: str, parse: str) -> int:
    """An ID argument in hex; refused in etcdctl's words (``parse``: the Go function etcdctl
    reads a ``what`` ID with)."""
    try:
        return int(s, 16)
    except ValueError:
        raise CtlError(
            f'bad {what} ID arg (strconv.{parse}: parsing "{s}": invalid syntax), '
            "expecting ID in Hex",
            128,
        ) from None


def _lease_id(s: str) -> int:
    return _hex_id(s, "lease", "ParseInt")


def cmd_lease(c: Client, a: argparse.Namespace) -> None:
    sub = a.lease_cmd
    if sub == "grant":
        try:
            ttl = int(a.ttl)
        except ValueError:
            raise CtlError(
                f'bad TTL (strconv.ParseInt: parsing "{a.ttl}": invalid syntax)', 128
            ) from None
        r = c.call("/v3/lease/grant", rpc.LeaseGrantRequest(TTL=ttl), rpc.LeaseGrantResponse)
        if a.write_out == "json":  # clientv3.LeaseGrantResponse: header fields promoted
            hdr = go_json(r.header) if r.header is not None else {}
            _out(json_line({**hdr, "ID": r.ID, "TTL": r.TTL, "Error": r.error}))
        else:
            _out(f"lease {r.ID:016x} granted with TTL({r.TTL}s)")
    elif sub == "revoke":
        lid = _lease_id(a.id)
        try:
            r = c.call("/v3/lease/revoke", rpc.LeaseRevokeRequest(ID=lid), rpc.LeaseRevokeResponse)
        except CtlError as e:
            raise CtlError(f"failed to revoke lease ({e})") from None
        if a.write_out == "json":
            _out(json_line(go_json(r)))
        else:
            _out(f"lease {lid:016x} revoked")
    elif sub == "timetolive":
        lid = _lease_id(a.id)
        r = c.call(
            "/v3/lease/timetolive",
            rpc.LeaseTimeToLiveRequest(ID=lid, keys=a.keys),
            rpc.LeaseTimeToLiveResponse,
        )
        if a.write_out == "json":
            h = r.header or rpc.ResponseHeader()

            d = {
                "cluster_id": h.cluster_id,
                "member_id": h.member_id,
                "revision": h.revision,
                "raft_term": h.raft_term,
                "id": r.ID,
                "ttl": r.TTL,
                "granted-ttl": r.grantedTTL,
                "keys": [base64.b64encode(k).decode() for k in r.keys] if r.keys else None,
            }
            _out(json_line(d))
        elif r.grantedTTL == 0 and r.TTL == -1:
            _out(f"lease {lid:016x} already expired")
        else:
            line = f"lease {lid:016x} granted with TTL({r.grantedTTL}s), remaining({r.TTL}s)"
            if a.keys:
                ks = " ".join(k.decode("utf-8", "replace") for k in r.keys)
                line += f", attached keys([{ks}])"
            _out(line)
    elif sub == "list":
        r = c.call("/v3/lease/leases", rpc.LeaseLeasesRequest(), rpc.LeaseLeasesResponse)
        if a.write_out == "json":
            _out(json_line(go_json(r)))
        else:
            _out(f"found {len(r.leases)} leases")
            _out([f"{x.ID:016x}" for x in r.leases])
    elif sub == "keep-alive":
        lid = _lease_id(a.id)
        while True:
            got = list(
                c.stream(
                    "/v3/lease/keepalive",
                    [rpc.LeaseKeepAliveRequest(ID=lid)],
                    rpc.LeaseKeepAliveResponse,
                )
            )
            r = got[0] if got else rpc.LeaseKeepAliveResponse(ID=lid)
            if r.TTL <= 0:
                if a.once:  # clientv3's KeepAliveOnce: ErrLeaseNotFound, ExitBadConnection
                    raise CtlError("etcdserver: requested lease not found", 2)
                _out(f"lease {lid:016x} expired or revoked.")
                return
            if a.write_out == "json":
                _out(json_line(go_json(r)))
            else:
                _out(f"lease {lid:016x} keepalived with TTL({r.TTL})")
            sys.stdout.flush()
            if a.once:
                return
            time.sleep(max(r.TTL / 3.0, 0.5))


def _member_id(args: list[str]) -> int:
    if len(args) != 1:
        raise CtlError("member ID is not provided", 128)
    return _hex_id(args[0], "member", "ParseUint")


def _member_change(c: Client, a: argparse.Namespace) -> None:
    sub = a.member_cmd
    if sub == "add":
        if len(a.args) != 1:
            raise CtlError("member name not provided", 128)
        if len(a.args) > 1:
            raise CtlError("too many arguments", 128)
        if not a.peer_urls:
            raise CtlError("member peer urls not provided", 128)
        urls = a.peer_urls.split(",")
        req = rpc.MemberAddRequest(peerURLs=urls, isLearner=a.learner)
        r = c.call("/v3/cluster/member/add", req, rpc.MemberAddResponse)
        if a.write_out == "json":
            _out(json_line(go_json(r)))
            return
        cid = r.header.cluster_id if r.header else 0
        new = r.member or rpc.Member()
        # etcdctl 3.4.23 prints no "as learner" here, even for a learner
        _out(f"Member {new.ID:16x} added to cluster {cid:16x}")
        conf = [
            f"{a.args[0] if m.ID == new.ID else m.name}={u}" for m in r.members for u in m.peerURLs
        ]
        _out(
            [
                "",
                f'ETCD_NAME="{a.args[0]}"',
                f'ETCD_INITIAL_CLUSTER="{",".join(conf)}"',
                f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{",".join(urls)}"',
                'ETCD_INITIAL_CLUSTER_STATE="existing"',
            ]
        )
        return
    mid = _member_id(a.args)
    if sub == "remove":
        r = c.call(
            "/v3/cluster/member/remove", rpc.MemberRemoveRequest(ID=mid), rpc.MemberRemoveResponse
        )
        verb = "removed from"
    elif sub == "update":
        if not a.peer_urls:
            raise CtlError("member peer urls not provided", 128)
        req = rpc.MemberUpdateRequest(ID=mid, peerURLs=a.peer_urls.split(","))
        r = c.call("/v3/cluster/member/update", req, rpc.MemberUpdateResponse)
        verb = "updated in"
    else:
        r = c.call(
            "/v3/cluster/member/promote",
            rpc.MemberPromoteRequest(ID=mid),
            rpc.MemberPromoteResponse,
        )
        verb = "promoted in"
    if a.write_out == "json":
        _out(json_line(go_json(r)))
        return
    cid = r.header.cluster_id if r.header else 0
    _out(f"Member {mid:16x} {verb} cluster {cid:16x}")


def cmd_member(c: Client, a: argparse.Namespace) -> None:
    if a.member_cmd != "list":
        _member_change(c, a)
        return
    r = c.call("/v3/cluster/member/list", rpc.MemberListRequest(), rpc.MemberListResponse)
    if a.write_out == "json":
        _out(json_line(go_json(r)))
        return
    rows = [
        [
            f"{m.ID:x}",
            member_status(m),
            m.name,
            ",".join(m.peerURLs),
            ",".join(m.clientURLs),
            "true" if m.isLearner else "false",
        ]
        for m in r.members
    ]
    if a.write_out == "table":
        hdr = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
        _out(table(hdr, rows))
    else:
        _out([", ".join(row) for row in rows])


def _cluster_endpoints(c: Client) -> list[str]:
    r = c.call("/v3/cluster/member/list", rpc.MemberListRequest(), rpc.MemberListResponse)
    return [u for m in r.members for u in m.clientURLs]


def cmd_endpoint(c: Client, a: argparse.Namespace) -> None:
    eps = _cluster_endpoints(c) if a.cluster else c.endpoints
    if a.endpoint_cmd == "status":
        got = []
        for ep in eps:
            try:
                got.append(
                    (
                        ep,
                        c.call(
                            "/v3/maintenance/status",
                            rpc.StatusRequest(),
                            rpc.StatusResponse,
                            endpoint=ep,
                        ),
                    )
                )
            except CtlError as e:
                sys.stderr.write(f"Failed to get the status of endpoint {ep} ({e})\n")
        if a.write_out == "json":
            _out(json_line([{"Endpoint": ep, "Status": go_json(s)} for ep, s in got]))
            return
        rows = []
        for ep, s in got:
            mid = s.header.member_id if s.header else 0
            rows.append(
                [
                    ep,
                    f"{mid:x}",
                    s.version,
                    humanize_bytes(s.dbSize),
                    "true" if s.leader == mid else "false",
                    "true" if s.isLearner else "false",
                    str(s.raftTerm),
                    str(s.raftIndex),
                    str(s.raftAppliedIndex),
                    ", ".join(s.errors),
                ]
            )
        if a.write_out == "table":
            hdr = [
                "ENDPOINT",
                "ID",
                "VERSION",
                "DB SIZE",
                "IS LEADER",
                "IS LEARNER",
                "RAFT TERM",
                "RAFT INDEX",
                "RAFT APPLIED INDEX",
                "ERRORS",
            ]
            _out(table(hdr, rows))
        else:
            _out([", ".join(r) for r in rows])
        return
    # health: a linearizable read of "health", as etcdctl does
    results = []
    for ep in eps:
        t0 = time.monotonic()
        err = ""
        try:
            c.call("/v3/kv/range", rpc.RangeRequest(key=b"health"), rpc.RangeResponse, endpoint=ep)
        except CtlError as e:
            err = str(e)
        results.append((ep, not err, go_duration(time.monotonic() - t0), err))
    if a.write_out == "json":
        _out(
            json_line(
                [
                    {"endpoint": ep, "health": ok, "took": took, **({"error": err} if err else {})}
                    for ep, ok, took, err in results
                ]
            )
        )
    elif a.write_out == "table":
        rows = [[ep, "true" if ok else "false", took, err] for ep, ok, took, err in results]
        _out(table(["ENDPOINT", "HEALTH", "TOOK", "ERROR"], rows))
    else:
        for ep, ok, took, err in results:
            if ok:
                sys.stdout.write(
                    f"{ep} is healthy: successfully committed proposal: took = {took}\n"
                )
            else:
                sys.stderr.write(f"{ep} is unhealthy: failed to commit proposal: {err}\n")
    if not all(ok for _, ok, _, _ in results):
        raise CtlError("unhealthy cluster")


def cmd_defrag(c: Client, a: argparse.Namespace) -> None:
    failed = False
    for ep in _cluster_endpoints(c) if a.cluster else c.endpoints:
        try:
            c.call(
                "/v3/maintenance/defragment",
                rpc.DefragmentRequest(),
                rpc.DefragmentResponse,
                endpoint=ep,
            )
            _out(f"Finished defragmenting etcd member[{ep}]")
        except CtlError as e:
            sys.stderr.write(f"Failed to defragment etcd member[{ep}] ({e})\n")
            failed = True
    if failed:
        raise CtlError("", 1)


def _print_alarms(a: argparse.Namespace, r: rpc.AlarmResponse) -> None:
    if a.write_out == "json":
        _out(json_line(go_json(r)))
        return
    for m in r.alarms:
        _out(
            f"memberID:{m.memberID} alarm:{m.alarm.name if hasattr(m.alarm, 'name') else m.alarm} "
        )


def cmd_alarm(c: Client, a: argparse.Namespace) -> None:
    r = c.call(
        "/v3/maintenance/alarm", rpc.AlarmRequest(action=rpc.AlarmAction.GET), rpc.AlarmResponse
    )
    if a.alarm_cmd == "disarm":
        out = rpc.AlarmResponse()
        for m in r.alarms:
            req = rpc.AlarmRequest(
                action=rpc.AlarmAction.DEACTIVATE, memberID=m.memberID, alarm=m.alarm
            )
            got = c.call("/v3/maintenance/alarm", req, rpc.AlarmResponse)
            out.header = got.header
            out.alarms.extend(got.alarms)
        r = out
    _print_alarms(a, r)


def cmd_move_leader(c: Client, a: argparse.Namespace) -> None:
    if len(a.args) != 1:
        raise CtlError("move-leader command needs 1 argument", 128)
    try:
        target = int(a.args[0], 16)
    except ValueError:
        raise CtlError(f'strconv.ParseUint: parsing "{a.args[0]}": invalid syntax', 128) from None
    leader_ep, leader_id = None, 0
    for ep in c.endpoints:
        try:
            s = c.call(
                "/v3/maintenance/status", rpc.StatusRequest(), rpc.StatusResponse, endpoint=ep
            )
        except CtlError:
            continue
        if s.header is not None and s.leader == s.header.member_id:
            leader_ep, leader_id = ep, s.leader
            break
    if leader_ep is None:
        raise CtlError("no leader endpoint given at " + ",".join(c.endpoints))
    c.call(
        "/v3/maintenance/transfer-leadership",
        rpc.MoveLeaderRequest(targetID=target),
        rpc.MoveLeaderResponse,
        endpoint=leader_ep,
    )
    _out(f"Leadership transferred from {leader_id:x} to {target:x}")
