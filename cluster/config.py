"""Member specs for a local cluster: configs/ + local addresses, and the member's command line.

Local members use the same files as docker compose (configs/mN.yaml, etcd's config-file
format); the runner overrides on the command line (flags beat the config file) only what must
differ on one machine: the name, the addresses and ports, the data dir, the cluster token, and
any settings a test asks for. Member i (1-based) listens on its own loopback IP 127.0.0.(10+i)
so that the fault proxies can tell members apart by source address.
"""

from __future__ import annotations

import socket
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

__all__ = [
    "CONFIGS_DIR",
    "MemberSpec",
    "config_file_for",
    "free_port",
    "load_config",
    "member_argv",
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

    @property
    def client_url(self) -> str:
        return f"http://{self.ip}:{self.client_port}"

    @property
    def listen_peer_url(self) -> str:
        return f"http://{self.ip}:{self.peer_port}"

    @property
    def advertise_peer_url(self) -> str:
        return f"http://{self.ip}:{self.proxy_port or self.peer_port}"

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
        f"--name={spec.name}",
        f"--data-dir={spec.data_dir}",
        f"--listen-client-urls={spec.client_url}",
        f"--advertise-client-urls={spec.client_url}",
        f"--listen-peer-urls={spec.listen_peer_url}",
        f"--initial-advertise-peer-urls={spec.advertise_peer_url}",
        f"--initial-cluster={initial_cluster}",
        f"--initial-cluster-state={cluster_state}",
        f"--initial-cluster-token={token}",
        *settings_to_flags(settings or {}),
    ]
