"""TLS on the client and peer links of a real 3-member cluster (certificates made with
``raftkv.tls``): the JSON gateway and gRPC (the real etcdctl) over https with client
certificates, the peers over mutual TLS; strangers refused and logged: no client certificate,
one from another CA (client and peer ports), plaintext HTTP on a TLS port (Go's answer)."""

from __future__ import annotations

import base64
import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from cluster.config import free_ports, member_flags
from raftkv.tls import PLAIN_HTTP_ANSWER, issue, make_ca
from tests.api.clusters import ROOT, etcd_binaries

HOST = "127.0.0.1"


@dataclass
class TLSCluster:
    certs: Path
    client_urls: list[str]
    peer_ports: list[int]
    logs: list[Path]
    procs: list[subprocess.Popen] = field(default_factory=list)

    def ctx(self, cert: str | None = "client", ca: str = "ca") -> ssl.SSLContext:
        c = ssl.create_default_context(cafile=str(self.certs / ca / "ca.crt"))
        if cert is not None:
            c.load_cert_chain(self.certs / f"{cert}.crt", self.certs / f"{cert}.key")
        return c

    def post(self, url: str, path: str, body: dict, ctx: ssl.SSLContext | None = None) -> dict:
        host, port = url.removeprefix("https://").split(":")
        conn = http.client.HTTPSConnection(host, int(port), context=ctx or self.ctx(), timeout=10)
        try:
            conn.request("POST", path, json.dumps(body))
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _start(tmp: Path) -> TLSCluster:
    certs = tmp / "certs"
    ca_crt, ca_key = make_ca(str(certs / "ca"))
    for name in ("n1", "n2", "n3", "client"):
        issue(ca_crt, ca_key, str(certs), name, [HOST, "localhost"])
    other = make_ca(str(certs / "other"), "another-ca")
    issue(*other, str(certs), "stranger", [HOST])
    ports = free_ports(6)
    client = [f"https://{HOST}:{p}" for p in ports[:3]]
    peer = [f"https://{HOST}:{p}" for p in ports[3:]]
    initial = ",".join(f"n{i + 1}={u}" for i, u in enumerate(peer))
    c = TLSCluster(certs, client, ports[3:], [tmp / f"n{i + 1}.log" for i in range(3)])
    for i in range(3):
        name = f"n{i + 1}"
        tls = [
            f"--cert-file={certs / name}.crt",
            f"--key-file={certs / name}.key",
            f"--trusted-ca-file={ca_crt}",
            "--client-cert-auth",
            f"--peer-cert-file={certs / name}.crt",
            f"--peer-key-file={certs / name}.key",
            f"--peer-trusted-ca-file={ca_crt}",
            "--peer-client-cert-auth",
        ]
        flags = member_flags(name, str(tmp / name), client[i], peer[i], peer[i], initial)
        with open(c.logs[i], "wb") as log:
            c.procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "raftkv", *flags, *tls],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONPATH": str(ROOT)},
                )
            )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if all("header" in c.post(u, "/v3/kv/range", {"key": _b64("x")}) for u in client):
                return c
        except (OSError, ValueError):
            pass
        time.sleep(0.2)
    _stop(c)
    raise AssertionError("the TLS cluster did not come up:\n" + c.logs[0].read_text()[-2000:])


def _stop(c: TLSCluster) -> None:
    for p in c.procs:
        p.kill()
    for p in c.procs:
        p.wait(timeout=10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSCluster]:
    tmp = tmp_path_factory.mktemp("tls")
    c = _start(tmp)
    try:
        yield c
    finally:
        _stop(c)
        shutil.rmtree(tmp, ignore_errors=True)


def test_json_gateway_over_https_with_a_client_certificate(cluster: TLSCluster) -> None:
    put = cluster.post(cluster.client_urls[0], "/v3/kv/put", {"key": _b64("k"), "value": _b64("v")})
    rev = put["header"]["revision"]
    # written through the leader over mutual-TLS peer links, read on another member
    got = cluster.post(cluster.client_urls[2], "/v3/kv/range", {"key": _b64("k")})
    assert got["kvs"][0]["value"] == _b64("v") and got["header"]["revision"] == rev


def test_etcdctl_over_grpc_with_tls(cluster: TLSCluster) -> None:
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcdctl")
    certs = cluster.certs
    base = [
        bins[1],
        f"--endpoints={cluster.client_urls[1]}",
        f"--cacert={certs / 'ca' / 'ca.crt'}",
        f"--cert={certs / 'client.crt'}",
        f"--key={certs / 'client.key'}",
    ]
    env = {**os.environ, "ETCDCTL_API": "3"}
    put = subprocess.run([*base, "put", "g", "over-grpc"], capture_output=True, text=True, env=env)
    assert (put.returncode, put.stdout) == (0, "OK\n"), put.stderr
    get = subprocess.run([*base, "get", "g"], capture_output=True, text=True, env=env)
    assert get.stdout == "g\nover-grpc\n", get.stderr
    health = subprocess.run([*base, "endpoint", "health"], capture_output=True, text=True, env=env)
    assert health.returncode == 0 and "is healthy" in health.stdout + health.stderr


