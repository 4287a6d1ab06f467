"""Every endpoint under chat's rules: refused bodies, PII, in-band errors, keys, one /traces rollout."""

from __future__ import annotations

import json
import uuid
from typing import Any

import anthropic
import httpx
import openai
import pytest
import redis.asyncio

from proxy_core.config_files import ApiKey
from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import SERVER_PROVIDER_KEY, AnthropicFactory, Gateway, GatewayFactory, rollout_path
from tests.integration.test_pii import CANARIES, hits, spans_text
from tests.integration.test_streaming import _generation_of

C = CANARIES


def _error(message: str, param: str, code: str = "invalid_value") -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}


BAD_BODIES = [
    (
        "responses",
        {"model": "fake"},
        "'input' must be a non-empty string or a non-empty array of input items.",
        "input",
    ),
    (
        "responses",
        {"model": "fake", "input": "x", "max_output_tokens": 0},
        "'max_output_tokens' must be a positive integer.",
        "max_output_tokens",
    ),
    (
        "responses",
        {"model": "fake", "input": [{"role": "user", "content": [{"text": "x"}]}]},
        "input[0].content[0] must be an object with a string 'type'.",
        "input[0].content[0].type",
    ),
    (
        "responses",
        {"model": "fake", "input": "x", "api_base": "http://elsewhere"},
        "'api_base' cannot be set by clients of this gateway.",
        "api_base",
    ),
    (
        "responses",
        {"model": "fake", "input": "x", "metadata": {"n": 1}},
        "'metadata.n' must be a string.",
        "metadata.n",
    ),
    (
        "embeddings",
        {"model": "fake", "input": []},
        "'input' must be a non-empty string or a non-empty array of strings, token ids, or arrays of token ids.",
        "input",
    ),
    (
        "embeddings",
        {"model": "fake", "input": "x", "encoding_format": "hex"},
        "'encoding_format' must be 'float' or 'base64'.",
        "encoding_format",
    ),
    ("embeddings", {"model": "fake", "input": "x", "stream": True}, "Embeddings cannot be streamed.", "stream"),
    (
        "completions",
        {"model": "fake", "prompt": {"text": "x"}},
        "'prompt' must be a string, an array of strings, or token ids.",
        "prompt",
    ),
    (
        "completions",
        {"model": "fake", "prompt": "x", "logprobs": 9},
        "'logprobs' must be an integer from 0 to 5.",
        "logprobs",
    ),
    (
        "completions",
        {"model": "fake", "prompt": "x", "temperature": "hot"},
        "'temperature' must be a number.",
        "temperature",
    ),
    (
        "completions",
        {"model": "fake", "prompt": "x", "langfuse_public_key": "pk"},
        "'langfuse_public_key' cannot be set by clients of this gateway.",
        "langfuse_public_key",
    ),
]


