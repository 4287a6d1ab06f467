"""Bodies of the wrong shape are 400s before LiteLLM sees them (it would fail on them as a 502)."""

from __future__ import annotations

from typing import Any

import httpx
import redis.asyncio

from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, rollout_path
from tests.redis_keys import data_keys

USER = [{"role": "user", "content": "hi"}]
CHAT = f"/{rollout_path('r-v')}/chat/completions"
PART = "messages[0].content[0] must be an object with a 'type'."
FORMAT = "'response_format' must be an object with a 'type'."
MALFORMED: list[tuple[dict[str, Any], str, str]] = [
    ({"messages": [{"role": "user", "content": ["hi"]}]}, "messages[0].content[0]", PART),
    ({"messages": [{"role": "user", "content": [1]}]}, "messages[0].content[0]", PART),
    ({"messages": [{"role": "user", "content": [None]}]}, "messages[0].content[0]", PART),
    ({"messages": [{"role": "user", "content": ["hi"]}], "stream": True}, "messages[0].content[0]", PART),
    ({"messages": [{"role": "user", "content": [None]}], "stream": True}, "messages[0].content[0]", PART),
    ({"messages": USER, "response_format": "json"}, "response_format", FORMAT),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content[0].image_url",
     "messages[0].content[0].image_url is required in a part of type 'image_url'."),
    ({"messages": USER, "n": 1000}, "n", "'n' must be an integer from 1 to 128."),
    ({"messages": USER, "max_tokens": -5}, "max_tokens", "'max_tokens' must be a positive integer."),
]  # fmt: skip


async def post(gateway: Gateway, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        return await http.post(path, **kwargs)


async def test_malformed_bodies_are_exact_400s_with_no_side_effects(
    gateway: Gateway, upstream_state: UpstreamState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    for body, param, message in MALFORMED:
        response = await post(gateway, CHAT, json={"model": "fake", **body})
        error = {"message": message, "type": "invalid_request_error", "param": param, "code": "invalid_value"}
        assert (response.status_code, response.json()) == (400, {"error": error}), body
    assert upstream_state.completion_requests == []
    assert await data_keys(redis_client, key_prefix) == []


async def test_a_lone_surrogate_is_served_as_a_replacement_character(
    gateway: Gateway, upstream_state: UpstreamState
) -> None:
    raw = b'{"model":"fake","messages":[{"role":"user","content":"broken \\ud83d end"}]}'
    response = await post(gateway, CHAT, content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert upstream_state.completion_requests[-1].body["messages"][-1]["content"] == "broken \ufffd end"


async def test_a_part_litellm_refuses_is_a_400_not_an_unreachable_provider(
    gateway: Gateway, upstream_state: UpstreamState
) -> None:
    """LiteLLM checks part types itself, before any I/O, and wraps its refusal in its connection error."""
    body = {"model": "fake", "messages": [{"role": "user", "content": [{"type": "bogus"}]}]}
    response = await post(gateway, CHAT, json=body)
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["param"]) == (400, "invalid_value", "messages"), error
    assert "bogus" in error["message"]
    assert upstream_state.completion_requests == []
