"""Client-chosen upstreams get the gateway's own non-following client, of the type LiteLLM uses."""

from __future__ import annotations

import openai
import pytest
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

from proxy_core.adapters import litellm_origin
from proxy_core.adapters.litellm_origin import OriginClients
from proxy_core.errors import InvalidRequestError

BASE = "http://127.0.0.1:9/v1"


async def test_each_provider_family_gets_its_client_type_and_none_follows() -> None:
    origins = OriginClients()
    sdk = origins.for_call("openai/m", BASE, "sk-a", max_retries=0)
    handler = origins.for_call("fireworks_ai/accounts/fireworks/models/m", BASE, "sk-a", max_retries=0)
    assert isinstance(sdk, openai.AsyncOpenAI)
    assert isinstance(handler, AsyncHTTPHandler)
    assert str(sdk.base_url).rstrip("/") == BASE
    assert sdk.api_key == "sk-a"
    assert handler.client.follow_redirects is False
    assert sdk._client is handler.client  # one connection pool for every chosen upstream
    await origins.aclose()


async def test_sdk_clients_are_kept_per_origin_and_key_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm_origin, "MAX_CACHED_SDK_CLIENTS", 2)
    origins = OriginClients()
    first = origins.for_call("openai/m", BASE, "sk-a", max_retries=0)
    assert origins.for_call("openai/m", BASE, "sk-a", max_retries=0) is first
    assert origins.for_call("openai/m", BASE, "sk-b", max_retries=0) is not first
    origins.for_call("openai/m", f"{BASE}/x", "sk-a", max_retries=0)
    origins.for_call("openai/m", BASE, "sk-c", max_retries=0)
    assert origins.for_call("openai/m", BASE, "sk-a", max_retries=0) is not first  # evicted, made anew
    await origins.aclose()


def test_another_provider_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        OriginClients().for_call("anthropic/claude-x", BASE, "sk-a", max_retries=0)
    assert (info.value.param, info.value.code) == ("model", "base_url_provider_unsupported")