@pytest.mark.parametrize(("endpoint", "body", "message", "param"), BAD_BODIES)
async def test_bad_bodies_are_refused_by_the_gateway(
    gateway: Gateway, upstream_state: UpstreamState, endpoint: str, body: dict[str, Any], message: str, param: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        response = await http.post(f"/{rollout_path('r-bad')}/v1/{endpoint}", json=body)
    assert (response.status_code, response.json()) == (400, _error(message, param))
    assert upstream_state.requests == []


async def test_messages_errors_take_anthropics_shape(
    gateway: Gateway, upstream_state: UpstreamState, anthropic_clients: AnthropicFactory
) -> None:
    client = anthropic_clients(base_url=gateway.url, api_key="sk-client")
    with pytest.raises(anthropic.BadRequestError) as refused:
        client.messages.create(model="fake", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert refused.value.body == {
        "type": "error",
        "error": {
            "message": "'max_tokens' must be a positive integer.",
            "type": "invalid_request_error",
            "param": "max_tokens",
            "code": "invalid_value",
        },
    }
    assert upstream_state.requests == []
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="fake", max_tokens=9, messages=[{"role": "user", "content": "x [[status=429]]"}])
    assert limited.value.body["type"] == "error"
    assert limited.value.body["error"]["type"] == "rate_limit_error"


async def test_responses_provider_errors_keep_their_status(gateway: Gateway) -> None:
    with pytest.raises(openai.RateLimitError):
        gateway.client().responses.create(model="fake", input="x [[status=429]]")


def _sse_events(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        events.append((lines.get("event", ""), json.loads(lines["data"])))
    return events


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("responses", {"model": "fake-priced", "input": "cut [[chunks=4]] [[cut_after=1]]", "stream": True}),
        (
            "messages",
            {
                "model": "fake-priced",
                "max_tokens": 9,
                "stream": True,
                "messages": [{"role": "user", "content": "cut [[chunks=4]] [[cut_after=1]]"}],
            },
        ),
    ],
)
async def test_a_stream_cut_by_the_provider_ends_in_band_unrecorded(
    gateway: Gateway,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    endpoint: str,
    body: dict[str, Any],
    anthropic_clients: AnthropicFactory,
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        response = await http.post(f"/{rollout_path(rollout)}/{endpoint}", json=body)
    assert response.status_code == 200
    events = _sse_events(response.content)
    kind, error = events[-1]
    assert kind == "error"
    assert error["type"] == "error"
    assert error["error"]["message"]
    assert all(name not in ("response.completed", "message_stop") for name, _ in events)
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()
    with pytest.raises((openai.APIError, anthropic.APIStatusError)):
        _read_with_official_client(gateway, rollout, endpoint, body, anthropic_clients)


def _read_with_official_client(
    gateway: Gateway, rollout: str, endpoint: str, body: dict[str, Any], anthropic_clients: AnthropicFactory
) -> None:
    """Read the stream as the endpoint's official client does (which raises on the in-band error)."""
    if endpoint == "responses":
        list(gateway.client(rollout_path(rollout)).responses.create(**body))
        return
    client = anthropic_clients(base_url=f"{gateway.url}/{rollout_path(rollout)}", api_key="k")
    with client.messages.stream(**{k: v for k, v in body.items() if k != "stream"}) as stream:
        list(stream.text_stream)


async def test_x_api_key_is_the_gateway_key_under_gateway_auth(
    gateway_factory: GatewayFactory, upstream_state: UpstreamState, anthropic_clients: AnthropicFactory
) -> None:
    key = "gw-" + uuid.uuid4().hex
    gateway = gateway_factory(api_keys=(ApiKey(key=key, projects=("proj-a",)),))  # type: ignore[arg-type]
    client = anthropic_clients(base_url=f"{gateway.url}/project_id/proj-a", api_key=key)
    message = client.messages.create(model="fake-keyed", max_tokens=9, messages=[{"role": "user", "content": "hi"}])
    assert message.content[0].text == "echo: hi"  # type: ignore[union-attr]
    assert upstream_state.requests[-1].headers["authorization"] == f"Bearer {SERVER_PROVIDER_KEY}"
    wrong = anthropic_clients(base_url=f"{gateway.url}/project_id/proj-a", api_key="nope")
    with pytest.raises(anthropic.AuthenticationError):
        wrong.messages.create(model="fake-keyed", max_tokens=9, messages=[{"role": "user", "content": "hi"}])


def _canary_bodies() -> dict[str, dict[str, Any]]:
    text = f"SSN {C['ssn']} card {C['card']} mail {C['email']} member {C['member']}"
    return {
        "responses": {
            "model": "fake",
            "instructions": f"Patient DOB {C['dob']}",
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": text}]},
                {
                    "type": "function_call",
                    "call_id": "call_1",
                    "name": "lookup",
                    "arguments": json.dumps({"npi": C["npi"]}),
                },
                {"type": "function_call_output", "call_id": "call_1", "output": f"phone {C['phone']}"},
                {"role": "user", "content": f"Repeat: {C['ssn']} {C['mbi']}"},
            ],
        },
        "embeddings": {"model": "fake", "input": [text, f"phone {C['phone']}"]},
        "completions": {"model": "fake", "prompt": f"Repeat: {text}", "suffix": C["npi"]},
        "messages": {
            "model": "fake",
            "max_tokens": 20,
            "system": [{"type": "text", "text": f"DOB {C['dob']}"}],
            "messages": [
                {"role": "user", "content": text},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "tu_1", "name": "lookup", "input": {"mbi": C["mbi"]}}],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "tu_1", "content": f"phone {C['phone']}"},
                        {"type": "text", "text": f"Repeat: {C['ssn']}"},
                    ],
                },
            ],
        },
    }


