"""The real tracing pipeline against the fakes: LiteLLM → OTLP → emulator → Langfuse SDK.

LiteLLM calls the fake provider and exports through its ``langfuse_otel``
callback with per-request project keys; the emulator must turn those spans
into the traces a real Langfuse would show, and the official Langfuse SDK must
be able to parse everything the emulator answers.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import litellm
import pytest
from langfuse.api import AsyncLangfuseAPI
from langfuse.api.core.api_error import ApiError
from langfuse.api.scores.types.create_score_request import CreateScoreRequest
from litellm.integrations.langfuse.langfuse_otel import LangfuseOtelLogger

from tests.fakes import FakeLangfuse, FakeUpstream
from tests.fakes.langfuse_model import TraceRecord
from tests.fakes.langfuse_state import LangfuseState

# LiteLLM's streaming path uses pydantic APIs that newer pydantic versions warn about.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Accessing the 'model_:pydantic.warnings.PydanticDeprecatedSince211"),
    pytest.mark.filterwarnings("ignore:Item 'summary' on TypedDict class 'ChatCompletionReasoningItem':UserWarning"),
]


@pytest.fixture(scope="module")
def otel_logger() -> Iterator[LangfuseOtelLogger]:
    logger = LangfuseOtelLogger(callback_name="langfuse_otel")
    previous = list(litellm.callbacks)
    litellm.callbacks = [logger]
    try:
        yield logger
    finally:
        _flush(logger)
        litellm.logging_callback_manager.remove_callback_from_all_lists(logger)
        litellm.callbacks = previous


@pytest.fixture(autouse=True)
async def _close_litellm_clients() -> AsyncIterator[None]:
    """LiteLLM caches the provider clients it makes process-wide; the test's event loop ends with
    the test, so their connections are closed here rather than left to the garbage collector."""
    yield
    await litellm.close_litellm_async_clients()


@pytest.fixture(autouse=True)
def _flush_after_each_test(otel_logger: LangfuseOtelLogger) -> Iterator[None]:
    """Deliver a test's spans before the next test resets the emulator."""
    yield
    _flush(otel_logger)


def _tagged(state: LangfuseState, tag: str, project: str = "proj-a") -> list[TraceRecord]:
    return [t for t in state.traces(project) if tag in t.tags]


def _flush(logger: LangfuseOtelLogger) -> None:
    for entry in list(logger._tracer_provider_cache.values()):
        entry.provider.force_flush(5000)


async def _flush_until(logger: LangfuseOtelLogger, done: Callable[[], bool]) -> None:
    """Flush the exporter until ``done()``; callbacks run as tasks on this loop, so yield between tries."""
    try:
        async with asyncio.timeout(10):
            while True:
                await asyncio.sleep(0.02)
                _flush(logger)
                if done():
                    return
    except TimeoutError:
        raise AssertionError("spans did not reach the emulator in time") from None


def _metadata(rollout: str, **extra: Any) -> dict[str, Any]:
    """A fresh metadata dict per call (LiteLLM mutates the one it is given)."""
    return {
        "tags": [f"rollout_id:{rollout}", "insertion_id:i1"],
        "session_id": "s1",
        "trace_user_id": "u1",
        "trace_name": "chat-completion",
        "trace_metadata": {"rollout_id": rollout},
        **extra,
    }


async def _complete(
    upstream: FakeUpstream, langfuse: FakeLangfuse, text: str, rollout: str, project: str = "proj-a", **kwargs: Any
) -> Any:
    public_key, secret_key = langfuse.credentials(project)
    return await litellm.acompletion(
        model="openai/x",
        api_base=upstream.base_url,
        api_key="k",
        messages=[{"role": "user", "content": text}],
        metadata=_metadata(rollout),
        langfuse_public_key=public_key,
        langfuse_secret_key=secret_key,
        langfuse_host=langfuse.url,
        **kwargs,
    )


@pytest.fixture
async def sdk(fake_langfuse: FakeLangfuse) -> AsyncIterator[AsyncLangfuseAPI]:
    public_key, secret_key = fake_langfuse.credentials("proj-a")
    async with httpx.AsyncClient(timeout=10) as client:
        yield AsyncLangfuseAPI(
            base_url=fake_langfuse.url, username=public_key, password=secret_key, httpx_client=client
        )


def _tags_filter(*tags: str) -> str:
    return json.dumps([{"type": "arrayOptions", "column": "tags", "operator": "all of", "value": list(tags)}])