def _handshake_fails(port: int, ctx: ssl.SSLContext) -> bool:
    try:
        with (
            socket.create_connection((HOST, port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname=HOST) as s,
        ):
            s.sendall(b"POST /v3/kv/range HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
            return s.recv(100) == b""  # TLS 1.3: the refusal arrives after the handshake
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_strangers_are_refused_and_logged(cluster: TLSCluster) -> None:
    client_port = _port(cluster.client_urls[0])
    assert _handshake_fails(client_port, cluster.ctx(cert=None))  # no client certificate
    assert _handshake_fails(client_port, cluster.ctx(cert="stranger"))  # another CA
    # a peer whose certificate another CA signed
    assert _handshake_fails(cluster.peer_ports[0], cluster.ctx(cert="stranger"))
    # plaintext HTTP on the TLS port: Go's net/http answer
    with socket.create_connection((HOST, client_port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        while chunk := s.recv(4096):
            got += chunk
    assert got == PLAIN_HTTP_ANSWER
    deadline = time.monotonic() + 5
    while cluster.logs[0].read_text().count("tls_refused") < 4:
        assert time.monotonic() < deadline, cluster.logs[0].read_text()[-3000:]
        time.sleep(0.1)


def test_raftkvctl_with_etcdctls_tls_flags(cluster: TLSCluster) -> None:
    certs = cluster.certs
    host_port = cluster.client_urls[0].removeprefix("https://")  # no scheme: TLS by --cacert
    base = [
        sys.executable,
        "-m",
        "raftkv.cli.ctl",
        f"--endpoints={host_port}",
        f"--cacert={certs / 'ca' / 'ca.crt'}",
        f"--cert={certs / 'client.crt'}",
        f"--key={certs / 'client.key'}",
    ]
    put = subprocess.run([*base, "put", "ctl", "tls"], capture_output=True, text=True)
    assert (put.returncode, put.stdout) == (0, "OK\n"), put.stderr
    get = subprocess.run([*base, "get", "ctl"], capture_output=True, text=True)
    assert get.stdout == "ctl\ntls\n", get.stderr
    # without a client certificate the member refuses the connection
    bare = subprocess.run([*base[:5], "get", "ctl"], capture_output=True, text=True)
    assert bare.returncode != 0


def test_grpcio_over_tls_negotiates_h2(cluster: TLSCluster) -> None:
    """grpcio (C core, as aetcd and python-etcd3 use it) insists on ALPN h2 over TLS."""
    grpc = pytest.importorskip("grpc")
    from raftkv.api.grpcpb import rpc_pb2

    certs = cluster.certs
    creds = grpc.ssl_channel_credentials(
        root_certificates=(certs / "ca" / "ca.crt").read_bytes(),
        private_key=(certs / "client.key").read_bytes(),
        certificate_chain=(certs / "client.crt").read_bytes(),
    )
    with grpc.secure_channel(cluster.client_urls[0].removeprefix("https://"), creds) as ch:
        put = ch.unary_unary(
            "/etcdserverpb.KV/Put",
            request_serializer=rpc_pb2.PutRequest.SerializeToString,
            response_deserializer=rpc_pb2.PutResponse.FromString,
        )
        rng = ch.unary_unary(
            "/etcdserverpb.KV/Range",
            request_serializer=rpc_pb2.RangeRequest.SerializeToString,
            response_deserializer=rpc_pb2.RangeResponse.FromString,
        )
        rev = put(rpc_pb2.PutRequest(key=b"grpcio", value=b"tls"), timeout=10).header.revision
        got = rng(rpc_pb2.RangeRequest(key=b"grpcio"), timeout=10)
        assert (got.kvs[0].value, got.header.revision) == (b"tls", rev)


def test_auto_tls_makes_self_signed_certificates_in_the_data_dir(tmp_path: Path) -> None:
    """--auto-tls / --peer-auto-tls: etcd's self-signed certificates under
    <data-dir>/fixtures/{client,peer}, kept across restarts; clients skip verification."""
    cport, pport = free_ports(2)
    client, peer = f"https://{HOST}:{cport}", f"https://{HOST}:{pport}"
    data = tmp_path / "solo"
    flags = member_flags("solo", str(data), client, peer, peer, f"solo={peer}")
    argv = [sys.executable, "-m", "raftkv", *flags, "--auto-tls", "--peer-auto-tls"]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fingerprints = []
    for _ in range(2):  # and again from the same data dir
        with open(tmp_path / "solo.log", "ab") as log:
            p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            c = TLSCluster(tmp_path, [client], [pport], [tmp_path / "solo.log"], [p])
            deadline = time.monotonic() + 30
            while True:
                try:
                    got = c.post(client, "/v3/kv/put", {"key": _b64("a"), "value": _b64("b")}, ctx)
                    break
                except (OSError, ValueError):
                    assert time.monotonic() < deadline, (tmp_path / "solo.log").read_text()[-2000:]
                    time.sleep(0.2)
            assert "header" in got
        finally:
            _stop(TLSCluster(tmp_path, [], [], [], [p]))
        fingerprints.append((data / "fixtures" / "client" / "cert.pem").read_bytes())
        assert (data / "fixtures" / "peer" / "cert.pem").exists()
    assert fingerprints[0] == fingerprints[1]