@pytest.mark.parametrize("endpoint", ["responses", "embeddings", "completions", "messages"])
async def test_canaries_reach_neither_provider_nor_langfuse(
    gateway_factory: GatewayFactory,
    upstream: Any,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    endpoint: str,
) -> None:
    from tests.integration.test_pii import governed_catalog

    gateway = gateway_factory(catalog=governed_catalog(upstream[0].url))
    rollout = f"pii-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        response = await http.post(
            f"/project_id/proj-a/{rollout_path(rollout)}/{endpoint}", json=_canary_bodies()[endpoint]
        )
    assert response.status_code == 200, response.text
    sent = json.dumps(upstream_state.requests[-1].body)
    assert hits(sent) == []
    assert "<REDACTED_SSN_1>" in sent
    if endpoint == "responses":
        call = upstream_state.requests[-1].body["input"][1]
        assert (call["call_id"], call["name"]) == ("call_1", "lookup")
        assert json.loads(call["arguments"]) == {"npi": "<REDACTED_NPI_1>"}
    langfuse.wait_for(lambda: spans_text(langfuse, "proj-a", rollout)[0] >= 1, timeout=10)
    count, exported = spans_text(langfuse, "proj-a", rollout)
    assert count == 1
    assert hits(exported) == []
    assert "REDACTED_" in exported


async def test_traces_of_a_rollout_mixing_every_endpoint(
    gateway: Gateway, langfuse: LangfuseState, anthropic_clients: AnthropicFactory
) -> None:
    rollout = f"mix-{uuid.uuid4().hex[:8]}"
    path = rollout_path(rollout)
    client = gateway.client(path)
    ids = [
        client.chat.completions.with_raw_response.create(model="fake", messages=[{"role": "user", "content": "chat"}]),
        client.responses.with_raw_response.create(model="fake", input="respond"),
        client.embeddings.with_raw_response.create(model="fake", input="embed me"),
        client.completions.with_raw_response.create(model="fake", prompt="complete"),
    ]
    insertion_ids = [raw.headers["x-insertion-id"] for raw in ids]
    messages = anthropic_clients(base_url=f"{gateway.url}/{path}", api_key="k")
    raw_message = messages.messages.with_raw_response.create(
        model="fake", max_tokens=9, messages=[{"role": "user", "content": "message"}]
    )
    insertion_ids.append(raw_message.headers["x-insertion-id"])
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as http:
        response = await http.get("/v1/traces", params={"tags": f"rollout_id:{rollout}", "timeout_s": 30})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total_traces"] == 5
    by_id = {
        tag.removeprefix("insertion_id:"): trace
        for trace in body["traces"]
        for tag in trace["tags"]
        if tag.startswith("insertion_id:")
    }
    assert set(by_id) == set(insertion_ids)
    chat, responses, embeddings, completions, message = (by_id[i] for i in insertion_ids)
    assert chat["output"] == {"role": "assistant", "content": "echo: chat"}
    assert responses["output"] == {"role": "assistant", "content": "echo: respond"}
    assert embeddings["output"] == {"embeddings": 1, "dimensions": 8}
    assert embeddings["input"] == "embed me"
    assert completions["output"] == "echo: complete"
    assert message["output"] == {"role": "assistant", "content": "echo: message"}
    assert all(trace["input"] for trace in by_id.values())
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        status = (await http.get(f"/rollouts/{rollout}")).json()
    # word counts of the fake provider: 1 prompt word each (embeddings: 2) and a 2-word echo each
    assert (status["expected_count"], status["prompt_tokens"], status["completion_tokens"]) == (5, 6, 8)


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("responses", {"model": "fake-priced", "input": "[[chunks=20]] [[chunk_delay_ms=100]] alpha", "stream": True}),
        (
            "messages",
            {
                "model": "fake-priced",
                "max_tokens": 50,
                "stream": True,
                "messages": [{"role": "user", "content": "[[chunks=20]] [[chunk_delay_ms=100]] alpha"}],
            },
        ),
    ],
)
async def test_a_dropped_stream_leaves_an_error_trace_with_its_partial_output(
    gateway: Gateway,
    langfuse: LangfuseState,
    upstream_state: UpstreamState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    endpoint: str,
    body: dict[str, Any],
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    received = b""
    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http,
        http.stream("POST", f"/{rollout_path(rollout)}/{endpoint}", json=body) as response,
    ):
        insertion_id = response.headers["x-insertion-id"]
        async for chunk in response.aiter_bytes():
            received += chunk
            if received.count(b"delta") >= 3:
                break
    observation = langfuse.wait_for(lambda: _generation_of(langfuse, insertion_id), timeout=10)
    assert observation.level == "ERROR"
    assert observation.status_message is not None
    assert observation.status_message.startswith("cancelled:")
    partial = json.loads(observation.output)["content"]
    assert partial, "the partial output is in the trace"
    assert "echo: alpha".startswith(partial)
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == set()
    langfuse.wait_for(lambda: upstream_state.aborted, timeout=10)  # the provider call was cancelled
