"""The ``"*"`` entry with a providers list: models of other providers are refused before any call."""

from __future__ import annotations

import httpx
import pytest
import redis.asyncio

from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import GatewayFactory, encode_url, rollout_path
from tests.integration.test_errors import USER, no_keys


def _refusal(model: str, provider: str) -> dict[str, object]:
    return {
        "error": {
            "message": f"The model {model!r} is served by provider {provider!r}, which this gateway does not pass "
            f"through (allowed: anthropic, openai). An operator can allow it by adding {provider!r} to the "
            'providers of the "*" entry in the model catalogue, or by listing the model by name.',
            "type": "permission_error",
            "param": "model",
            "code": "model_provider_not_allowed",
        }
    }


@pytest.mark.parametrize(
    ("model", "provider"),
    [
        ("bedrock/anthropic.claude-3-sonnet-20240229-v1:0", "bedrock"),
        ("anthropic.claude-3-sonnet-20240229-v1:0", "bedrock"),  # a bare name LiteLLM sends to Bedrock
        ("sagemaker/my-endpoint", "sagemaker"),
        ("vertex_ai/gemini-1.5-pro", "vertex_ai"),
        ("ollama/llama3", "ollama"),
        ("ollama_chat/llama3", "ollama_chat"),
        ("lm_studio/qwen", "lm_studio"),
    ],
)
async def test_an_unlisted_provider_is_403_before_any_call(
    gateway_factory: GatewayFactory,
    upstream_state: UpstreamState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    model: str,
    provider: str,
) -> None:
    gateway = gateway_factory(wildcard=("openai", "anthropic"))
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        response = await http.post(
            f"/{rollout_path('r1')}/chat/completions",
            json={"model": model, "messages": USER},
            headers={"authorization": "Bearer sk-client"},
        )
    assert (response.status_code, response.json()) == (403, _refusal(model, provider))
    assert upstream_state.completion_requests == []
    assert await no_keys(redis_client, key_prefix)


async def test_a_listed_provider_and_catalogue_names_still_pass(
    gateway_factory: GatewayFactory, upstream_state: UpstreamState
) -> None:
    gateway = gateway_factory(wildcard=("openai", "anthropic"))
    base = encode_url(gateway.settings.allowed_base_urls[0])
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        headers = {"authorization": "Bearer sk-client"}
        by_name = await http.post("/v1/chat/completions", json={"model": "fake", "messages": USER}, headers=headers)
        through = await http.post(
            f"/{rollout_path('r2')}/encoded_base_url/{base}/chat/completions",
            json={"model": "openai/fake-model", "messages": USER},
            headers=headers,
        )
        unknown = await http.post("/v1/chat/completions", json={"model": "no-such-model", "messages": USER})
    assert by_name.status_code == 200, by_name.text
    assert through.status_code == 200, through.text
    assert len(upstream_state.completion_requests) == 2
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
