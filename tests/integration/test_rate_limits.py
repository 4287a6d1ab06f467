"""A deployment's rpm/tpm hold before the call, across gateways sharing Redis, whatever the routing strategy."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest
import redis.asyncio

from proxy_core.adapters.redis_limits import window_key
from proxy_core.config_files import ModelCatalog
from proxy_core.services.rate_limits import WindowKey
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory

STRATEGIES = ["simple-shuffle", "least-busy", "usage-based-routing-v2", "latency-based-routing"]


def deployment(name: str, base: str, deployment_id: str, **extra: Any) -> dict[str, Any]:
    params = {"model": "openai/fake-model", "api_base": f"{base}/v1", "api_key": "sk-up", **extra}
    return {"model_name": name, "litellm_params": params, "model_info": {"id": deployment_id}}


def catalog(base: str, suffix: str, strategy: str = "simple-shuffle") -> ModelCatalog:
    """``limited``: one deployment at 3 rpm. ``pool``: a full-looking one and a roomy one.
    ``tokens``: 5 tpm. ``capped`` falls back to ``spare`` when its window is full."""
    return ModelCatalog.model_validate(
        {
            "model_list": [
                deployment("limited", base, f"limited-{suffix}", rpm=3),
                deployment("pool", base, f"pool-a-{suffix}", rpm=1000),
                deployment("pool", base, f"pool-b-{suffix}", rpm=1000),
                deployment("tokens", base, f"tokens-{suffix}", tpm=5),
                deployment("capped", base, f"capped-{suffix}", rpm=1),
                deployment("spare", base, f"spare-{suffix}"),
            ],
            "router_settings": {"routing_strategy": strategy, "fallbacks": [{"capped": ["spare"]}]},
        }
    )


async def post(gateway: Gateway, model: str, stream: bool = False) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        response = await http.post("/v1/chat/completions", json=body)
        await response.aread()
        return response


def refusal(model: str, retry_after: int) -> dict[str, Any]:
    return {
        "error": {
            "message": f"Rate limit reached for model {model!r}: every deployment is at its configured rpm/tpm "
            f"limit for this window; retry in {retry_after} s.",
            "type": "rate_limit_error",
            "param": None,
            "code": "rate_limit_exceeded",
        }
    }


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_rpm_holds_across_two_gateways_whatever_the_strategy(
    gateway_factory: GatewayFactory, upstream: Any, upstream_state: UpstreamState, strategy: str
) -> None:
    """LiteLLM's simple-shuffle (the default) let 8 of 8 calls through a deployment with rpm 3."""
    models = catalog(upstream[0].url, uuid.uuid4().hex[:8], strategy)
    first, second = gateway_factory(catalog=models), gateway_factory(catalog=models)
    responses = [await post(gateway, "limited") for gateway in (first, second) * 4]
    assert [r.status_code for r in responses] == [200, 200, 200, 429, 429, 429, 429, 429]
    assert len(upstream_state.completion_requests) == 3, "a refused call never reaches the provider"
    last = responses[-1]
    retry_after = int(last.headers["retry-after"])
    assert 50 <= retry_after <= 60, "the window opened with the first call, moments ago"
    assert last.json() == refusal("limited", retry_after)


async def test_retry_after_is_the_time_left_in_the_window(
    gateway_factory: GatewayFactory, upstream: Any, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    gateway = gateway_factory(catalog=catalog(upstream[0].url, suffix))
    full = window_key(key_prefix, WindowKey("limited", f"limited-{suffix}", "rpm"))
    await redis_client.set(full, 3, px=17_400)  # a window with 17.4 s left, already at the limit
    refused = await post(gateway, "limited")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] in ("17", "18")
    assert refused.json() == refusal("limited", int(refused.headers["retry-after"]))


async def test_a_deployment_at_its_limit_is_not_chosen_while_another_has_room(
    gateway_factory: GatewayFactory, upstream: Any, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    suffix = uuid.uuid4().hex[:8]
    gateway = gateway_factory(catalog=catalog(upstream[0].url, suffix))
    await redis_client.set(window_key(key_prefix, WindowKey("pool", f"pool-a-{suffix}", "rpm")), 1000, px=30_000)
    responses = await asyncio.gather(*(post(gateway, "pool") for _ in range(12)))
    assert Counter(r.status_code for r in responses) == {200: 12}
    assert {r.headers["x-gateway-deployment"] for r in responses} == {f"pool-b-{suffix}"}


async def test_a_full_window_falls_back_to_the_configured_chain(gateway_factory: GatewayFactory, upstream: Any) -> None:
    suffix = uuid.uuid4().hex[:8]
    gateway = gateway_factory(catalog=catalog(upstream[0].url, suffix))
    first, second = await post(gateway, "capped"), await post(gateway, "capped", stream=True)
    assert (first.status_code, first.headers["x-gateway-deployment"]) == (200, f"capped-{suffix}")
    assert (second.status_code, second.headers["x-gateway-fallbacks"]) == (200, "1")
    assert second.headers["x-gateway-deployment"] == f"spare-{suffix}"


@pytest.mark.parametrize("stream", [False, True])
async def test_tpm_counts_the_tokens_of_answered_calls(
    gateway_factory: GatewayFactory, upstream: Any, redis_client: redis.asyncio.Redis, key_prefix: str, stream: bool
) -> None:
    """Each call is 3 tokens ("hi" in, "echo: hi" out): two fit under 5 tpm, the third waits."""
    suffix = uuid.uuid4().hex[:8]
    gateway = gateway_factory(catalog=catalog(upstream[0].url, suffix))
    statuses = [(await post(gateway, "tokens", stream=stream)).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    counter = window_key(key_prefix, WindowKey("tokens", f"tokens-{suffix}", "tpm"))
    assert await redis_client.get(counter) == "6"
    assert 0 < await redis_client.pttl(counter) <= 60_000
