"""Which Redis the settings name: standalone, cluster or Sentinel, with credentials, TLS and WAIT."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy_core.config_files import ConfigError
from proxy_core.redis_options import RedisTls
from proxy_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith(("REDIS_", "WORKERS")):
            monkeypatch.delenv(name)


def test_without_redis_there_is_no_target() -> None:
    assert Settings().redis_options is None


def test_standalone_from_host_and_port() -> None:
    options = Settings(redis_host="10.0.0.5", redis_port=6380, redis_db=2, redis_password="p@ss").redis_options
    assert options is not None
    assert (options.mode, options.url, options.wait_replicas) == ("standalone", "redis://10.0.0.5:6380/2", 0)
    assert options.password_value == "p@ss"
    assert options.url_with_credentials() == "redis://:p%40ss@10.0.0.5:6380/2"


def test_credentials_in_the_url_are_split_out_and_the_variables_win() -> None:
    options = Settings(redis_url="redis://alice:s%3Acret@h:7000/0").redis_options
    assert options is not None
    assert (options.url, options.username, options.password_value) == ("redis://h:7000/0", "alice", "s:cret")
    url = "redis://alice:pw-in-url@h:7000/0"
    options = Settings(redis_url=url, redis_username="bob", redis_password="two").redis_options
    assert options is not None
    assert (options.username, options.password_value) == ("bob", "two")
    assert "two" not in repr(options)
    assert "pw-in-url" not in repr(Settings(redis_url=url))


def test_cluster_needs_only_the_url_of_any_node() -> None:
    options = Settings(redis_mode="cluster", redis_url="rediss://node-3.internal:7002").redis_options
    assert options is not None
    assert (options.mode, options.node(), options.wait_replicas) == ("cluster", ("node-3.internal", 7002), 0)
    assert options.tls == RedisTls()


def test_sentinel_needs_only_the_sentinels_and_the_service_and_waits_for_a_replica() -> None:
    options = Settings(
        redis_mode="sentinel", redis_sentinels="10.0.0.1:26379, [fd00::2]:26380", redis_sentinel_service="gw"
    ).redis_options
    assert options is not None
    assert options.sentinels == (("10.0.0.1", 26379), ("fd00::2", 26380))
    assert (options.service, options.wait_replicas, options.url) == ("gw", 1, None)
    relaxed = Settings(
        redis_mode="sentinel", redis_sentinels="s:1", redis_sentinel_service="gw", redis_wait_replicas=0
    ).redis_options
    assert relaxed is not None
    assert relaxed.wait_replicas == 0


def test_tls_from_the_scheme_or_the_switch(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    options = Settings(
        redis_host="h",
        redis_tls=True,
        redis_tls_ca_file=tmp_path / "ca.pem",
        redis_tls_cert_file=tmp_path / "cert.pem",
        redis_tls_key_file=tmp_path / "key.pem",
    ).redis_options
    assert options is not None
    assert options.url == "rediss://h:6379/0"
    assert options.tls == RedisTls(tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    switched = Settings(redis_url="redis://h:1/0", redis_tls=True).redis_options
    assert switched is not None
    assert switched.url == "rediss://h:1/0"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"redis_mode": "cluster"},
            "REDIS_MODE=cluster takes REDIS_URL naming any node of the cluster, and no REDIS_HOST",
        ),
        ({"redis_mode": "cluster", "redis_host": "h"}, "REDIS_MODE=cluster takes REDIS_URL"),
        ({"redis_mode": "cluster", "redis_url": "redis://h:1/3"}, "REDIS_MODE=cluster has only database 0"),
        ({"redis_mode": "cluster", "redis_url": "redis://h:1", "redis_wait_replicas": 1}, "not available with"),
        ({"redis_mode": "sentinel", "redis_sentinels": "h:1"}, "needs REDIS_SENTINELS (host:port,…) and REDIS_"),
        (
            {
                "redis_mode": "sentinel",
                "redis_sentinels": "h:1",
                "redis_sentinel_service": "m",
                "redis_url": "redis://x",
            },
            "unset REDIS_URL and REDIS_HOST",
        ),
        ({"redis_mode": "sentinel", "redis_sentinels": "h", "redis_sentinel_service": "m"}, "'h' is not host:port"),
        ({"redis_sentinels": "h:1", "redis_url": "redis://x"}, "need REDIS_MODE=sentinel (it is standalone)"),
        ({"redis_url": "http://h:1"}, "REDIS_URL must start with redis://, rediss:// or unix://"),
        ({"redis_url": "redis://h:1", "redis_host": "h"}, "set REDIS_URL or REDIS_HOST, not both"),
        ({"redis_url": "redis://h:1", "redis_tls_ca_file": "ca.pem"}, "REDIS_TLS_CA_FILE set, but TLS is off"),
        ({"redis_url": "rediss://h:1", "redis_tls_ca_file": "missing.pem"}, "REDIS_TLS_CA_FILE: missing.pem does not"),
        (
            {"redis_url": "rediss://h:1", "redis_tls_cert_file": "ca.pem"},
            "REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go",
        ),
        ({"redis_wait_replicas": 1}, "REDIS_WAIT_REPLICAS set, but no Redis is configured"),
        (
            {"redis_url": "redis://h:1", "redis_wait_replicas": 1, "redis_timeout_s": 0.5},
            "REDIS_WAIT_TIMEOUT_MS (500) must be below REDIS_TIMEOUT_S (0.5 s)",
        ),
        ({"redis_username": "u", "redis_tls": True}, "REDIS_TLS, REDIS_USERNAME set, but no Redis is configured"),
        ({"workers": 2}, "WORKERS > 1 needs Redis (REDIS_URL, REDIS_HOST or REDIS_SENTINELS)"),
    ],
)
def test_a_combination_that_cannot_be_meant_is_refused(tmp_path: Path, values: dict[str, Any], message: str) -> None:
    (tmp_path / "ca.pem").write_text("x")
    with pytest.raises(ConfigError) as refused:
        Settings(**values)
    assert message in str(refused.value)


def test_a_bad_redis_setting_stops_start_up_with_one_line_and_status_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SECRETS_"))}
    env.update(REDIS_MODE="cluster", REDIS_HOST="10.0.0.5", PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "proxy_core"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        "proxy_core: invalid configuration: REDIS_MODE=cluster takes REDIS_URL naming any node of the cluster, "
        "and no REDIS_HOST"
    ]


def test_the_wait_timeout_is_passed_on_and_checked_only_when_waiting() -> None:
    options = Settings(redis_url="redis://h:1", redis_wait_replicas=2, redis_wait_timeout_ms=250).redis_options
    assert options is not None
    assert (options.wait_replicas, options.wait_timeout_ms) == (2, 250)
    default = Settings(redis_url="redis://h:1").redis_options
    assert default is not None
    assert (default.wait_replicas, default.wait_timeout_ms) == (0, 500)
    assert Settings(redis_url="redis://h:1", redis_timeout_s=0.2).redis_options is not None  # no WAIT: no check