async def test_completion_trace_reads_back_through_both_apis(
    fake_upstream: FakeUpstream, fake_langfuse: FakeLangfuse, otel_logger: LangfuseOtelLogger
) -> None:
    reply = await _complete(fake_upstream, fake_langfuse, "hello", "r1")
    assert reply.choices[0].message.content == "echo: hello"
    state = fake_langfuse.state
    await _flush_until(otel_logger, lambda: bool(_tagged(state, "rollout_id:r1")))

    (request,) = fake_upstream.state.completion_requests
    assert not any(key.startswith("langfuse") for key in request.body)
    root = next(s for s in state.spans("proj-a") if s.parent_span_id is None and "r1" in str(s.attributes))
    assert json.loads(root.attributes["langfuse.trace.tags"]) == ["rollout_id:r1", "insertion_id:i1"]
    assert {(r.path, r.status) for r in state.requests_to("/api/public/otel")} == {("/api/public/otel/v1/traces", 200)}

    async with httpx.AsyncClient(base_url=fake_langfuse.url, auth=fake_langfuse.credentials("proj-a")) as api:
        listed = await api.get("/api/public/traces", params=[("tags", "rollout_id:r1"), ("tags", "insertion_id:i1")])
        (trace,) = listed.json()["data"]
        assert trace["name"] == "chat-completion"
        assert trace["tags"] == ["insertion_id:i1", "rollout_id:r1"]
        assert (trace["sessionId"], trace["userId"]) == ("s1", "u1")
        assert trace["environment"] == "production"
        assert trace["metadata"]["rollout_id"] == "r1"
        assert trace["input"] == [{"role": "user", "content": "hello"}]
        assert trace["output"] == {"role": "assistant", "content": "echo: hello"}
        assert len(trace["observations"]) == 2

        full = (await api.get(f"/api/public/traces/{trace['id']}")).json()
        types = {o["name"]: o["type"] for o in full["observations"]}
        assert types == {"litellm_request": "GENERATION", "raw_gen_ai_request": "SPAN"}
        generation = next(o for o in full["observations"] if o["type"] == "GENERATION")
        assert generation["model"] == "x"
        assert generation["usageDetails"]["total"] == generation["usageDetails"]["input"] + 2

        params = {
            "filter": _tags_filter("rollout_id:r1"),
            "type": "GENERATION",
            "fields": "core,basic,io,trace_context",
        }
        (obs,) = (await api.get("/api/public/v2/observations", params=params)).json()["data"]
        assert obs["traceId"] == trace["id"]
        assert json.loads(obs["output"])["content"] == "echo: hello"
        assert (obs["traceName"], obs["userId"], obs["sessionId"]) == ("chat-completion", "u1", "s1")


async def test_streamed_completion_is_traced_with_assembled_output(
    fake_upstream: FakeUpstream, fake_langfuse: FakeLangfuse, otel_logger: LangfuseOtelLogger
) -> None:
    stream = await _complete(
        fake_upstream,
        fake_langfuse,
        "stream me [[chunks=4]]",
        "r-stream",
        stream=True,
        stream_options={"include_usage": True},
    )
    text = ""
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
    assert text == "echo: stream me"
    state = fake_langfuse.state
    await _flush_until(otel_logger, lambda: bool(_tagged(state, "rollout_id:r-stream")))
    (trace,) = _tagged(state, "rollout_id:r-stream")
    generation = next(o for o in state.observations("proj-a", trace.id) if o.type == "GENERATION")
    assert json.loads(generation.output)["content"] == "echo: stream me"


async def test_failed_completion_is_an_error_observation(
    fake_upstream: FakeUpstream, fake_langfuse: FakeLangfuse, otel_logger: LangfuseOtelLogger
) -> None:
    with pytest.raises(litellm.InternalServerError):
        await _complete(fake_upstream, fake_langfuse, "x [[status=500]]", "r-err", num_retries=0, max_retries=0)
    state = fake_langfuse.state
    await _flush_until(otel_logger, lambda: bool(_tagged(state, "rollout_id:r-err")))
    (trace,) = _tagged(state, "rollout_id:r-err")
    (obs,) = state.observations("proj-a", trace.id)  # no raw-request child for a failed call
    assert (obs.type, obs.level) == ("GENERATION", "ERROR")


async def test_per_request_keys_route_to_their_project(
    fake_upstream: FakeUpstream, fake_langfuse: FakeLangfuse, otel_logger: LangfuseOtelLogger
) -> None:
    await _complete(fake_upstream, fake_langfuse, "for b", "r-b", project="proj-b")
    state = fake_langfuse.state
    await _flush_until(otel_logger, lambda: bool(_tagged(state, "rollout_id:r-b", "proj-b")))
    assert _tagged(state, "rollout_id:r-b", "proj-a") == []
    assert all("rollout_id:r-b" not in str(s.attributes) for s in state.spans("proj-a"))


async def test_langfuse_sdk_parses_the_emulator(
    fake_upstream: FakeUpstream, fake_langfuse: FakeLangfuse, otel_logger: LangfuseOtelLogger, sdk: AsyncLangfuseAPI
) -> None:
    await _complete(fake_upstream, fake_langfuse, "one", "r-sdk")
    await _complete(fake_upstream, fake_langfuse, "two", "r-other")
    state = fake_langfuse.state
    await _flush_until(
        otel_logger, lambda: bool(_tagged(state, "rollout_id:r-sdk") and _tagged(state, "rollout_id:r-other"))
    )

    page = await sdk.observations.get_many(
        filter=_tags_filter("rollout_id:r-sdk"), fields="core,basic,io,trace_context", limit=100
    )
    assert {o.type for o in page.data} == {"GENERATION", "SPAN"}
    assert all(o.tags == ["insertion_id:i1", "rollout_id:r-sdk"] for o in page.data)
    assert page.meta.cursor is None
    ours = _tags_filter("insertion_id:i1")
    first = await sdk.observations.get_many(limit=1, type="GENERATION", filter=ours, environment=["production"])
    assert first.meta.cursor is not None
    second = await sdk.observations.get_many(limit=1, type="GENERATION", filter=ours, cursor=first.meta.cursor)
    assert first.data[0].trace_id != second.data[0].trace_id

    trace_id = page.data[0].trace_id
    assert trace_id is not None
    await sdk.scores.create(request=[CreateScoreRequest(trace_id=trace_id, name="complete", value=1.0)])
    assert state.scores("proj-a")[0]["traceId"] == trace_id

    state.add_prompt("proj-a", "folder/my prompt", 3, "Say {{x}}", labels=["production"])
    prompt = await sdk.prompts.get("folder/my prompt")
    assert (prompt.version, prompt.prompt) == (3, "Say {{x}}")
    assert (await sdk.health.health()).status == "OK"

    state.inject("/api/public/v2/observations", 429, retry_after=1)
    with pytest.raises(ApiError) as caught:
        await sdk.observations.get_many(limit=1, request_options={"max_retries": 0})
    assert caught.value.status_code == 429
