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

from proxy_core.config_files import ModelCatalog
from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_model import ObservationRecord
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory, catalog_for, rollout_path


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
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()


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
    assert response.headers["x-insertion-id"] in await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout))
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
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()


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
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()


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


def _generation_of(langfuse: LangfuseState, insertion_id: str) -> ObservationRecord | None:
    for trace in langfuse.traces("proj-a"):
        if f"insertion_id:{insertion_id}" in trace.tags:
            found = [o for o in langfuse.observations("proj-a", trace.id) if o.type == "GENERATION"]
            return found[0] if found else None
    return None


@pytest.mark.parametrize("model", ["fake", "routed-fake"])
async def test_a_stream_the_client_dropped_leaves_an_error_trace_with_its_partial_output(
    gateway_factory: GatewayFactory,
    langfuse: LangfuseState,
    upstream_state: UpstreamState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    upstream: tuple[ServerThread, UpstreamState],
    model: str,
) -> None:
    """The provider's tokens were spent: the call is traced as cancelled, and not recorded as a step.

    ``fake`` is read below LiteLLM's stream wrapper, ``routed-fake`` (a rate-limited deployment,
    served by LiteLLM's Router) through it.
    """
    catalog = catalog_for(upstream[0].url)
    routed = {"model": "openai/fake-model", "api_base": f"{upstream[0].url}/v1", "rpm": 10_000}
    catalog = ModelCatalog.model_validate(
        {"model_list": [*catalog.model_dump()["model_list"], {"model_name": "routed-fake", "litellm_params": routed}]}
    )
    gateway = gateway_factory(catalog=catalog)
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    body = {**stream_body("[[chunks=20]] [[chunk_delay_ms=100]] alpha beta gamma"), "model": model}
    received = b""
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http,
        http.stream("POST", f"/{rollout_path(rollout)}/chat/completions", json=body) as response,
    ):
        insertion_id = response.headers["x-insertion-id"]
        async for chunk in response.aiter_bytes():
            received += chunk
            if received.count(b"data: ") >= 3:
                break
    observation = langfuse.wait_for(lambda: _generation_of(langfuse, insertion_id), timeout=10)
    assert observation.level == "ERROR"
    assert observation.status_message is not None
    assert observation.status_message.startswith("cancelled:")
    assert "echo" in orjson.dumps(observation.output).decode(), "the partial output is in the trace"
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()


async def test_an_abandoned_non_streamed_call_leaves_an_error_trace(
    gateway: Gateway, langfuse: LangfuseState, upstream_state: UpstreamState, redis_client: redis.asyncio.Redis,
    key_prefix: str,
) -> None:  # fmt: skip
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    body = {"model": "fake", "messages": [{"role": "user", "content": "[[delay_ms=5000]] slow"}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=1, headers={"authorization": "Bearer k"}) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"/{rollout_path(rollout)}/chat/completions", json=body)

    def abandoned() -> ObservationRecord | None:
        for trace in langfuse.traces("proj-a"):
            if f"rollout_id:{rollout}" in trace.tags:
                found = [o for o in langfuse.observations("proj-a", trace.id) if o.type == "GENERATION"]
                return found[0] if found else None
        return None

    observation = langfuse.wait_for(abandoned, timeout=10)
    assert observation.level == "ERROR"
    assert observation.status_message is not None
    assert observation.status_message.startswith("cancelled:")
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()
