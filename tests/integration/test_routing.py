"""LiteLLM Router behind the gateway: load balancing, fallbacks, limits shared through Redis, cost."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio

from proxy_core.config_files import ModelCatalog
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState, create_upstream_app
from tests.integration.conftest import Gateway, GatewayFactory, rollout_path

BODY = {"model": "pool", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def broken_upstream() -> Iterator[ServerThread]:
    with ServerThread(create_upstream_app(UpstreamState(default_status=500))) as server:
        yield server


def deployment(name: str, base: str, model: str = "openai/fake-model", **extra: Any) -> dict[str, Any]:
    params = {"model": model, "api_base": f"{base}/v1", "api_key": "sk-up", **extra}
    return {"model_name": name, "litellm_params": params, "model_info": {"id": f"{name}-{uuid.uuid4().hex[:6]}"}}


def routed_catalog(ok: str, broken: str, *, rpm: int = 1000, strategy: str = "simple-shuffle") -> ModelCatalog:
    return ModelCatalog.model_validate(
        {
            "model_list": [
                deployment("pool", ok, model="openai/pool-a"),
                deployment("pool", ok, model="openai/pool-b"),
                deployment("primary", broken),
                deployment("backup", ok),
                deployment("limited", ok, rpm=rpm),
                {"model_name": "priced", "litellm_params": {"model": "openai/gpt-4o-mini", "api_base": f"{ok}/v1",
                                                            "api_key": "sk-up"}},
            ],
            "router_settings": {"routing_strategy": strategy, "fallbacks": [{"primary": ["backup"]}]},
        }
    )  # fmt: skip


async def post(gateway: Gateway, body: dict[str, Any], path: str = "/v1/chat/completions") -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        response = await http.post(path, json=body)
        await response.aread()
        return response


@pytest.mark.parametrize("strategy", ["simple-shuffle", "least-busy"])
async def test_deployments_share_the_load(
    gateway_factory: GatewayFactory, upstream: Any, broken_upstream: ServerThread, upstream_state: UpstreamState,
    strategy: str,
) -> None:  # fmt: skip
    gateway = gateway_factory(catalog=routed_catalog(upstream[0].url, broken_upstream.url, strategy=strategy))
    # Concurrent, slow calls: least-busy only spreads load when deployments are actually busy.
    slow = {**BODY, "messages": [{"role": "user", "content": "hi [[delay_ms=150]]"}]}
    responses = await asyncio.gather(*(post(gateway, slow) for _ in range(30)))
    deployments: Counter[str] = Counter()
    for response in responses:
        assert response.status_code == 200, response.text
        deployments[response.headers["x-gateway-deployment"]] += 1
        assert response.headers["x-gateway-fallbacks"] == "0"
    models = Counter(r.body["model"] for r in upstream_state.completion_requests)
    assert set(models) == {"pool-a", "pool-b"}
    assert len(deployments) == 2
    if strategy == "simple-shuffle":
        assert min(deployments.values()) >= 5


async def test_fallback_answers_and_says_so(
    gateway_factory: GatewayFactory, upstream: Any, broken_upstream: ServerThread
) -> None:
    gateway = gateway_factory(catalog=routed_catalog(upstream[0].url, broken_upstream.url))
    for stream in (False, True):
        response = await post(gateway, {**BODY, "model": "primary", "stream": stream})
        assert response.status_code == 200, response.text
        assert response.headers["x-gateway-fallbacks"] == "1"
        assert response.headers["x-gateway-deployment"].startswith("backup-")


async def test_cost_header_and_rollout_totals(
    gateway_factory: GatewayFactory, upstream: Any, broken_upstream: ServerThread,
    redis_client: redis.asyncio.Redis, key_prefix: str,
) -> None:  # fmt: skip
    gateway = gateway_factory(catalog=routed_catalog(upstream[0].url, broken_upstream.url))
    rollout = f"cost-{uuid.uuid4().hex[:8]}"
    path = f"/{rollout_path(rollout)}/chat/completions"
    plain = await post(gateway, {**BODY, "model": "priced"}, path)
    assert float(plain.headers["x-cost-usd"]) > 0
    streamed = await post(gateway, {**BODY, "model": "priced", "stream": True}, path)
    assert b'"usage"' not in streamed.content, "usage chunk shown to a client that did not ask"
    asked = await post(
        gateway, {**BODY, "model": "priced", "stream": True, "stream_options": {"include_usage": True}}, path
    )
    assert b'"usage"' in asked.content
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        status = (await http.get(f"/rollouts/{rollout}")).json()
    assert status["expected_count"] == 3
    assert status["prompt_tokens"] > 0
    assert status["completion_tokens"] > 0
    assert status["cost_usd"] > float(plain.headers["x-cost-usd"])
