"""Every setting of a member, with etcd's flag names and defaults.

Sources, strongest first: command-line flags (``--initial-cluster ...``, Go style: one or two
dashes, ``--flag value`` or ``--flag=value``), environment variables ``RAFTKV_<FLAG>`` (upper
case, dashes as underscores: ``RAFTKV_INITIAL_CLUSTER``), a YAML config file
(``--config-file``; its keys are exactly etcd's flag names, like etcd's config file), then
etcd's defaults. The merged values are validated by the pydantic model ``Settings``; every
problem is reported as one line naming the flag (``ConfigError``), never as a traceback.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

__all__ = ["FLAGS", "ConfigError", "Settings", "UsageError", "load_settings"]

DEFAULT_NAME = "default"
DEFAULT_PEER_URL = "http://localhost:2380"
DEFAULT_CLIENT_URL = "http://localhost:2379"
DEFAULT_INITIAL_CLUSTER = f"{DEFAULT_NAME}={DEFAULT_PEER_URL}"


class ConfigError(Exception):
    """A setting has a bad value (etcd exits 1)."""


class UsageError(Exception):
    """The command line itself is malformed: unknown flag, missing value (etcd exits 2)."""


def _urls(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    return [u.strip() for u in value if str(u).strip()]


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = DEFAULT_NAME
    data_dir: str = ""  # default: "<name>.etcd"
    wal_dir: str = ""  # default: "<data-dir>/member/wal"
    listen_client_urls: list[str] = [DEFAULT_CLIENT_URL]
    advertise_client_urls: list[str] = [DEFAULT_CLIENT_URL]
    listen_peer_urls: list[str] = [DEFAULT_PEER_URL]
    initial_advertise_peer_urls: list[str] = [DEFAULT_PEER_URL]
    initial_cluster: str = DEFAULT_INITIAL_CLUSTER
    initial_cluster_state: Literal["new", "existing"] = "new"
    initial_cluster_token: str = "etcd-cluster"
    heartbeat_interval: int = 100  # ms
    election_timeout: int = 1000  # ms
    snapshot_count: int = 100_000
    experimental_snapshot_catchup_entries: int = 5000
    max_wals: int = 5
    max_snapshots: int = 5
    quota_backend_bytes: int = 0  # 0 = the default of 2 GiB
    max_request_bytes: int = 1_572_864
    max_txn_ops: int = 128
    auto_compaction_mode: Literal["periodic", "revision"] = "periodic"
    auto_compaction_retention: str = "0"
    strict_reconfig_check: bool = True
    experimental_enable_lease_checkpoint: bool = False
    cert_file: str = ""
    key_file: str = ""
    trusted_ca_file: str = ""
    client_cert_auth: bool = False
    auto_tls: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_trusted_ca_file: str = ""
    peer_client_cert_auth: bool = False
    peer_auto_tls: bool = False
    auth_token: str = "simple"  # simple | jwt,pub-key=..,priv-key=..,sign-method=..,ttl=..
    auth_token_ttl: int = 300  # seconds a simple token lives after its last use
    bcrypt_cost: int = 10
    logger: Literal["zap", "capnslog"] = "zap"
    log_level: Literal["debug", "info", "warn", "error", "panic", "fatal"] = "info"
    log_outputs: list[str] = ["default"]
    config_file: str = ""

    # --- field checks --------------------------------------------------------------------------

    @field_validator(
        "listen_client_urls",
        "advertise_client_urls",
        "listen_peer_urls",
        "initial_advertise_peer_urls",
        "log_outputs",
        mode="before",
    )
    @classmethod
    def _split_urls(cls, v: Any) -> list[str]:
        return _urls(v)

    @field_validator(
        "listen_client_urls",
        "advertise_client_urls",
        "listen_peer_urls",
        "initial_advertise_peer_urls",
    )
    @classmethod
    def _check_urls(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one URL is required")
        for u in v:
            _check_url(u)
        return v

    @field_validator(
        "heartbeat_interval",
        "election_timeout",
        "snapshot_count",
        "max_request_bytes",
        "max_txn_ops",
        "experimental_snapshot_catchup_entries",
    )
    @classmethod
    def _positive(cls, v: int) -> int:
        if v <= 0:
            raise ValueError("must be greater than 0")
        return v

    @field_validator("auth_token")
    @classmethod
    def _check_auth_token(cls, v: str) -> str:
        from raftkv.auth.tokens import InvalidAuthOptions, new_token_provider

        try:
            new_token_provider(v, 1.0)  # (reads a JWT's key files: a bad one stops here)
        except (InvalidAuthOptions, ValueError, TypeError) as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("max_wals", "max_snapshots", "quota_backend_bytes")
    @classmethod
    def _not_negative(cls, v: int) -> int:
        if v < 0:
            raise ValueError("must not be negative")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        if self.election_timeout < 5 * self.heartbeat_interval:
            raise ValueError(
                f"--election-timeout[{self.election_timeout}ms] should be at least as 5 times "
                f"as --heartbeat-interval[{self.heartbeat_interval}ms]"
            )
        if self.election_timeout > 50000:
            raise ValueError(
                f"--election-timeout[{self.election_timeout}ms] is too long, "
                "and should be set less than 50000ms"
            )
        cluster = self.initial_cluster_map()
        if self.name not in cluster:
            raise ValueError(
                f"couldn't find local name {self.name!r} in the initial cluster configuration"
            )
        if sorted(cluster[self.name]) != sorted(self.initial_advertise_peer_urls):
            raise ValueError(
                f"--initial-cluster has {self.name}={','.join(cluster[self.name])} but missing "
                f"from --initial-advertise-peer-urls="
                f"{','.join(self.initial_advertise_peer_urls)}"
            )
        seen: dict[str, str] = {}
        for name, urls in cluster.items():
            for u in urls:
                if u in seen and seen[u] != name:
                    raise ValueError(f"--initial-cluster has duplicate url {u}")
                seen[u] = name
        for u in self.listen_client_urls:
            if u.startswith("https:") and not (self.auto_tls or (self.cert_file and self.key_file)):
                raise ValueError(
                    f"TLS key/cert (--cert-file, --key-file) must be provided for client url "
                    f"{u} with HTTPS scheme"
                )
        for u in self.listen_peer_urls:
            has = self.peer_auto_tls or (self.peer_cert_file and self.peer_key_file)
            if u.startswith("https:") and not has:
                raise ValueError(
                    f"TLS key/cert (--peer-cert-file, --peer-key-file) must be provided for "
                    f"peer url {u} with HTTPS scheme"
                )
        return self

    # --- derived values ------------------------------------------------------------------------

    def initial_cluster_map(self) -> dict[str, list[str]]:
        """``name=url,name=url`` as {name: [urls]} (a name may repeat to give several URLs)."""
        out: dict[str, list[str]] = {}
        for item in filter(None, (s.strip() for s in self.initial_cluster.split(","))):
            name, sep, url = item.partition("=")
            if not sep or not name or not url:
                raise ValueError(f"--initial-cluster: {item!r} is not of the form name=url")
            _check_url(url)
            out.setdefault(name, []).append(url)
        if not out:
            raise ValueError("--initial-cluster is empty")
        return out

    @property
    def member_dir(self) -> str:
        return os.path.join(self.data_dir, "member")

    @property
    def wal_path(self) -> str:
        return self.wal_dir or os.path.join(self.member_dir, "wal")

    @property
    def snap_path(self) -> str:
        return os.path.join(self.member_dir, "snap")

    @property
    def election_ticks(self) -> int:
        return max(self.election_timeout // self.heartbeat_interval, 2)

    @property
    def request_timeout(self) -> float:
        """etcd's ReqTimeout: 5 s plus two election timeouts."""
        return 5.0 + 2 * self.election_timeout / 1000.0

    @property
    def quota_bytes(self) -> int:
        return self.quota_backend_bytes or (2 << 30)


