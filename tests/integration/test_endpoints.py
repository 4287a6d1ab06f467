"""Responses, embeddings, text completions and Anthropic messages through the gateway, with the
official ``openai`` and ``anthropic`` clients: tracked, recorded, traced like chat."""

from __future__ import annotations

import base64
import json
import struct
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio

from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_model import TraceRecord
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.fakes.upstream_endpoints import fake_vector
from tests.integration.conftest import AnthropicFactory, Gateway, rollout_path

ROLLOUT_TAGS = ("invocation_id:inv-1", "experiment_id:exp-1", "run_id:run-1", "row_id:row-1")


def trace_of(langfuse: LangfuseState, project: str, insertion_id: str) -> TraceRecord:
    def find() -> TraceRecord | None:
        for trace in langfuse.traces(project):
            if f"insertion_id:{insertion_id}" in trace.tags and trace.output is not None:
                return trace
        return None

    return langfuse.wait_for(find, timeout=10)


def as_json(value: Any) -> Any:
    """A trace's input or output as the emulator keeps it (Langfuse stores JSON text), parsed."""
    return json.loads(value) if isinstance(value, str) else value


async def check_recorded(
    redis_client: redis.asyncio.Redis, key_prefix: str, project: str, rollout: str, insertion_id: str
) -> None:
    key = rollout_key(key_prefix, project, rollout)
    assert await redis_client.smembers(key) == {insertion_id}


def check_tags(trace: TraceRecord, rollout: str, insertion_id: str) -> None:
    assert set(trace.tags) >= {f"rollout_id:{rollout}", f"insertion_id:{insertion_id}", *ROLLOUT_TAGS}


