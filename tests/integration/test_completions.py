"""Chat completions end to end: official openai client → gateway → fake provider, Redis, Langfuse emulator."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
import redis.asyncio

from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, encode_url, rollout_path
from tests.redis_keys import data_keys

USER = [{"role": "user", "content": "hello there"}]
ROLLOUT_TAGS = ("invocation_id:inv-1", "experiment_id:exp-1", "run_id:run-1", "row_id:row-1")


def tags_of(langfuse: LangfuseState, project: str, insertion_id: str) -> list[str]:
    def find() -> list[str] | None:
        for trace in langfuse.traces(project):
            if f"insertion_id:{insertion_id}" in trace.tags:
                return trace.tags
        return None

    return langfuse.wait_for(find, timeout=10)


@pytest.mark.parametrize("prefix", ["", "v1/"])
@pytest.mark.parametrize("suffix", ["", "/v1"])
async def test_tracked_completion_is_tagged_recorded_and_traced(
    gateway: Gateway,
    upstream_state: UpstreamState,
    langfuse: LangfuseState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    prefix: str,
    suffix: str,
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = gateway.client(f"{prefix}project_id/proj-b/{rollout_path(rollout)}{suffix}")
    raw = client.chat.completions.with_raw_response.create(
        model="fake", messages=USER, metadata={"tags": ["mine", f"rollout_id:spoof-{rollout}"]}
    )
    completion = raw.parse()
    insertion_id = raw.headers["x-insertion-id"]
    assert completion.choices[0].message.content == "echo: hello there"
    assert uuid.UUID(insertion_id).version == 7

    key = rollout_key(key_prefix, "proj-b", rollout)
    assert await redis_client.smembers(key) == {insertion_id}
    assert 0 < await redis_client.ttl(key) <= 86_400

    tags = tags_of(langfuse, "proj-b", insertion_id)
    assert set(tags) == {"mine", f"rollout_id:{rollout}", f"insertion_id:{insertion_id}", *ROLLOUT_TAGS}
    assert langfuse.traces("proj-a") == [] or all(
        f"insertion_id:{insertion_id}" not in t.tags for t in langfuse.traces("proj-a")
    )

    sent = upstream_state.completion_requests[-1]
    assert sent.body["messages"] == USER
    assert sent.headers["authorization"] == "Bearer sk-client"
    assert "metadata" not in sent.body
    assert not any(k.startswith("langfuse") for k in sent.body)


async def test_streamed_completion_with_openai_client(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    client = gateway.client(rollout_path(rollout))
    with client.chat.completions.with_streaming_response.create(
        model="fake", messages=[{"role": "user", "content": "stream me [[chunks=5]]"}], stream=True
    ) as response:
        insertion_id = response.headers["x-insertion-id"]
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
    assert text == "echo: stream me"
    assert await redis_client.smembers(rollout_key(key_prefix, "proj-a", rollout)) == {insertion_id}
    tags = tags_of(langfuse, "proj-a", insertion_id)
    assert f"rollout_id:{rollout}" in tags


@pytest.mark.parametrize("model", ["openai/fake-model", "fireworks_ai/accounts/fireworks/models/fake"])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_client_chosen_upstream_answers_streamed_or_not(
    gateway: Gateway, langfuse: LangfuseState, upstream_state: UpstreamState, model: str, stream: bool
) -> None:
    # Each provider family gets the gateway's own non-following client; both must still work.
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    base = encode_url(gateway.settings.allowed_base_urls[0])
    client = gateway.client(f"{rollout_path(rollout)}/encoded_base_url/{base}", api_key="sk-own")
    messages = [{"role": "user", "content": "chosen [[chunks=3]]"}]
    if stream:
        with client.chat.completions.with_streaming_response.create(
            model=model, messages=messages, stream=True
        ) as response:
            insertion_id = response.headers["x-insertion-id"]
            text = "".join(chunk.choices[0].delta.content or "" for chunk in response.parse() if chunk.choices)
    else:
        raw = client.chat.completions.with_raw_response.create(model=model, messages=messages)
        insertion_id = raw.headers["x-insertion-id"]
        text = raw.parse().choices[0].message.content or ""
    assert text == "echo: chosen"
    assert upstream_state.completion_requests[-1].headers["authorization"] == "Bearer sk-own"
    assert f"rollout_id:{rollout}" in tags_of(langfuse, "proj-a", insertion_id)
    assert "sk-own" not in repr(langfuse.spans("proj-a"))  # the client object carries the key


async def test_untracked_routes_are_traced_but_not_recorded(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    for path in ("", "v1", "project_id/proj-c", "v1/project_id/proj-c"):
        raw = gateway.client(path).chat.completions.with_raw_response.create(model="demo", messages=USER)
        assert "x-insertion-id" not in raw.headers
        assert raw.parse().choices[0].message.content == "hello from demo"
    assert await data_keys(redis_client, key_prefix) == []
    langfuse.wait_for(lambda: len(langfuse.spans("proj-c")) >= 2, timeout=10)


def test_session_and_user_reach_the_trace(gateway: Gateway, langfuse: LangfuseState) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    raw = gateway.client(rollout_path(rollout)).chat.completions.with_raw_response.create(
        model="fake", messages=USER, extra_headers={"x-session-id": "sess-1", "x-user-id": "user-9"}
    )
    insertion_id = raw.headers["x-insertion-id"]
    trace = langfuse.wait_for(
        lambda: next((t for t in langfuse.traces("proj-a") if f"insertion_id:{insertion_id}" in t.tags), None)
    )
    assert (trace.session_id, trace.user_id, trace.name) == ("sess-1", "user-9", "chat-completion")
    assert trace.metadata.get("rollout_id") == rollout


def test_fields_the_provider_left_out_arrive_as_the_sdk_declares_them(gateway: Gateway) -> None:
    """The answer has the shape clients got from the OpenAI SDK's model: absent fields are null."""
    answer = httpx.post(
        f"{gateway.url}/project_id/proj-b/{rollout_path(f'r-{uuid.uuid4().hex[:8]}')}/chat/completions",
        json={"model": "fake", "messages": USER},
        headers={"authorization": "Bearer sk-client"},
        timeout=30,
    ).json()
    assert {"moderation": None, "service_tier": None, "system_fingerprint": None}.items() <= answer.items()
    assert answer["usage"]["completion_tokens_details"] is None
    assert answer["usage"]["prompt_tokens_details"] is None
    assert answer["choices"][0]["message"]["provider_specific_fields"] == {"refusal": None}


