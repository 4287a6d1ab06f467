"""The attributes of a completion's Langfuse generation span, written by the gateway.

LiteLLM's ``langfuse_otel`` logger fills a span through two mappings, OpenInference's and then
Langfuse's. Together they serialise the messages twice with a pure-Python, recursion-guarded
JSON walk, repeat the output three times (``output.value``, ``llm.output_messages.*``,
``langfuse.observation.output``), repeat every tool and model parameter next to
``llm.invocation_parameters``, and add a 1.5 kB ``metadata`` attribute of LiteLLM proxy fields
that are always null in SDK use. Building, redacting and exporting all of that was the largest
per-request cost the gateway adds on top of the SDK.

This module writes what Langfuse reads, once, with orjson, under the same attribute names:

* the observation: ``langfuse.observation.type``/``input``/``output``, the model
  (``llm.model_name``, ``llm.response.model``), parameters (``llm.invocation_parameters``,
  tools included), usage (``llm.token_count.*``), cost (``llm.cost.total``);
* the trace: ``langfuse.trace.tags``/``name``/``metadata``, ``session.id``, ``user.id`` and
  ``langfuse.environment``, from the metadata the gateway gave the call;
* a few scalars Langfuse keeps in the observation's metadata: provider, call type, streaming
  flag, response id, and ``openinference.span.kind``.

Every endpoint's call is one such generation. LiteLLM's callback gives each its input as chat
messages (embeddings: the texts embedded); the output is read from the endpoint's own answer:
a Responses answer's output items, a text completion's text, and for embeddings a summary (how
many vectors, of how many dimensions), never the vectors.

Errors are not written here: LiteLLM records them on the span itself (``error.*`` attributes and
an ``exception`` event) after this mapping.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping
from typing import Any

import orjson

logger = logging.getLogger("proxy_core.tracing")

# The LiteLLM ``metadata`` keys the gateway sets on every call, and Langfuse's name for each.
TRACE_METADATA_ATTRIBUTES = {
    "tags": "langfuse.trace.tags",
    "trace_name": "langfuse.trace.name",
    "trace_metadata": "langfuse.trace.metadata",
    "session_id": "session.id",
    "trace_user_id": "user.id",
}
_USAGE_ATTRIBUTES = {
    "prompt_tokens": "llm.token_count.prompt",
    "completion_tokens": "llm.token_count.completion",
    "total_tokens": "llm.token_count.total",
    "input_tokens": "llm.token_count.prompt",  # Responses and Anthropic names
    "output_tokens": "llm.token_count.completion",
}
EMBEDDING_CALLS = frozenset({"aembedding", "embedding"})
TEXT_COMPLETION_CALLS = frozenset({"atext_completion", "text_completion"})
RESPONSES_CALLS = frozenset({"aresponses", "responses"})


def to_json(value: Any) -> str:
    """JSON text of ``value``; orjson first, the standard library for what orjson refuses.

    orjson refuses non-string keys and integers beyond 64 bits, which a provider's extra
    parameters may carry; anything else that is not JSON is written as its ``str``.
    """
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return json.dumps(value, default=str)


def generation_attributes(kwargs: Mapping[str, Any], response: Any) -> dict[str, Any]:
    """The span attributes of one call from LiteLLM's callback ``kwargs`` and its response.

    ``response`` is the provider's answer (for a stream, the assembled one), or None when the
    call failed. A call whose data cannot be mapped still gets its trace fields: without its
    ``insertion_id`` tag, ``/traces`` would wait for a trace that never shows up. Only the
    exception's type is logged, since its text may quote the data.
    """
    try:
        return _all_attributes(kwargs, response)
    except Exception as exc:
        logger.warning(
            "a span's attributes could not be mapped (%s); it keeps its trace fields only", type(exc).__name__
        )
        attributes: dict[str, Any] = {"langfuse.observation.type": "generation"}
        _trace_attributes(attributes, (kwargs.get("litellm_params") or {}).get("metadata"))
        return attributes


def _all_attributes(kwargs: Mapping[str, Any], response: Any) -> dict[str, Any]:
    litellm_params: Mapping[str, Any] = kwargs.get("litellm_params") or {}
    optional_params: Mapping[str, Any] = kwargs.get("optional_params") or {}
    payload: Mapping[str, Any] = kwargs.get("standard_logging_object") or {}
    # A Responses stream asked for in the body (``litellm_endpoints``) was called with
    # ``stream=False``: LiteLLM marks the call streamed (``stream``) once its answer is a stream.
    streaming = bool(optional_params.get("stream") or kwargs.get("stream"))
    attributes: dict[str, Any] = {
        "langfuse.observation.type": "generation",
        "openinference.span.kind": "LLM",
        "llm.provider": litellm_params.get("custom_llm_provider") or "Unknown",
        "llm.is_streaming": str(streaming),
    }
    _set_if(attributes, "llm.model_name", kwargs.get("model"))
    _set_if(attributes, "llm.request.type", payload.get("call_type"))
    parameters = payload.get("model_parameters")
    if parameters and streaming and parameters.get("stream") is False:
        parameters = {**parameters, "stream": True}
    if parameters:
        attributes["llm.invocation_parameters"] = to_json(parameters)
    call_type = payload.get("call_type")
    messages = kwargs.get("input") if call_type in EMBEDDING_CALLS else kwargs.get("messages")
    if messages:
        attributes["langfuse.observation.input"] = to_json(messages)
    cost = payload.get("response_cost")
    if isinstance(cost, int | float) and not isinstance(cost, bool):
        attributes["llm.cost.total"] = float(cost)
    if response is not None and hasattr(response, "get"):
        _response_attributes(attributes, response, call_type)
    _trace_attributes(attributes, litellm_params.get("metadata"))
    dynamic = kwargs.get("standard_callback_dynamic_params") or {}
    _set_if(attributes, "langfuse.environment", dynamic.get("langfuse_environment"))
    return attributes


def _set_if(attributes: dict[str, Any], key: str, value: Any) -> None:
    if value:
        attributes[key] = value


def _response_attributes(attributes: dict[str, Any], response: Any, call_type: Any) -> None:
    _set_if(attributes, "llm.response.id", response.get("id"))
    _set_if(attributes, "llm.response.model", response.get("model"))
    usage = response.get("usage")
    if usage is not None and hasattr(usage, "get"):
        for field, key in _USAGE_ATTRIBUTES.items():
            count = usage.get(field)
            if isinstance(count, int):
                attributes[key] = count
    output: Any
    if call_type in EMBEDDING_CALLS:
        output = _embedding_summary(response)
    elif call_type in RESPONSES_CALLS:
        output = _responses_output(response)
    elif call_type in TEXT_COMPLETION_CALLS:
        output = _completion_text(response)
    else:
        output = _output(response)
    if output is not None:
        attributes["langfuse.observation.output"] = to_json(output)


def _embedding_summary(response: Any) -> dict[str, Any]:
    """How many vectors of how many dimensions: the vectors themselves are no trace's reading."""
    data = response.get("data") or []
    first = data[0].get("embedding") if data and hasattr(data[0], "get") else None
    if isinstance(first, str):  # base64 of little-endian float32
        dimensions = len(base64.b64decode(first)) // 4
    else:
        dimensions = len(first) if isinstance(first, list) else 0
    return {"embeddings": len(data), "dimensions": dimensions}


