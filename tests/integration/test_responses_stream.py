"""A streamed Responses call to an OpenAI-format model LiteLLM has no information on (``fake`` is
``openai/fake-model``) is the provider's own stream, relayed as it arrives: not one whole answer
turned into events afterwards. Errors keep their status before the first event, and arrive in
band after it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import httpx
import openai
import pytest
import redis.asyncio

from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_model import ObservationRecord
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory, encode_url, rollout_path
from tests.integration.test_endpoints import as_json, check_recorded, check_tags, trace_of
from tests.integration.test_pii import CANARIES, governed_catalog

CHUNKS = 10
CHUNK_DELAY_MS = 200


async def test_unknown_model_streams_as_the_provider_sends(
    gateway: Gateway,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = gateway.client(rollout_path(rollout))
    prompt = f"one two three four five six seven eight nine ten [[chunks={CHUNKS}]] [[chunk_delay_ms={CHUNK_DELAY_MS}]]"
    # a first call pays for imports and connections (about 0.9 s here): not what is measured
    warm_up = gateway.client(rollout_path(f"r-{uuid.uuid4().hex[:8]}"))
    assert list(warm_up.responses.create(model="fake", input="warm up [[chunks=1]]", stream=True))
    arrivals: list[float] = []
    started = time.monotonic()
    with client.responses.with_streaming_response.create(model="fake", input=prompt, stream=True) as raw:
        insertion_id = raw.headers["x-insertion-id"]
        events = []
        for event in raw.parse():
            arrivals.append(time.monotonic() - started)
            events.append(event)
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    deltas = [index for index, kind in enumerate(kinds) if kind == "response.output_text.delta"]
    assert len(deltas) == CHUNKS
    assert len(events) == 4 + CHUNKS + 4  # every event the fake sends, none made up
    first_delta, last_event = arrivals[deltas[0]], arrivals[-1]
    # the provider spends CHUNKS × CHUNK_DELAY_MS (2 s) on the deltas: the first must not wait for them
    assert last_event >= CHUNKS * CHUNK_DELAY_MS / 1000 * 0.9
    assert first_delta < 1.0, (first_delta, last_event)
    assert last_event - first_delta >= (CHUNKS - 1) * CHUNK_DELAY_MS / 1000 * 0.9
    assert [event.sequence_number for event in events] == list(range(len(events)))  # the fake's own numbers
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == "echo: one two three four five six seven eight nine ten"
    sent = [r for r in upstream_state.requests if r.path == "/v1/responses"]
    assert [r.body.get("stream") for r in sent] == [True, True]  # streamed requests, not whole answers
    assert all(not key.startswith(("langfuse", "litellm")) for r in sent for key in r.body)
    await check_recorded(redis_client, key_prefix, "proj-a", rollout, insertion_id)
    trace = trace_of(langfuse, "proj-a", insertion_id)
    check_tags(trace, rollout, insertion_id)
    assert as_json(trace.output) == {"role": "assistant", "content": text}
    assert as_json(trace.input)[-1]["content"] == prompt
    (span,) = [s for s in langfuse.spans("proj-a") if s.trace_id == trace.id]
    assert span.attributes["llm.is_streaming"] == "True"
    assert json.loads(span.attributes["llm.invocation_parameters"])["stream"] is True


@pytest.mark.parametrize(("status", "error"), [(429, openai.RateLimitError), (400, openai.BadRequestError)])
async def test_provider_error_before_the_stream_keeps_its_status(
    gateway: Gateway, upstream_state: UpstreamState, status: int, error: type[openai.APIStatusError]
) -> None:
    client = gateway.client(rollout_path(f"r-{uuid.uuid4().hex[:8]}"))
    with pytest.raises(error) as raised:
        client.responses.create(model="fake", input=f"fail [[status={status}]]", stream=True)
    assert raised.value.status_code == status
    assert len([r for r in upstream_state.requests if r.path == "/v1/responses"]) == 1


async def test_provider_cut_mid_stream_is_an_in_band_error(
    gateway: Gateway, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = gateway.client(rollout_path(rollout))
    received: list[str] = []
    stream = client.responses.create(model="fake", input="one two three four [[chunks=4]] [[cut_after=2]]", stream=True)
    with stream, pytest.raises(openai.APIError):  # closed, or its socket is left to the collector
        received.extend(event.type for event in stream)
    assert received.count("response.output_text.delta") == 2  # what arrived before the cut was relayed
    assert "response.completed" not in received
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()


async def test_a_dropped_stream_closes_the_provider_call_and_leaves_an_error_trace(
    gateway: Gateway,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
) -> None:
    """The client goes away mid-stream: the provider's connection is closed at once (not read to
    its end), and the call is traced as cancelled with the text relayed so far."""
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    body = {"model": "fake", "input": "alpha beta gamma [[chunks=30]] [[chunk_delay_ms=100]]", "stream": True}
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http,
        http.stream("POST", f"/{rollout_path(rollout)}/responses", json=body) as response,
    ):
        insertion_id = response.headers["x-insertion-id"]
        received = b""
        async for chunk in response.aiter_bytes():
            received += chunk
            if received.count(b"response.output_text.delta") >= 3:
                break
    deadline = time.monotonic() + 3
    while not upstream_state.aborted and time.monotonic() < deadline:  # noqa: ASYNC110 (state of another thread)
        await asyncio.sleep(0.05)
    assert len(upstream_state.aborted) == 1

    def generation() -> ObservationRecord | None:
        for trace in langfuse.traces("proj-a"):
            if f"insertion_id:{insertion_id}" in trace.tags:
                found = [o for o in langfuse.observations("proj-a", trace.id) if o.type == "GENERATION"]
                return found[0] if found else None
        return None

    observation = langfuse.wait_for(generation, timeout=10)
    assert observation.level == "ERROR"
    assert observation.status_message is not None
    assert observation.status_message.startswith("cancelled:")
    partial = as_json(observation.output)["content"]  # the text relayed before the client left
    assert partial
    assert "echo: alpha beta gamma".startswith(partial)
    assert len(partial) < len("echo: alpha beta gamma")
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()


async def test_a_silent_provider_is_ended_at_the_idle_limit(
    gateway_factory: GatewayFactory, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    gateway = gateway_factory(stream_idle_timeout_s=0.5)
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    body = {"model": "fake", "input": "slow [[chunks=3]] [[chunk_delay_ms=3000]]", "stream": True}
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        response = await http.post(f"/{rollout_path(rollout)}/responses", json=body)
    took = time.monotonic() - started
    assert response.status_code == 200
    assert b"response.created" in response.content
    assert b"upstream_stream_idle" in response.content
    assert b"response.output_text.delta" not in response.content
    assert took < 2.5, f"the stream ended after {took:.2f} s, not at the 0.5 s idle limit"
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()


@pytest.mark.parametrize("model", ["fake", "fake-priced"])
async def test_each_event_is_named_by_its_type(gateway: Gateway, model: str) -> None:
    body = {"model": model, "input": "hi there [[chunks=2]]", "stream": True}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        response = await http.post(f"/{rollout_path(f'r-{uuid.uuid4().hex[:8]}')}/responses", json=body)
    frames = [frame for frame in response.content.split(b"\n\n") if frame]
    assert len(frames) == 4 + 2 + 4
    for frame in frames:
        event, data = frame.split(b"\n")
        assert event.removeprefix(b"event: ").decode() == json.loads(data.removeprefix(b"data: "))["type"]


async def test_the_provider_receives_the_redacted_input(
    gateway_factory: GatewayFactory, upstream: tuple[ServerThread, UpstreamState], upstream_state: UpstreamState
) -> None:
    gateway = gateway_factory(catalog=governed_catalog(upstream[0].url))
    client = gateway.client(f"project_id/proj-a/{rollout_path(f'r-{uuid.uuid4().hex[:8]}')}")
    events = list(client.responses.create(model="fake", input=f"SSN {CANARIES['ssn']} [[chunks=2]]", stream=True))
    assert events[-1].type == "response.completed"
    (sent,) = [r for r in upstream_state.requests if r.path == "/v1/responses"]
    assert sent.body["stream"] is True
    assert CANARIES["ssn"] not in json.dumps(sent.body)
    assert "<REDACTED_SSN_1>" in sent.body["input"]


async def test_a_client_chosen_upstream_streams_natively_too(
    gateway: Gateway, upstream_state: UpstreamState, langfuse: LangfuseState
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    base = encode_url(gateway.settings.allowed_base_urls[0])
    client = gateway.client(f"{rollout_path(rollout)}/encoded_base_url/{base}", api_key="sk-own")
    with client.responses.with_streaming_response.create(
        model="openai/my-finetune", input="chosen [[chunks=3]]", stream=True
    ) as raw:
        insertion_id = raw.headers["x-insertion-id"]
        events = list(raw.parse())
    assert [event.sequence_number for event in events] == list(range(4 + 3 + 4))
    (sent,) = [r for r in upstream_state.requests if r.path == "/v1/responses"]
    assert sent.body["stream"] is True
    assert sent.body["model"] == "my-finetune"
    assert sent.headers["authorization"] == "Bearer sk-own"
    trace = trace_of(langfuse, "proj-a", insertion_id)
    assert as_json(trace.output) == {"role": "assistant", "content": "echo: chosen"}
