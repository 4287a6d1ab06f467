"""Streams: early failures are HTTP errors, late ones in-band errors, and a gone client stops the provider."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
import openai
import orjson
import pytest
import redis.asyncio

from tests.fakes.langfuse_model import ObservationRecord
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory, rollout_path


def stream_body(text: str) -> dict[str, object]:
    return {"model": "fake", "messages": [{"role": "user", "content": text}], "stream": True}


async def frames_of(gateway: Gateway, path: str, text: str) -> tuple[httpx.Response, list[bytes]]:
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http,
        http.stream("POST", path, json=stream_body(text)) as response,
    ):
        body = await response.aread()
    return response, [frame for frame in body.split(b"\n\n") if frame]


async def test_failure_before_the_first_chunk_is_an_http_error(gateway: Gateway, upstream_state: UpstreamState) -> None:
    client = gateway.client(rollout_path("r-s"))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(**stream_body("[[status=429]] [[retry_after=3]]"))  # type: ignore[call-overload]
    assert info.value.response.headers["retry-after"] == "3"
    assert upstream_state.completion_requests[-1].body["stream"] is True


async def test_cut_stream_ends_with_an_error_event_then_done(
    gateway: Gateway, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    response, frames = await frames_of(
        gateway, f"/{rollout_path(rollout)}/chat/completions", "[[chunks=6]] [[cut_after=2]]"
    )
    assert response.status_code == 200
    assert frames[-1] == b"data: [DONE]"
    error = orjson.loads(frames[-2].removeprefix(b"data: "))["error"]
    assert error["type"] in {"upstream_error", "api_error"}
    assert error["code"].startswith("upstream")
    assert all(b'"error"' not in frame for frame in frames[:-2])
    assert await redis_client.smembers(f"{key_prefix}:proj-a:rollout:{rollout}") == set()


async def test_openai_client_raises_on_the_in_band_error(gateway: Gateway) -> None:
    client = gateway.client(rollout_path("r-cut"))
    stream = client.chat.completions.create(**stream_body("[[chunks=6]] [[cut_after=2]]"))  # type: ignore[call-overload]
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass


async def test_complete_stream_records_before_done(
    gateway: Gateway, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    response, frames = await frames_of(gateway, f"/{rollout_path(rollout)}/chat/completions", "[[chunks=4]]")
    assert frames[-1] == b"data: [DONE]"
    assert response.headers["x-insertion-id"] in await redis_client.smembers(f"{key_prefix}:proj-a:rollout:{rollout}")
    payloads = [orjson.loads(frame.removeprefix(b"data: ")) for frame in frames[:-1]]
    assert all(p["object"] == "chat.completion.chunk" for p in payloads)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in payloads if c["choices"]) == "echo: "


async def test_client_disconnect_cancels_the_provider_call(
    gateway: Gateway, upstream_state: UpstreamState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        path = f"/{rollout_path(rollout)}/chat/completions"
        async with http.stream("POST", path, json=stream_body("[[chunks=100]] [[chunk_delay_ms=100]]")) as response:
            async for _ in response.aiter_bytes():
                break
    deadline = time.monotonic() + 3
    while not upstream_state.aborted and time.monotonic() < deadline:  # noqa: ASYNC110 (state of another thread)
        await asyncio.sleep(0.05)
    assert len(upstream_state.aborted) == 1
    assert await redis_client.smembers(f"{key_prefix}:proj-a:rollout:{rollout}") == set()


async def test_provider_that_never_answers_is_504(
    gateway_factory: GatewayFactory, upstream_state: UpstreamState
) -> None:
    gateway = gateway_factory(request_timeout=1.0)
    started = time.monotonic()
    response, _ = await frames_of(gateway, f"/{rollout_path('r-h')}/chat/completions", "[[hang]]")
    assert response.status_code == 504
    assert time.monotonic() - started < 5


async def test_client_giving_up_on_a_slow_completion_cancels_the_provider_call(
    gateway: Gateway, upstream_state: UpstreamState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    body = {"model": "fake", "messages": [{"role": "user", "content": "[[hang]]"}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=0.5, headers={"authorization": "Bearer k"}) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"/{rollout_path(rollout)}/chat/completions", json=body)
    deadline = time.monotonic() + 3
    while not upstream_state.aborted and time.monotonic() < deadline:  # noqa: ASYNC110 (state of another thread)
        await asyncio.sleep(0.05)
    assert len(upstream_state.aborted) == 1
    assert await redis_client.smembers(f"{key_prefix}:proj-a:rollout:{rollout}") == set()


async def test_a_streamed_completion_is_traced_whole(gateway: Gateway, langfuse: LangfuseState) -> None:
    """The trace of a stream holds the whole answer and its usage."""
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    response, frames = await frames_of(gateway, f"/{rollout_path(rollout)}/chat/completions", "[[chunks=7]] tell")
    insertion_id = response.headers["x-insertion-id"]
    payloads = [orjson.loads(frame.removeprefix(b"data: ")) for frame in frames[:-1]]
    answer = "".join(c["choices"][0]["delta"].get("content") or "" for c in payloads if c["choices"])

    def generation() -> ObservationRecord | None:
        for trace in langfuse.traces("proj-a"):
            if f"insertion_id:{insertion_id}" in trace.tags:
                found = [o for o in langfuse.observations("proj-a", trace.id) if o.type == "GENERATION"]
                return found[0] if found else None
        return None

    observation = langfuse.wait_for(generation, timeout=10)
    assert answer
    assert answer in orjson.dumps(observation.output).decode()
    assert observation.usage_details.get("input", 0) > 0
    assert observation.usage_details.get("output", 0) > 0
