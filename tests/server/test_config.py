"""Settings: etcd's flag names and defaults, RAFTKV_* environment, YAML config file, precedence
flags > env > file > defaults, and clear one-line errors (exit 1; 2 for a malformed command
line, as etcd) instead of tracebacks."""

import subprocess
import sys

import pytest

from raftkv.config import ConfigError, UsageError, load_settings
from tests.server.harness import ROOT


def test_defaults_are_etcds():
    s = load_settings([], env={})
    assert s.name == "default"
    assert s.data_dir == "default.etcd"
    assert s.listen_client_urls == ["http://localhost:2379"]
    assert s.listen_peer_urls == ["http://localhost:2380"]
    assert s.initial_cluster == "default=http://localhost:2380"
    assert (s.heartbeat_interval, s.election_timeout) == (100, 1000)
    assert s.snapshot_count == 100_000
    assert (s.max_wals, s.max_snapshots) == (5, 5)
    assert s.max_request_bytes == 1_572_864
    assert s.max_txn_ops == 128
    assert s.request_timeout == 7.0
    assert s.initial_cluster_token == "etcd-cluster"


def test_go_flag_syntax_and_derived_values():
    s = load_settings(
        ["-name", "a", "--data-dir=/d", "--initial-cluster", "a=http://10.0.0.1:2380",
         "--initial-advertise-peer-urls", "http://10.0.0.1:2380",
         "--listen-client-urls", "http://127.0.0.1:1,http://127.0.0.1:2"],
        env={},
    )  # fmt: skip
    assert s.name == "a" and s.data_dir == "/d"
    assert s.listen_client_urls == ["http://127.0.0.1:1", "http://127.0.0.1:2"]
    assert s.wal_path == "/d/member/wal" and s.snap_path == "/d/member/snap"


def test_a_named_member_without_initial_cluster_is_its_own_cluster():
    s = load_settings(["--name", "solo"], env={})
    assert s.initial_cluster == "solo=http://localhost:2380"
    assert s.data_dir == "solo.etcd"


def test_precedence_flags_over_env_over_file(tmp_path):
    f = tmp_path / "conf.yml"
    f.write_text("snapshot-count: 11\nmax-txn-ops: 12\nheartbeat-interval: 50\n")
    env = {"RAFTKV_CONFIG_FILE": str(f), "RAFTKV_MAX_TXN_OPS": "22", "RAFTKV_SNAPSHOT_COUNT": "21"}
    s = load_settings(["--snapshot-count", "31"], env=env)
    assert s.snapshot_count == 31  # flag
    assert s.max_txn_ops == 22  # env over file
    assert s.heartbeat_interval == 50  # file over default


def test_config_file_lists_and_unknown_keys(tmp_path):
    f = tmp_path / "c.yml"
    f.write_text("listen-client-urls: [http://127.0.0.1:5, http://127.0.0.1:6]\n")
    assert load_settings(["--config-file", str(f)], env={}).listen_client_urls == [
        "http://127.0.0.1:5",
        "http://127.0.0.1:6",
    ]
    f.write_text("no-such-flag: 1\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings(["--config-file", str(f)], env={})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--election-timeout", "200"], "should be at least as 5 times"),
        (["--heartbeat-interval", "abc"], "--heartbeat-interval"),
        (["--name", "x", "--initial-cluster", "y=http://a:1"], "couldn't find local name"),
        (["--initial-cluster-state", "maybe"], "--initial-cluster-state"),
        (["--listen-client-urls", "ftp://x:1"], "http or https"),
        (["--snapshot-count", "0"], "greater than 0"),
    ],
)
def test_bad_values_are_one_line_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(argv, env={})


def test_unknown_flag_is_a_usage_error():
    with pytest.raises(UsageError, match="flag provided but not defined: -bogus"):
        load_settings(["--bogus"], env={})


def test_member_process_exits_1_on_bad_settings_without_traceback(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "raftkv", "--election-timeout", "100"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 1
    assert "should be at least as 5 times" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "raftkv", "--bogus"],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert r.returncode == 2
    assert "flag provided but not defined: -bogus" in r.stderr
