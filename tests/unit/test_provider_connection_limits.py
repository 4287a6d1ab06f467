"""LiteLLM's provider connection pool must not queue requests the gateway has admitted.

A process admits ``MAX_CONCURRENT_REQUESTS`` (1 000) requests, each holding at most one provider
connection; LiteLLM's default of 500 connections per provider host made the 501st stream to one
provider wait, silently, for an earlier stream to end. Checked in a fresh interpreter, since
LiteLLM reads the variables once, at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from proxy_core.settings import Settings

_PROBE = (
    "import json, proxy_core.adapters.litellm_client, litellm.constants as c;"
    "print(json.dumps([c.AIOHTTP_CONNECTOR_LIMIT, c.AIOHTTP_CONNECTOR_LIMIT_PER_HOST]))"
)


def _limits(**env: str) -> list[int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIOHTTP_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], env={**clean, **env}, capture_output=True, check=True, timeout=120
    )
    limits: list[int] = json.loads(out.stdout.splitlines()[-1])
    return limits


def test_the_pool_holds_as_many_provider_connections_as_the_gateway_admits_requests() -> None:
    admitted = Settings.model_fields["max_concurrent_requests"].default
    total, per_host = _limits()
    assert per_host == admitted == 1000
    assert total >= admitted


def test_an_operators_own_limit_wins() -> None:
    assert _limits(AIOHTTP_CONNECTOR_LIMIT_PER_HOST="64")[1] == 64
