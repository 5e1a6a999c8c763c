"""Member specs for a local cluster: configs/ + local addresses, and the member's command line.

Local members use the same files as docker compose (configs/mN.yaml, etcd's config-file
format); the runner overrides on the command line (flags beat the config file) only what must
differ on one machine: the name, the addresses and ports, the data dir, the cluster token, and
any settings a test asks for. Member i (1-based) listens on its own loopback IP 127.0.0.(10+i)
so that the fault proxies can tell members apart by source address.

``member_flags`` (where a member lives) and ``free_ports`` also serve the test harnesses that
start members, or real etcd, without this runner (tests/server, tests/api).
"""

from __future__ import annotations

import random
import socket
import ssl
import sys
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

__all__ = [
    "CLIENT_CERT",
    "CONFIGS_DIR",
    "MEMBER_CMD",
    "MemberSpec",
    "client_ssl",
    "config_file_for",
    "free_port",
    "free_ports",
    "load_config",
    "make_certs",
    "member_argv",
    "member_flags",
    "settings_to_flags",
]

CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"
MEMBER_CMD = [sys.executable, "-m", "raftkv"]


@dataclass
class MemberSpec:
    name: str
    ip: str
    client_port: int
    peer_port: int  # the member's real peer listener
    proxy_port: int | None  # its fault proxy, the peer address others dial (None: no proxy)
    data_dir: str
    log_path: str
    config_file: str
    certs_dir: str | None = None  # TLS on every link: <certs_dir>/{ca/ca.crt,<name>.crt,.key}

    @property
    def scheme(self) -> str:
        return "https" if self.certs_dir else "http"

    @property
    def client_url(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.client_port}"

    @property
    def listen_peer_url(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.peer_port}"

    @property
    def advertise_peer_url(self) -> str:
        return f"{self.scheme}://{self.ip}:{self.proxy_port or self.peer_port}"

    def tls_flags(self) -> list[str]:
        """Mutual TLS with the cluster's CA on the client and the peer links."""
        if not self.certs_dir:
            return []
        d = Path(self.certs_dir)
        ca, crt, key = d / "ca" / "ca.crt", d / f"{self.name}.crt", d / f"{self.name}.key"
        return [
            f"--cert-file={crt}",
            f"--key-file={key}",
            f"--trusted-ca-file={ca}",
            "--client-cert-auth",
            f"--peer-cert-file={crt}",
            f"--peer-key-file={key}",
            f"--peer-trusted-ca-file={ca}",
            "--peer-client-cert-auth",
        ]

    def to_json(self) -> dict:
        return asdict(self)


def free_port(ip: str, preferred: int | None = None) -> int:
    """A TCP port free on `ip` right now (`preferred` when it is)."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((ip, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError(f"no free port on {ip}")


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections' source ports."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # (Linux's default)


PORT_FLOOR = 20000  # free_ports picks in [PORT_FLOOR, the ephemeral range's start)
_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_ports(n: int, ip: str = "127.0.0.1") -> list[int]:
    """``n`` distinct TCP ports free on ``ip`` right now, for members started next.

    They are picked below the kernel's ephemeral range: a port the kernel hands out for
    binding to 0 is also where it takes outgoing connections' source ports from, so one of
    those (another cluster dialling its peers meanwhile) could take it before the member binds
    it; seen as "address already in use" when etcd and raftkv clusters start side by side. A
    port is never handed out twice by one process (clusters started from parallel threads)."""
    low = _ephemeral_low()
    if low - PORT_FLOOR < 1000:  # an unusual range: fall back on the kernel's choice
        return _kernel_ports(n, ip)
    rng = random.Random()
    with _handed_out_lock:
        socks: list[socket.socket] = []
        ports: list[int] = []
        tries = 0
        try:
            while len(ports) < n:
                tries += 1
                if tries > 100 * n + 1000:
                    raise OSError(f"no {n} free ports on {ip} in [{PORT_FLOOR}, {low})")
                port = rng.randrange(PORT_FLOOR, low)
                if port in _handed_out or port in ports:
                    continue
                s = socket.socket()
                try:
                    s.bind((ip, port))
                except OSError:
                    s.close()
                    continue
                socks.append(s)
                ports.append(port)
        finally:
            for s in socks:
                s.close()
        _handed_out.update(ports)
        return ports


def _kernel_ports(n: int, ip: str) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind((ip, 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def config_file_for(name: str, configs_dir: Path = CONFIGS_DIR) -> Path:
    """configs/<name>.yaml, or configs/m1.yaml as the template for members past the third."""
    path = configs_dir / f"{name}.yaml"
    return path if path.exists() else configs_dir / "m1.yaml"


def load_config(path: Path) -> dict:
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of etcd flag names to values")
    return data


def settings_to_flags(settings: dict) -> list[str]:
    """{'heartbeat_interval': 50, 'pre_vote': True} -> ['--heartbeat-interval=50', ...]."""
    flags = []
    for key, value in settings.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        flags.append(f"--{key.replace('_', '-')}={value}")
    return flags


def member_argv(
    spec: MemberSpec,
    members: list[MemberSpec],
    *,
    token: str,
    cluster_state: str = "new",
    settings: dict | None = None,
    member_cmd: list[str] | None = None,
) -> list[str]:
    initial_cluster = ",".join(f"{m.name}={m.advertise_peer_url}" for m in members)
    return [
        *(member_cmd or MEMBER_CMD),
        f"--config-file={spec.config_file}",
        *member_flags(
            spec.name,
            spec.data_dir,
            spec.client_url,
            spec.listen_peer_url,
            spec.advertise_peer_url,
            initial_cluster,
        ),
        f"--initial-cluster-state={cluster_state}",
        f"--initial-cluster-token={token}",
        *spec.tls_flags(),
        *settings_to_flags(settings or {}),
    ]


def member_flags(
    name: str,
    data_dir: str,
    client_url: str,
    listen_peer_url: str,
    advertise_peer_url: str,
    initial_cluster: str,
) -> list[str]:
    """The flags that place one member (etcd's or raftkv's, the flags are the same): its
    name, data dir, addresses and the cluster it starts in; the client URL is listened on and
    advertised as is."""
    return [
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={listen_peer_url}",
        f"--initial-advertise-peer-urls={advertise_peer_url}",
        f"--initial-cluster={initial_cluster}",
    ]


CLIENT_CERT = "client"  # the certificate the runner's own clients show (its CN: "client")


def make_certs(certs_dir: Path, members: list[MemberSpec]) -> None:
    """A CA and a certificate per member (valid for its IP) plus one for clients, once."""
    from raftkv.tls import issue, make_ca

    if (certs_dir / "ca" / "ca.crt").exists():
        return
    ca = make_ca(str(certs_dir / "ca"))
    for m in members:
        issue(*ca, str(certs_dir), m.name, [m.ip, "localhost"])
    issue(*ca, str(certs_dir), CLIENT_CERT, ["127.0.0.1", "localhost"])


def client_ssl(certs_dir: str | Path) -> ssl.SSLContext:
    """What a client of a TLS cluster uses: the cluster's CA and the client certificate."""
    d = Path(certs_dir)
    ctx = ssl.create_default_context(cafile=str(d / "ca" / "ca.crt"))
    ctx.load_cert_chain(d / f"{CLIENT_CERT}.crt", d / f"{CLIENT_CERT}.key")
    return ctx
