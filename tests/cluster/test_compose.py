"""docker-compose.yml, the Dockerfile and configs/ agree (no Docker engine here to run them)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
CONFIG_IN_CONTAINER = "/etc/raftkv/config.yaml"
MEMBER_COMMAND = ["python", "-m", "raftkv", "--config-file", CONFIG_IN_CONTAINER]
PUBLISHED = {"m1": 2379, "m2": 22379, "m3": 32379}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The final stage's instructions as (KEYWORD, argument), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    stages = [i for i, ln in enumerate(lines) if ln.upper().startswith("FROM ")]
    return [tuple(ln.split(None, 1)) for ln in lines[stages[-1] :]]


def config(name: str) -> dict:
    return yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())


def test_three_members_each_with_its_config(compose):
    assert sorted(compose["services"]) == ["m1", "m2", "m3"]
    assert sorted(p.stem for p in CONFIGS.glob("m*.yaml")) == ["m1", "m2", "m3"]
    for name, svc in compose["services"].items():
        assert svc["command"] == MEMBER_COMMAND, name
        assert svc.get("hostname", name) == name
        mounts = {v.split(":")[1]: v for v in svc["volumes"]}
        assert mounts[CONFIG_IN_CONTAINER] == f"./configs/{name}.yaml:{CONFIG_IN_CONTAINER}:ro"
        assert (ROOT / "configs" / f"{name}.yaml").exists()
        assert config(name)["name"] == name
        assert svc["restart"] in ("always", "unless-stopped", "on-failure")


def test_client_ports_published_and_match_the_configs(compose):
    for name, svc in compose["services"].items():
        cfg = config(name)
        container_port = urlsplit(cfg["listen-client-urls"]).port
        assert svc["ports"] == [f"{PUBLISHED[name]}:{container_port}"]
        assert urlsplit(cfg["advertise-client-urls"]).hostname == name
        assert urlsplit(cfg["listen-client-urls"]).hostname == "0.0.0.0"


def test_each_member_has_its_own_data_volume_at_its_data_dir(compose):
    targets = set()
    for name, svc in compose["services"].items():
        data = [v for v in svc["volumes"] if v.split(":")[1] == config(name)["data-dir"]]
        assert len(data) == 1, name
        volume = data[0].split(":")[0]
        assert volume in compose["volumes"], f"{volume} is not a named volume"
        targets.add(volume)
    assert len(targets) == 3


def test_members_share_a_private_network_and_find_each_other_by_name(compose):
    nets = list(compose["networks"])
    assert len(nets) == 1
    peers = {}
    for name, svc in compose["services"].items():
        assert svc["networks"] == nets
        cfg = config(name)
        assert urlsplit(cfg["initial-advertise-peer-urls"]).hostname == name
        assert (
            urlsplit(cfg["listen-peer-urls"]).port
            == urlsplit(cfg["initial-advertise-peer-urls"]).port
        )
        peers[name] = cfg["initial-advertise-peer-urls"]
    for name in compose["services"]:
        cfg = config(name)
        members = dict(item.split("=", 1) for item in cfg["initial-cluster"].split(","))
        assert members == peers
        assert cfg["initial-cluster-state"] == "new"
    tokens = {config(n)["initial-cluster-token"] for n in compose["services"]}
    assert len(tokens) == 1


def test_configs_differ_only_in_the_member_identity():
    identity = {"name", "advertise-client-urls", "initial-advertise-peer-urls"}
    rest = [{k: v for k, v in config(n).items() if k not in identity} for n in ("m1", "m2", "m3")]
    assert rest[0] == rest[1] == rest[2]


def test_configs_have_etcd_defaults():
    cfg = config("m1")
    assert cfg["heartbeat-interval"] == 100
    assert cfg["election-timeout"] == 1000
    assert cfg["snapshot-count"] == 100000
    assert cfg["quota-backend-bytes"] == 2 * 1024**3
    assert cfg["max-request-bytes"] == 1572864
    assert cfg["max-txn-ops"] == 128


def test_configs_are_accepted_by_the_member_settings():
    config_mod = pytest.importorskip("raftkv.config", reason="raftkv.config not there yet")
    for name in ("m1", "m2", "m3"):
        settings = config_mod.load_settings(["--config-file", str(CONFIGS / f"{name}.yaml")], {})
        assert settings.name == name
        assert settings.data_dir == config(name)["data-dir"]


def test_readme_describes_every_setting():
    readme = (CONFIGS / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", readme, re.M))
    assert documented == set(config("m1"))


def test_dockerfile_runs_the_compose_command_as_a_non_root_user(dockerfile, compose):
    instr: dict[str, list[str]] = {}
    for kw, arg in dockerfile:
        instr.setdefault(kw.upper(), []).append(arg)
    assert re.match(r"python:3\.\d+-slim", instr["FROM"][0])
    assert instr["USER"][-1] not in ("root", "0")
    assert yaml.safe_load(instr["CMD"][-1]) == MEMBER_COMMAND
    assert yaml.safe_load(instr["VOLUME"][-1]) == [config("m1")["data-dir"]]
    health = instr["HEALTHCHECK"][-1]
    assert "/health" in health and "2379" in health
    assert any("/etc/raftkv/config.yaml" in c for c in instr["COPY"])


def test_the_image_installs_the_project_with_pip():
    text = (ROOT / "Dockerfile").read_text()
    install = [ln for ln in text.splitlines() if "pip install" in ln]
    assert install and shlex.split(install[0])[-1] == "."
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "raftkv", "cluster", "configs"):
        assert needed not in ignored
    assert ".git" in ignored and ".venv" in ignored


def test_the_tls_variant_runs_each_member_with_its_own_certificates(tmp_path):
    """docker-compose.tls.yml: every command is a valid raftkv command line over the member's
    config file (https URLs with certificates), each mounted file is one `cluster certs` makes,
    and the healthcheck speaks https."""
    from raftkv.config import load_settings

    tls = yaml.safe_load((ROOT / "docker-compose.tls.yml").read_text())
    assert sorted(tls["services"]) == ["m1", "m2", "m3"]
    made = tmp_path / "certs"
    r = subprocess.run(
        [sys.executable, "-m", "cluster", "certs", str(made)], cwd=ROOT, capture_output=True
    )
    assert r.returncode == 0, r.stderr
    for name, svc in tls["services"].items():
        argv = svc["command"]
        assert argv[:5] == ["python", "-m", "raftkv", "--config-file", "/etc/raftkv/config.yaml"]
        cfg = load_settings(
            ["--config-file", str(CONFIGS / f"{name}.yaml"), *argv[5:]], env={}
        )  # the config file's own name, with the flags over it
        assert cfg.name == name and cfg.client_cert_auth and cfg.peer_client_cert_auth
        assert cfg.advertise_client_urls == [f"https://{name}:2379"]
        assert all(u.startswith("https://") for u in cfg.initial_cluster_map()[name])
        mounts = {v.split(":")[1]: v.split(":")[0] for v in svc["volumes"]}
        for path in (cfg.cert_file, cfg.key_file, cfg.peer_cert_file, cfg.trusted_ca_file):
            source = next(src for dst, src in mounts.items() if path.startswith(dst))
            assert (made / Path(source).relative_to("./certs")).exists(), source
        assert "https://localhost:2379/health" in " ".join(svc["healthcheck"]["test"])
