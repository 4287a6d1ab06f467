"""Parsing and checking an OpenAI chat-completions body before anything is sent anywhere.

Known OpenAI parameters are passed to LiteLLM by name (so it can translate them per provider);
any other key is provider-specific and travels verbatim in ``extra_body``, so a client can never
reach a LiteLLM control argument by naming it. Keys that would redirect the call or its trace
(``api_base``, ``api_key``, ``langfuse_*`` …) are refused outright.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from proxy_core.errors import InvalidRequestError

OPENAI_PARAMS = frozenset(
    {
        "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
        "max_completion_tokens", "max_tokens", "modalities", "n", "parallel_tool_calls", "prediction",
        "presence_penalty", "prompt_cache_key", "reasoning_effort", "response_format", "safety_identifier",
        "seed", "service_tier", "stop", "store", "stream_options", "temperature", "tool_choice", "tools",
        "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    }
)  # fmt: skip
FORBIDDEN_PARAMS = frozenset(
    {
        "api_base", "base_url", "api_key", "api_version", "custom_llm_provider", "mock_response",
        "extra_headers", "headers", "callbacks", "success_callback", "failure_callback", "no-log",
        "litellm_logging_obj", "litellm_call_id", "litellm_metadata", "organization", "azure_ad_token",
        "input_cost_per_token", "output_cost_per_token", "num_retries", "max_retries", "timeout",
    }
)  # fmt: skip
FORBIDDEN_PREFIXES = ("langfuse_", "litellm_", "aws_", "vertex_")
MESSAGE_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
# Tags the gateway writes itself: ids from the path, and the experiment arm and prompt version a
# trace was served with. A client's tag with one of these prefixes could forge them; it is dropped.
RESERVED_TAG_PREFIXES = (
    "rollout_id:", "insertion_id:", "invocation_id:", "experiment_id:", "run_id:", "row_id:", "project_id:",
    "experiment:", "variant:", "prompt:",
)  # fmt: skip
MAX_TAGS = 64
MAX_TAG_LENGTH = 200
MAX_METADATA_ENTRIES = 64
# OpenAI's part types and the field each carries (other types are provider-specific and pass).
_PART_PAYLOADS = {"text": "text", "image_url": "image_url", "input_audio": "input_audio", "file": "file"}
MAX_CHOICES = 128  # OpenAI's documented range for ``n`` is 1–128
MAX_MODEL_LENGTH = 512
# JSON integers beyond 64 bits arrive as floats; a whole float that large was sent as an integer.
_INT64_LIMIT = 2**63
# A surrogate code point can only reach the decoder as a ``\uD800``–``\uDFFF`` escape (as raw bytes it is
# invalid UTF-8), so a body without one cannot be rescued by the fallback decoder.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass(slots=True)
class ChatRequest:
    """A checked request, split into what goes where.

    Chat sends ``messages``; the other endpoints (``endpoint_requests``) send ``inputs`` in their
    place (``input``, ``prompt``, Anthropic's ``messages`` and ``system`` …).
    """

    model: str
    messages: list[dict[str, Any]]
    stream: bool
    params: dict[str, Any]
    extra_body: dict[str, Any]
    client_tags: list[str] = field(default_factory=list)
    client_metadata: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)


def _bad(message: str, param: str | None) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value" if param else "invalid_json")


def _replace_lone_surrogates(raw: bytes) -> Any:
    """Decode JSON that orjson refused only for a lone ``\\uD83D``-style escape, with U+FFFD in its place.

    The gateway this one replaced accepted such bodies (clients that cut strings at UTF-16 code units
    send them), but a lone surrogate cannot be encoded as UTF-8 for the provider or the trace. The
    standard parser reads it; every surrogate left in the result is lone (pairs were combined), so it
    is replaced in the re-serialized text, which orjson then parses as usual. Whatever else orjson
    refused (``NaN``, depth, a non-UTF-8 body, …) it refuses again, so this accepts nothing more.
    """
    text = json.dumps(json.loads(raw.decode("utf-8")), ensure_ascii=False)
    return orjson.loads(_SURROGATE.sub("\ufffd", text))


def _decode_json(raw: bytes) -> Any:
    """orjson on the hot path; the standard parser only for a body orjson refused that has a surrogate escape."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        error = _bad(f"The request body is not valid JSON: {exc.msg}.", None)
    if _SURROGATE_ESCAPE.search(raw) is None:
        raise error
    try:
        return _replace_lone_surrogates(raw)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise error from None


def parse_json_body(raw: bytes) -> dict[str, Any]:
    """Decode the body; anything but a JSON object is a 400."""
    if not raw:
        raise _bad("The request body is empty; expected a JSON object.", None)
    body = _decode_json(raw)
    if not isinstance(body, dict):
        raise _bad("The request body must be a JSON object.", None)
    return body


def _check_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array.", "messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(f"{param} must be an object.", param)
        role = message.get("role")
        if role not in MESSAGE_ROLES:
            raise _bad(f"{param}.role must be one of {sorted(MESSAGE_ROLES)}.", f"{param}.role")
        _check_content(message.get("content"), f"{param}.content")
    return messages


def _check_content(content: Any, param: str) -> None:
    """A string, null, or parts that are objects with a ``type``: LiteLLM fails on anything else as a 5xx."""
    if content is None or isinstance(content, str):
        return
    if not isinstance(content, list):
        raise _bad(f"{param} must be a string, an array of parts, or null.", param)
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise _bad(f"{part_param} must be an object with a 'type'.", part_param)
        kind = part.get("type")
        if not isinstance(kind, str):
            raise _bad(f"{part_param}.type must be a string.", f"{part_param}.type")
        payload = _PART_PAYLOADS.get(kind)
        if payload is not None and part.get(payload) is None:
            raise _bad(f"{part_param}.{payload} is required in a part of type '{kind}'.", f"{part_param}.{payload}")


def _check_known_types(body: Mapping[str, Any]) -> None:
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream")
    for name in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _bad(f"'{name}' must be a number.", name)
    for name in ("n", "max_tokens", "max_completion_tokens", "seed", "top_logprobs"):
        value = body.get(name)
        if isinstance(value, float) and value.is_integer() and abs(value) >= _INT64_LIMIT:
            raise _bad(f"'{name}' must be an integer within 64 bits.", name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise _bad(f"'{name}' must be an integer.", name)
    if body.get("tools") is not None and not isinstance(body["tools"], list):
        raise _bad("'tools' must be an array.", "tools")
    if body.get("user") is not None and not isinstance(body["user"], str):
        raise _bad("'user' must be a string.", "user")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _bad("'stream_options' must be an object.", "stream_options")
    if options and options.get("include_usage") is not None and not isinstance(options["include_usage"], bool):
        raise _bad("'stream_options.include_usage' must be a boolean.", "stream_options.include_usage")
    _check_response_format(body.get("response_format"))


def _check_response_format(response_format: Any) -> None:
    """An object with a ``type`` (``"json"`` alone makes LiteLLM fail as a 5xx); null means not set."""
    if response_format is None:
        return
    if not isinstance(response_format, dict):
        raise _bad("'response_format' must be an object with a 'type'.", "response_format")
    if not isinstance(response_format.get("type"), str):
        raise _bad("'response_format.type' must be a string.", "response_format.type")


def _check_ranges(body: Mapping[str, Any]) -> None:
    """Bounds of integers already known to be integers; providers differ on maximum tokens, so none is set."""
    n = body.get("n")
    if n is not None and not 1 <= n <= MAX_CHOICES:
        raise _bad(f"'n' must be an integer from 1 to {MAX_CHOICES}.", "n")
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and value < 1:
            raise _bad(f"'{name}' must be a positive integer.", name)


def _split_metadata(metadata: Any) -> tuple[list[str], dict[str, Any]]:
    """Client tags (minus the gateway's reserved prefixes) and the remaining scalar metadata."""
    if metadata is None:
        return [], {}
    if not isinstance(metadata, dict):
        raise _bad("'metadata' must be an object.", "metadata")
    tags = metadata.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise _bad("'metadata.tags' must be an array of strings.", "metadata.tags")
    if len(tags) > MAX_TAGS or any(len(tag) > MAX_TAG_LENGTH or not tag for tag in tags):
        raise _bad(f"'metadata.tags' allows {MAX_TAGS} tags of 1–{MAX_TAG_LENGTH} characters.", "metadata.tags")
    kept = [tag for tag in dict.fromkeys(tags) if not tag.startswith(RESERVED_TAG_PREFIXES)]
    extra = {key: value for key, value in metadata.items() if key != "tags"}
    if len(extra) > MAX_METADATA_ENTRIES:
        raise _bad(f"'metadata' allows at most {MAX_METADATA_ENTRIES} entries.", "metadata")
    for key, value in extra.items():
        if not isinstance(value, str | int | float | bool) and value is not None:
            raise _bad(f"'metadata.{key}' must be a string, number or boolean.", f"metadata.{key}")
    return kept, extra


_CHAT_FIELDS = frozenset({"model", "messages", "stream", "metadata"})


def split_params(
    body: Mapping[str, Any], taken: frozenset[str] | set[str], known: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body's fields beyond ``taken``: the ``known`` ones as LiteLLM parameters (nulls left
    out), the rest as ``extra_body``; a field only the gateway may set is refused with a 400."""
    params: dict[str, Any] = {}
    extra_body: dict[str, Any] = {}
    for key, value in body.items():
        if key in taken:
            continue
        if key in FORBIDDEN_PARAMS or key.startswith(FORBIDDEN_PREFIXES):
            raise _bad(f"'{key}' cannot be set by clients of this gateway.", key)
        if key in known:
            if value is not None:
                params[key] = value
        else:
            extra_body[key] = value
    return params, extra_body


def parse_chat_request(body: dict[str, Any]) -> ChatRequest:
    """Validate ``body`` and split it into LiteLLM arguments, provider extras and gateway metadata."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("'model' must be a non-empty string.", "model")
    if len(model) > MAX_MODEL_LENGTH:
        raise _bad(f"'model' must be at most {MAX_MODEL_LENGTH} characters.", "model")
    messages = _check_messages(body.get("messages"))
    _check_known_types(body)
    _check_ranges(body)
    params, extra_body = split_params(body, _CHAT_FIELDS, OPENAI_PARAMS)
    tags, client_metadata = _split_metadata(body.get("metadata"))
    return ChatRequest(
        model=model,
        messages=messages,
        stream=bool(body.get("stream")),
        params=params,
        extra_body=extra_body,
        client_tags=tags,
        client_metadata=client_metadata,
    )
