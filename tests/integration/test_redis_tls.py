"""A Redis that takes only TLS with a client certificate and an ACL user: every client of the gateway gets in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from proxy_core.services.store import rollout_key
from tests.integration.conftest import Gateway, GatewayFactory, rollout_path
from tests.integration.test_redis_cluster import routed_catalog
from tests.redis_servers import Access, RedisServer, make_certificates, running, wait_for


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    directory = tmp_path_factory.mktemp("tls")
    access = Access(make_certificates(directory / "certificates"), username="gateway", password="tls-secret")
    with running(RedisServer(directory / "redis", access=access)) as (started,):
        yield started


def settings_for(server: RedisServer, password: str = "tls-secret") -> dict[str, Any]:
    tls = server.access.tls
    assert tls is not None
    return {
        "redis_url": server.url,
        "redis_username": "gateway",
        "redis_password": password,
        "redis_tls_ca_file": tls.ca,
        "redis_tls_cert_file": tls.client_cert,
        "redis_tls_key_file": tls.client_key,
    }


async def _post(gateway: Gateway, path: str, model: str = "fake") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        return await http.post(path, json=body)


async def test_the_store_the_limits_the_budget_and_the_router_all_use_tls_and_the_acl_user(
    server: RedisServer, gateway_factory: GatewayFactory, upstream: Any, key_prefix: str
) -> None:
    gateway = gateway_factory(
        catalog=routed_catalog(upstream[0].url, uuid.uuid4().hex[:6], rpm=2), **settings_for(server)
    )
    rollout = f"tls-{uuid.uuid4().hex[:8]}"
    reply = await _post(gateway, f"/{rollout_path(rollout)}/chat/completions")
    assert reply.status_code == 200, reply.text
    statuses = [(await _post(gateway, "/v1/chat/completions", "limited")).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        traces = await http.get("/v1/traces", params={"tags": f"rollout_id:{rollout}", "timeout_s": 30})
        ready = await http.get("/ready")
    assert traces.status_code == 200, traces.text
    assert ready.status_code == 200, ready.text

    with server.client() as client:
        assert client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == {reply.headers["x-insertion-id"]}

        def router_keys() -> set[str]:  # LiteLLM writes its usage counters in the background
            keys = set(client.scan_iter(match=f"{key_prefix}:*", count=1000))
            return keys if any(key.startswith(f"{key_prefix}:router:") for key in keys) else set()

        keys = await asyncio.to_thread(wait_for, router_keys, 15, "LiteLLM's own client to write its counters")
        for key in keys:
            client.delete(key)
    assert any(key.startswith(f"{key_prefix}:limits:") for key in keys)
    assert any(key.endswith(":read-budget") for key in keys)


async def test_a_wrong_password_is_a_store_that_is_down(
    server: RedisServer, gateway_factory: GatewayFactory, upstream: Any
) -> None:
    gateway = gateway_factory(**settings_for(server, password="wrong"))
    reply = await _post(gateway, f"/{rollout_path('tls-denied')}/chat/completions")
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "store_unavailable"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        assert (await http.get("/ready")).status_code == 503