def test_tools_requests_are_forwarded(gateway: Gateway, upstream_state: UpstreamState) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    gateway.client().chat.completions.create(model="fake", messages=USER, tools=tools)  # type: ignore[arg-type]
    assert upstream_state.completion_requests[-1].body["tools"] == tools


def test_provider_specific_params_travel_in_the_body(gateway: Gateway, upstream_state: UpstreamState) -> None:
    gateway.client().chat.completions.create(
        model="fake", messages=USER, extra_body={"top_k": 7, "repetition_penalty": 1.1}
    )
    body = upstream_state.completion_requests[-1].body
    assert (body["top_k"], body["repetition_penalty"]) == (7, 1.1)


async def test_health_ready_models(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        for prefix in ("", "/v1"):  # every route also answers under a leading /v1
            health = await http.get(f"{prefix}/health")
            assert health.json() == {"status": "healthy", "service": "metadata-proxy"}
            ready = await http.get(f"{prefix}/ready")
            assert ready.status_code == 200
            for probe in ("health", "ready"):  # load balancers probe with HEAD too
                assert (await http.head(f"{prefix}/{probe}")).status_code == 200
            steps = {"ended", "handed", "unexported", "discarded", "queued", "exported", "spooled", "replayed"}
            assert set(ready.json()["spans"]) == steps | {"dropped", "rejected", "truncated"}
            assert ready.json()["store"]["state"] == "up"
            assert set(ready.json()["tracing"]["projects"]) <= {"proj-a", "proj-b", "proj-c"}
        for path in ("/v1/models", "/models"):
            models = (await http.get(path)).json()
            assert [m["id"] for m in models["data"]] == ["fake", "fake-keyed", "demo", "fake-priced"]
        missing = await http.get("/nope")
        assert missing.status_code == 404
        assert json.loads(missing.text)["error"]["code"] == "unknown_route"