@pytest.mark.parametrize("model", ["fake", "fake-priced"])
async def test_responses_not_streamed(
    gateway: Gateway,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    model: str,
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = gateway.client(f"project_id/proj-b/{rollout_path(rollout)}/v1")
    raw = client.responses.with_raw_response.create(
        model=model, input="hello there", instructions="be brief", metadata={"ticket": "t-1"}
    )
    response = raw.parse()
    insertion_id = raw.headers["x-insertion-id"]
    assert uuid.UUID(insertion_id).version == 7
    assert response.output_text == "echo: hello there"
    assert response.usage is not None
    assert response.usage.input_tokens == 4
    assert response.usage.output_tokens == 3
    await check_recorded(redis_client, key_prefix, "proj-b", rollout, insertion_id)
    (sent,) = [r for r in upstream_state.requests if r.path == "/v1/responses"]
    assert sent.body["input"] == "hello there"
    assert sent.body["metadata"] == {"ticket": "t-1"}  # the API's own field; the trace's is not sent
    assert not any(key.startswith(("langfuse", "litellm")) for key in sent.body)
    trace = trace_of(langfuse, "proj-b", insertion_id)
    check_tags(trace, rollout, insertion_id)
    assert as_json(trace.output) == {"role": "assistant", "content": "echo: hello there"}
    assert as_json(trace.input)[-1]["content"] == "hello there"


@pytest.mark.parametrize("model", ["fake", "fake-priced"])
async def test_responses_streamed(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str, model: str
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = gateway.client(rollout_path(rollout))
    with client.responses.with_streaming_response.create(
        model=model, input=[{"role": "user", "content": "stream me [[chunks=4]]"}], stream=True
    ) as raw:
        insertion_id = raw.headers["x-insertion-id"]
        events = list(raw.parse())
    kinds = [event.type for event in events]
    assert kinds[0] == "response.created"
    assert kinds[-1] == "response.completed"
    assert [event.sequence_number for event in events] == list(range(len(events)))
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == "echo: stream me"
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.output_text == "echo: stream me"
    await check_recorded(redis_client, key_prefix, "proj-a", rollout, insertion_id)
    trace = trace_of(langfuse, "proj-a", insertion_id)
    check_tags(trace, rollout, insertion_id)
    assert as_json(trace.output) == {"role": "assistant", "content": "echo: stream me"}


@pytest.mark.parametrize("encoding", ["float", "base64", None])
async def test_embeddings(
    gateway: Gateway,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    encoding: str | None,
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = gateway.client(f"v1/{rollout_path(rollout)}")
    options: dict[str, Any] = {"encoding_format": encoding} if encoding else {}
    raw = client.embeddings.with_raw_response.create(model="fake", input=["one two", "three"], **options)
    result = raw.parse()
    insertion_id = raw.headers["x-insertion-id"]
    vectors = [_float32(item.embedding) if encoding == "base64" else item.embedding for item in result.data]
    assert vectors == [
        pytest.approx(fake_vector("one two", 8), abs=1e-6),
        pytest.approx(fake_vector("three", 8), abs=1e-6),
    ]
    assert result.usage.prompt_tokens == 3
    (sent,) = [r for r in upstream_state.requests if r.path == "/v1/embeddings"]
    assert sent.body["input"] == ["one two", "three"]
    await check_recorded(redis_client, key_prefix, "proj-a", rollout, insertion_id)
    trace = trace_of(langfuse, "proj-a", insertion_id)
    check_tags(trace, rollout, insertion_id)
    assert as_json(trace.input) == ["one two", "three"]
    assert as_json(trace.output) == {"embeddings": 2, "dimensions": 8}


async def test_text_completions_streamed_and_not(
    gateway: Gateway,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = gateway.client(rollout_path(rollout))
    raw = client.completions.with_raw_response.create(model="fake", prompt="say hi", max_tokens=5, logprobs=1)
    completion = raw.parse()
    first = raw.headers["x-insertion-id"]
    assert completion.choices[0].text == "echo: say hi"
    assert completion.choices[0].logprobs is not None
    assert completion.choices[0].logprobs.tokens == ["echo:", "say", "hi"]
    with client.completions.with_streaming_response.create(
        model="fake", prompt="stream [[chunks=3]]", stream=True
    ) as streamed:
        second = streamed.headers["x-insertion-id"]
        chunks = list(streamed.parse())
    assert "".join(chunk.choices[0].text for chunk in chunks if chunk.choices) == "echo: stream"
    assert all(chunk.usage is None for chunk in chunks)  # the usage the gateway asked for stays hidden
    sent = [r for r in upstream_state.requests if r.path == "/v1/completions"]
    assert [r.body["prompt"] for r in sent] == ["say hi", "stream [[chunks=3]]"]
    key = rollout_key(key_prefix, "proj-a", rollout)
    assert await redis_client.smembers(key) == {first, second}
    assert as_json(trace_of(langfuse, "proj-a", first).output) == "echo: say hi"
    assert as_json(trace_of(langfuse, "proj-a", second).output) == "echo: stream"
    async with httpx.AsyncClient() as http:
        status = (await http.get(f"{gateway.url}/rollouts/{rollout}")).json()
    assert status["expected_count"] == 2
    assert status["prompt_tokens"] == 2 + 2
    assert status["completion_tokens"] == 3 + 2


@pytest.mark.parametrize("model", ["fake", "fake-priced"])
async def test_anthropic_messages_create_and_stream(
    gateway: Gateway,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    model: str,
    anthropic_clients: AnthropicFactory,
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = anthropic_clients(base_url=f"{gateway.url}/project_id/proj-c/{rollout_path(rollout)}", api_key="sk-client")
    raw = client.messages.with_raw_response.create(
        model=model, max_tokens=50, system="be brief", messages=[{"role": "user", "content": "hello there"}]
    )
    message = raw.parse()
    first = raw.headers["x-insertion-id"]
    assert message.content[0].type == "text"
    assert message.content[0].text == "echo: hello there"
    assert message.usage.output_tokens == 3
    with client.messages.stream(
        model=model, max_tokens=50, messages=[{"role": "user", "content": "stream me [[chunks=3]]"}]
    ) as stream:
        second = stream.response.headers["x-insertion-id"]
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: stream me"
    assert final.stop_reason == "end_turn"
    sent = [r for r in upstream_state.requests if r.path == "/v1/responses"]
    assert [r.headers["authorization"] for r in sent] == ["Bearer sk-client", "Bearer sk-client"]
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-c", rollout)) == {first, second}
    for insertion_id, output in ((first, "echo: hello there"), (second, "echo: stream me")):
        trace = trace_of(langfuse, "proj-c", insertion_id)
        check_tags(trace, rollout, insertion_id)
        assert as_json(trace.output) == {"role": "assistant", "content": output}


def _float32(encoded: Any) -> list[float]:
    """A base64 vector as OpenAI sends it: little-endian float32 (the client decodes it only when it
    chose base64 itself)."""
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
