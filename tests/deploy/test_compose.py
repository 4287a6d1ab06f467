"""docker-compose.yml: the gateway is reachable from this machine only unless asked, Redis keeps its data."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` (empty or unset: the default)."""
    return _VARIABLE.sub(lambda m: env.get(m["name"]) or (m["default"] or ""), text)


def compose(env: dict[str, str]) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(interpolate((ROOT / "docker-compose.yml").read_text(), env))
    return loaded


def test_the_gateway_port_is_published_on_loopback_unless_gateway_bind_says_otherwise() -> None:
    assert compose({})["services"]["gateway"]["ports"] == ["127.0.0.1:4000:4000"]
    assert compose({"GATEWAY_BIND": ""})["services"]["gateway"]["ports"] == ["127.0.0.1:4000:4000"]
    assert compose({"GATEWAY_BIND": "0.0.0.0"})["services"]["gateway"]["ports"] == ["0.0.0.0:4000:4000"]


def test_redis_runs_with_aof_on_a_volume_and_is_not_published() -> None:
    services = compose({})["services"]
    redis = services["redis"]
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options["--appendfsync"] == "everysec"
    assert options["--maxmemory-policy"] == "noeviction"  # a full Redis refuses writes rather than drop ids
    assert "ports" not in redis
    assert redis["volumes"] == ["redis-data:/data"]
    assert "redis-data" in compose({})["volumes"]