def _completion_text(response: Any) -> str | None:
    """A text completion's text (a streamed one arrives assembled as a chat message)."""
    choices = response.get("choices") or []
    if not choices:
        return None
    text = choices[0].get("text")
    if text is None:
        message = choices[0].get("message") or {}
        text = message.get("content")
    return text if isinstance(text, str) else None


def _responses_output(response: Any) -> Any:
    """A Responses answer as Langfuse shows a chat one: its function calls, or ``{role, content}``.

    The partial answer of an abandoned stream is a chat completion already: it maps as one.
    """
    if response.get("output") is None and response.get("choices"):
        return _output(response)
    items = [item if isinstance(item, dict) else item.model_dump() for item in response.get("output") or []]
    calls = [item for item in items if item.get("type") == "function_call"]
    if calls:
        return [
            {
                "id": item.get("id", ""),
                "name": item.get("name", ""),
                "call_id": item.get("call_id", ""),
                "type": "function_call",
                "arguments": _arguments(item.get("arguments", "{}")),
            }
            for item in calls
        ]
    texts = [
        part.get("text", "")
        for item in items
        if item.get("type") == "message"
        for part in item.get("content") or []
        if isinstance(part, dict) and part.get("type") == "output_text"
    ]
    return {"role": "assistant", "content": "".join(texts)} if texts else None


def _arguments(arguments: Any) -> Any:
    if isinstance(arguments, str):
        try:
            return orjson.loads(arguments)
        except orjson.JSONDecodeError:
            return {}
    return arguments


def _output(response: Any) -> Any:
    """The first choice as Langfuse shows it: its tool calls, or ``{role, content}``."""
    choices = response.get("choices") or []
    if not choices:
        return None
    message = choices[0].get("message") or {}
    tool_calls = message.get("tool_calls")
    if tool_calls:
        return [_tool_call(call, response.get("id", "")) for call in tool_calls]
    output = {}
    if message.get("role"):
        output["role"] = message.get("role")
    if message.get("content") is not None:
        output["content"] = message.get("content")
    return output or None


def _tool_call(call: Any, response_id: str) -> dict[str, Any]:
    function = call.get("function") or {}
    arguments = function.get("arguments", "{}")
    if isinstance(arguments, str):
        try:
            arguments = orjson.loads(arguments)
        except orjson.JSONDecodeError:
            arguments = {}
    return {
        "id": response_id,
        "name": function.get("name", ""),
        "call_id": call.get("id", ""),
        "type": "function_call",
        "arguments": arguments,
    }


def _trace_attributes(attributes: dict[str, Any], metadata: Any) -> None:
    if not isinstance(metadata, Mapping):
        return
    for field, key in TRACE_METADATA_ATTRIBUTES.items():
        value = metadata.get(field)
        if value is None:
            continue
        attributes[key] = to_json(value) if isinstance(value, list | dict) else value
