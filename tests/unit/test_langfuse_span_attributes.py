"""The gateway's span mapping gives Langfuse the same fields as LiteLLM's own, from real callbacks.

Each case runs a real ``litellm.acompletion`` (a mocked provider answer), captures the kwargs
LiteLLM hands its logging callbacks, and maps them twice: with LiteLLM's ``langfuse_otel``
mapping and with ``generation_attributes``. Every attribute Langfuse turns into a field of the
observation or the trace must carry the same value (JSON compared as documents).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import litellm
import pytest
from litellm.integrations.custom_logger import CustomLogger
from litellm.integrations.langfuse.langfuse_otel import LangfuseOtelLogger

from proxy_core.adapters.langfuse_span_attributes import generation_attributes, to_json

# What Langfuse reads from a LiteLLM span into observation and trace fields.
LANGFUSE_FIELDS = (
    "langfuse.observation.type",
    "langfuse.observation.input",
    "langfuse.observation.output",
    "langfuse.trace.tags",
    "langfuse.trace.name",
    "langfuse.trace.metadata",
    "langfuse.environment",
    "session.id",
    "user.id",
    "llm.model_name",
    "llm.response.model",
    "llm.invocation_parameters",
    "llm.token_count.prompt",
    "llm.token_count.completion",
    "llm.token_count.total",
    "llm.cost.total",
    "openinference.span.kind",
    "llm.provider",
    "llm.request.type",
    "llm.is_streaming",
    "llm.response.id",
)
METADATA = {
    "tags": ["rollout_id:r-1", "insertion_id:i-1", "team:evals"],
    "trace_name": "chat-completion",
    "trace_metadata": {"rollout_id": "r-1", "project_id": "proj-a", "nested": {"k": [1, 2]}},
    "session_id": "s-1",
    "trace_user_id": "u-1",
}
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "weather",
            "description": "Current weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]


class _Capture(CustomLogger):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[dict[str, Any], Any]] = []

    async def async_log_success_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.calls.append((kwargs, response_obj))

    async def async_log_failure_event(self, kwargs: Any, response_obj: Any, start_time: Any, end_time: Any) -> None:
        self.calls.append((kwargs, None))


class _Span:
    """Collects what a mapping sets, the way an OpenTelemetry span would keep it."""

    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value

    def set_attributes(self, attributes: dict[str, Any]) -> None:
        self.attributes.update(attributes)

    def record_exception(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"the mapping failed: {args}")


async def _callback(mock: Any, **extra: Any) -> tuple[dict[str, Any], Any]:
    capture = _Capture()
    kwargs: dict[str, Any] = {
        "model": "openai/fake-model",
        "messages": MESSAGES,
        "metadata": json.loads(json.dumps(METADATA)),
        "mock_response": mock,
        "temperature": 0.2,
        "max_tokens": 64,
        **extra,
    }
    litellm.logging_callback_manager.add_litellm_callback(capture)
    try:
        response = await litellm.acompletion(**kwargs)
        if kwargs.get("stream"):
            async for _chunk in response:
                pass
        for _ in range(200):
            if capture.calls:
                break
            await asyncio.sleep(0.01)  # LiteLLM runs callbacks on its logging worker, after the call
    finally:
        litellm.logging_callback_manager.remove_callback_from_all_lists(capture)
    assert capture.calls, "LiteLLM called no success callback"
    return capture.calls[-1]


def _litellm_mapping(kwargs: dict[str, Any], response: Any) -> dict[str, Any]:
    span = _Span()
    LangfuseOtelLogger.set_langfuse_otel_attributes(span, kwargs, response)
    return span.attributes


def _comparable(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        return json.loads(value)
    return value


def _assert_same_langfuse_fields(kwargs: dict[str, Any], response: Any) -> dict[str, Any]:
    ours = generation_attributes(kwargs, response)
    theirs = _litellm_mapping(kwargs, response)
    for key in LANGFUSE_FIELDS:
        assert _comparable(ours.get(key)) == _comparable(theirs.get(key)), key
    return ours


async def test_a_plain_answer_maps_like_litellm() -> None:
    kwargs, response = await _callback("It is sunny.")
    ours = _assert_same_langfuse_fields(kwargs, response)
    assert json.loads(ours["langfuse.observation.output"]) == {"role": "assistant", "content": "It is sunny."}
    assert json.loads(ours["langfuse.trace.tags"]) == METADATA["tags"]
    assert ours["session.id"] == "s-1"
    assert ours["user.id"] == "u-1"
    assert "metadata" not in ours, "LiteLLM's proxy-key metadata is not exported"


async def test_tool_calls_and_tools_map_like_litellm() -> None:
    answer = litellm.ModelResponse(
        choices=[
            {
                "finish_reason": "tool_calls",
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call-1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                        }
                    ],
                },
            }
        ],
        model="fake-model",
    )
    kwargs, response = await _callback(answer, tools=TOOLS)
    ours = _assert_same_langfuse_fields(kwargs, response)
    [call] = json.loads(ours["langfuse.observation.output"])
    assert call["name"] == "weather"
    assert call["call_id"] == "call-1"
    assert call["arguments"] == {"city": "Paris"}
    assert json.loads(ours["llm.invocation_parameters"])["tools"] == TOOLS


async def test_an_assembled_stream_maps_like_litellm() -> None:
    kwargs, response = await _callback("Streamed answer.", stream=True)
    ours = _assert_same_langfuse_fields(kwargs, response)
    assert ours["llm.is_streaming"] == "True"


async def test_a_failed_call_has_its_input_and_no_output() -> None:
    kwargs, _ = await _callback("unused")
    ours = generation_attributes(kwargs, None)
    assert json.loads(ours["langfuse.observation.input"]) == MESSAGES
    assert "langfuse.observation.output" not in ours
    assert "llm.token_count.total" not in ours
    assert ours["langfuse.observation.type"] == "generation"


def test_a_response_that_cannot_be_mapped_keeps_the_trace_fields(caplog: pytest.LogCaptureFixture) -> None:
    class Unreadable:
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError(f"secret {key}")

    kwargs = {"litellm_params": {"metadata": json.loads(json.dumps(METADATA))}, "messages": MESSAGES}
    ours = generation_attributes(kwargs, Unreadable())
    assert json.loads(ours["langfuse.trace.tags"]) == METADATA["tags"]
    assert ours["langfuse.observation.type"] == "generation"
    assert "RuntimeError" in caplog.text
    assert "secret" not in caplog.text


def test_the_environment_comes_from_the_calls_langfuse_parameters() -> None:
    ours = generation_attributes({"standard_callback_dynamic_params": {"langfuse_environment": "staging"}}, None)
    assert ours["langfuse.environment"] == "staging"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({1: "non-string key"}, {"1": "non-string key"}),
        ({"big": 2**70}, {"big": 2**70}),
        ({"when": object}, {"when": str(object)}),
    ],
)
def test_values_orjson_refuses_still_become_json(value: Any, expected: Any) -> None:
    assert json.loads(to_json(value)) == expected
