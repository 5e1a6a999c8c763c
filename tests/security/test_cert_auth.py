"""With auth on and ``--client-cert-auth``, a gRPC client's verified certificate names the user
(its common name), as etcd's AuthInfoFromTLS does; a token, when given, wins. The same etcdctl
commands against a one-member etcd 3.4 and a one-member raftkv, both over mutual TLS, must
answer the same (stdout, stderr, exit code)."""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cluster.config import free_ports, member_flags
from raftkv.tls import issue, make_ca
from tests.api.clusters import ROOT, etcd_binaries
from tests.cli.test_ctl import _run

pytestmark = pytest.mark.timeout(240)

HOST = "127.0.0.1"


def _certs(tmp: Path) -> Path:
    certs = tmp / "certs"
    ca_crt, ca_key = make_ca(str(certs / "ca"))
    for name in ("server", "root", "u", "nobody"):
        issue(ca_crt, ca_key, str(certs), name, [HOST, "localhost"])
    return certs


def _start(argv0: list[str], tmp: Path, certs: Path) -> tuple[subprocess.Popen, str]:
    client_port, peer_port = free_ports(2)
    client, peer = f"https://{HOST}:{client_port}", f"http://{HOST}:{peer_port}"
    flags = member_flags("n1", str(tmp / "n1"), client, peer, peer, f"n1={peer}")
    tls = [
        f"--cert-file={certs / 'server.crt'}",
        f"--key-file={certs / 'server.key'}",
        f"--trusted-ca-file={certs / 'ca' / 'ca.crt'}",
        "--client-cert-auth",
        "--bcrypt-cost=4",
    ]
    log = open(tmp / "member.log", "wb")  # noqa: SIM115 (lives with the process)
    p = subprocess.Popen(
        [*argv0, *flags, *tls],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return p, client


def _ctl(etcdctl: str, url: str, certs: Path, cert: str, args: list[str]) -> tuple:
    return _run(
        [
            etcdctl,
            f"--endpoints={url}",
            f"--cacert={certs / 'ca' / 'ca.crt'}",
            f"--cert={certs / cert}.crt",
            f"--key={certs / cert}.key",
            *args,
        ]
    )


SETUP = [
    ["user", "add", "root:rootpw"],
    ["user", "add", "u:upw"],
    ["role", "add", "r"],
    ["role", "grant-permission", "r", "readwrite", "a/", "--prefix"],
    ["user", "grant-role", "u", "r"],
    ["put", "b", "1"],
    ["auth", "enable"],
]
# (certificate, etcdctl arguments)
CASES: list[tuple[str, list[str]]] = [
    ("u", ["put", "a/1", "x"]),
    ("u", ["get", "a/1"]),
    ("u", ["get", "b"]),
    ("u", ["put", "b", "2"]),
    ("u", ["user", "list"]),
    ("u", ["user", "get", "u"]),
    ("root", ["user", "list"]),
    ("root", ["get", "b"]),
    ("nobody", ["get", "a/1"]),  # a certificate of a user that does not exist
    ("u", ["--user", "root:rootpw", "get", "b"]),  # the token wins over the certificate
    ("root", ["--user", "u:upw", "get", "b"]),
    ("u", ["endpoint", "hashkv"]),  # maintenance: refused in the auth package's words
    ("u", ["defrag"]),
    ("root", ["defrag"]),
]
_URL = re.compile(r"https://127\.0\.0\.1:\d+")


def _sequence(etcdctl: str, argv0: list[str], tmp: Path, certs: Path) -> list[tuple]:
    p, url = _start(argv0, tmp, certs)
    try:
        deadline = time.monotonic() + 60
        while _ctl(etcdctl, url, certs, "root", ["get", "x"])[0] != 0:
            if time.monotonic() > deadline or p.poll() is not None:
                raise AssertionError((tmp / "member.log").read_text()[-2000:])
            time.sleep(0.3)
        for args in SETUP:
            code, out, err = _ctl(etcdctl, url, certs, "root", args)
            assert code == 0, (args, out, err)
        out = []
        for cert, args in CASES:
            code, stdout, stderr = _ctl(etcdctl, url, certs, cert, args)
            out.append((code, _URL.sub("<url>", stdout), _URL.sub("<url>", stderr)))
        return out
    finally:
        p.kill()
        p.wait(timeout=10)


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple]]:
    bins = etcd_binaries()
    if bins is None:
        pytest.skip("scripts/install-etcd.sh could not provide etcd")
    certs = _certs(tmp_path_factory.mktemp("certs"))
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        e = ex.submit(_sequence, bins[1], [bins[0]], tmp_path_factory.mktemp("etcd"), certs)
        r = ex.submit(
            _sequence,
            bins[1],
            [sys.executable, "-m", "raftkv"],
            tmp_path_factory.mktemp("raftkv"),
            certs,
        )
        return {"etcd": e.result(), "raftkv": r.result()}


@pytest.mark.parametrize("i", range(len(CASES)), ids=[f"{c} {' '.join(a)}" for c, a in CASES])
def test_the_certificates_common_name_is_the_user(answers, i: int) -> None:
    assert answers["raftkv"][i] == answers["etcd"][i]