def _check_url(u: str) -> None:
    p = urlsplit(u)
    if p.scheme not in ("http", "https") or not p.hostname:
        raise ValueError(f"URL scheme must be http or https: {u}")
    try:
        _ = p.port
    except ValueError as e:
        raise ValueError(f"invalid URL {u}: {e}") from None
    if p.path not in ("", "/"):
        raise ValueError(f"URL must not contain a path: {u}")


# --- sources -----------------------------------------------------------------------------------

FLAGS: dict[str, str] = {  # etcd flag name -> Settings field
    name.replace("_", "-"): name for name in Settings.model_fields
}
# etcd 3.4 flags raftkv accepts (so etcd's command lines and config files work) but ignores:
# auth, discovery, proxy, metrics, v2, CRLs and tuning knobs it does not have.
_IGNORED_BOOL_FLAGS = {
    "initial-election-tick-advance", "pre-vote", "enable-v2", "enable-pprof",
    "experimental-initial-corrupt-check",
    "experimental-peer-skip-client-san-verification", "force-new-cluster", "debug",
}  # fmt: skip
_IGNORED_VALUE_FLAGS = {
    "backend-batch-interval", "backend-batch-limit", "max-concurrent-streams",
    "grpc-keepalive-min-time", "grpc-keepalive-interval", "grpc-keepalive-timeout",
    "discovery", "discovery-fallback", "discovery-proxy", "discovery-srv", "discovery-srv-name",
    "client-crl-file", "client-cert-allowed-hostname", "peer-cert-allowed-cn",
    "peer-cert-allowed-hostname", "peer-crl-file", "cipher-suites",
    "cors", "host-whitelist", "metrics",
    "listen-metrics-urls", "proxy", "proxy-failure-wait", "proxy-refresh-interval",
    "proxy-dial-timeout", "proxy-write-timeout", "proxy-read-timeout",
    "experimental-corrupt-check-time", "experimental-enable-v2v3",
    "experimental-backend-bbolt-freelist-type", "experimental-compaction-batch-limit",
    "experimental-watch-progress-notify-interval", "experimental-warning-apply-duration",
    "log-package-levels",
}  # fmt: skip
IGNORED_FLAGS = _IGNORED_BOOL_FLAGS | _IGNORED_VALUE_FLAGS
_BOOL_FLAGS: set[str] = _IGNORED_BOOL_FLAGS | {
    name for name, field in FLAGS.items() if Settings.model_fields[field].annotation is bool
}
_LIST_FIELDS = {
    "listen_client_urls",
    "advertise_client_urls",
    "listen_peer_urls",
    "initial_advertise_peer_urls",
    "log_outputs",
}


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    """Go flag syntax: ``-flag value``, ``--flag value``, ``--flag=value``; stops at ``--``."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            break
        if not arg.startswith("-") or arg in ("-",):
            raise UsageError(f"'{arg}' is not a valid flag")
        name = arg.lstrip("-")
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in ("h", "help"):
            raise UsageError("help")
        if name in ("version",):
            raise UsageError("version")
        if name not in FLAGS and name not in IGNORED_FLAGS:
            raise UsageError(f"flag provided but not defined: -{name}")
        if value is None:
            if name in _BOOL_FLAGS:
                value = "true"
            elif i < len(argv):
                value = argv[i]
                i += 1
            else:
                raise UsageError(f"flag needs an argument: -{name}")
        if name in IGNORED_FLAGS:
            continue
        out[FLAGS[name]] = value
    if i < len(argv):
        raise UsageError(f"'{argv[i]}' is not a valid flag")
    return out


def from_env(env: Mapping[str, str]) -> dict[str, str]:
    out = {}
    for field in Settings.model_fields:
        key = "RAFTKV_" + field.upper()
        if key in env:
            out[field] = env[key]
    return out


def from_file(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read --config-file {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"--config-file {path} is not valid YAML: {e}") from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ConfigError(f"--config-file {path} must be a YAML mapping of flag names to values")
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if k in IGNORED_FLAGS:
            continue
        if k not in FLAGS:
            raise ConfigError(f"--config-file {path}: unknown setting {k!r}")
        field = FLAGS[k]
        if field in _LIST_FIELDS and isinstance(v, list):
            v = ",".join(str(x) for x in v)
        out[field] = v
    return out


def load_settings(argv: Sequence[str], env: Mapping[str, str] | None = None) -> Settings:
    """Merge flags > env > file > defaults and validate. Raises UsageError / ConfigError."""
    env = os.environ if env is None else env
    flags = parse_args(argv)
    envs = from_env(env)
    file_path = flags.get("config_file") or envs.get("config_file") or ""
    merged: dict[str, Any] = from_file(file_path) if file_path else {}
    merged.update(envs)
    merged.update(flags)
    try:
        # etcd: with a non-default name and no --initial-cluster, the cluster is just this member
        # at its advertised peer URLs.
        name = str(merged.get("name", DEFAULT_NAME))
        if "initial_cluster" not in merged and name != DEFAULT_NAME:
            adv = _urls(merged.get("initial_advertise_peer_urls", DEFAULT_PEER_URL))
            merged["initial_cluster"] = ",".join(f"{name}={u}" for u in adv)
        if not merged.get("data_dir"):
            merged["data_dir"] = f"{name}.etcd"
        return Settings(**merged)
    except ValidationError as e:
        raise ConfigError(_describe(e)) from None
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _describe(e: ValidationError) -> str:
    lines = []
    for err in e.errors():
        loc = err.get("loc") or ()
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        if loc:
            flag = "--" + str(loc[0]).replace("_", "-")
            value = err.get("input")
            lines.append(f"invalid value {value!r} for flag {flag}: {msg}")
        else:
            lines.append(msg)
    return "; ".join(lines)
