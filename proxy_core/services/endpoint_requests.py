"""Parsing and checking the bodies of the endpoints other than chat, before anything is sent anywhere.

Each endpoint names the fields LiteLLM takes by name (its known parameters), checks their types
and ranges, and splits the body as chat does: the input fields (``input``, ``prompt``, Anthropic's
``messages``) into ``inputs``, known parameters into ``params``, anything else, provider-specific,
into ``extra_body``. Keys that would redirect the call or its trace are refused on every
endpoint, so a client can never reach a LiteLLM control argument by naming it.

``metadata`` means what the endpoint's own API says: on Responses and Anthropic messages it is a
field the provider stores (strings; ``user_id``), sent on as the client gave it; on embeddings
and text completions, which have no such field, it is the gateway's channel for trace tags and
metadata, as on chat.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from proxy_core.services.chat_request import (
    MAX_CHOICES,
    MAX_MODEL_LENGTH,
    ChatRequest,
    _bad,
    _check_known_types,
    _split_metadata,
    split_params,
)

RESPONSES_PARAMS = frozenset(
    {
        "background", "conversation", "include", "instructions", "max_output_tokens", "max_tool_calls",
        "metadata", "parallel_tool_calls", "previous_response_id", "prompt", "prompt_cache_key", "reasoning",
        "safety_identifier", "service_tier", "store", "stream_options", "temperature", "text", "tool_choice",
        "tools", "top_logprobs", "top_p", "truncation", "user",
    }
)  # fmt: skip
EMBEDDING_PARAMS = frozenset({"dimensions", "encoding_format", "user"})
TEXT_COMPLETION_PARAMS = frozenset(
    {
        "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens", "n", "presence_penalty",
        "seed", "stop", "stream_options", "suffix", "temperature", "top_p", "user",
    }
)  # fmt: skip
MESSAGES_PARAMS = frozenset(
    {
        "max_tokens", "metadata", "service_tier", "stop_sequences", "system", "temperature", "thinking",
        "tool_choice", "tools", "top_k", "top_p",
    }
)  # fmt: skip
ANTHROPIC_ROLES = frozenset({"user", "assistant"})
MAX_LOGPROBS = 5  # OpenAI's documented maximum for a text completion's ``logprobs``
MAX_PROVIDER_METADATA = 16  # OpenAI's limit of key-value pairs on a response


def _check_model(body: Mapping[str, Any]) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _bad("'model' must be a non-empty string.", "model")
    if len(model) > MAX_MODEL_LENGTH:
        raise _bad(f"'model' must be at most {MAX_MODEL_LENGTH} characters.", "model")
    return model


def _split(
    body: dict[str, Any], model: str, inputs: tuple[str, ...], known: frozenset[str], *, gateway_metadata: bool
) -> ChatRequest:
    """The body as a ``ChatRequest``: ``inputs`` fields, known ``params``, the rest ``extra_body``."""
    taken = {"model", "stream", *inputs}
    if gateway_metadata:
        taken.add("metadata")
    params, extra_body = split_params(body, taken, known)
    tags, client_metadata = _split_metadata(body.get("metadata")) if gateway_metadata else ([], {})
    return ChatRequest(
        model=model,
        messages=[],
        stream=bool(body.get("stream")),
        params=params,
        extra_body=extra_body,
        client_tags=tags,
        client_metadata=client_metadata,
        inputs={name: body[name] for name in inputs if name in body},
    )


def _positive_int(body: Mapping[str, Any], name: str, *, required: bool = False) -> None:
    value = body.get(name)
    if value is None and not required:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(f"'{name}' must be a positive integer.", name)


def _typed(body: Mapping[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> None:
    value = body.get(name)
    if value is not None and ((isinstance(value, bool) and bool not in _as_tuple(kind)) or not isinstance(value, kind)):
        raise _bad(f"'{name}' must be {what}.", name)


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _check_parts(content: Any, param: str, *, text_key: str = "text") -> None:
    """A string, or a non-empty array of objects each with a string ``type``."""
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise _bad(f"{param} must be a string or a non-empty array of content blocks.", param)
    for index, part in enumerate(content):
        part_param = f"{param}[{index}]"
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(f"{part_param} must be an object with a string 'type'.", f"{part_param}.type")
        if part["type"] in ("text", "input_text", "output_text") and not isinstance(part.get(text_key), str):
            raise _bad(f"{part_param}.{text_key} must be a string.", f"{part_param}.{text_key}")


def _check_provider_metadata(metadata: Any) -> None:
    """The Responses API's own ``metadata``: at most 16 string values, stored by the provider."""
    if metadata is None:
        return
    if not isinstance(metadata, dict) or len(metadata) > MAX_PROVIDER_METADATA:
        raise _bad(f"'metadata' must be an object of at most {MAX_PROVIDER_METADATA} entries.", "metadata")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise _bad(f"'metadata.{key}' must be a string.", f"metadata.{key}")


def parse_responses_request(body: dict[str, Any]) -> ChatRequest:
    """``POST /responses``: ``input`` is a string or an array of input items."""
    model = _check_model(body)
    given = body.get("input")
    if isinstance(given, str):
        if not given:
            raise _bad("'input' must not be empty.", "input")
    elif isinstance(given, list) and given:
        for index, item in enumerate(given):
            if not isinstance(item, dict):
                raise _bad(f"input[{index}] must be an object.", f"input[{index}]")
            if "content" in item:
                _check_parts(item["content"], f"input[{index}].content")
    else:
        raise _bad("'input' must be a non-empty string or a non-empty array of input items.", "input")
    _check_known_types(body)
    _positive_int(body, "max_output_tokens")
    _typed(body, "instructions", str, "a string")
    _typed(body, "previous_response_id", str, "a string")
    for name in ("reasoning", "text", "prompt"):
        _typed(body, name, dict, "an object")
    for name in ("parallel_tool_calls", "store", "background"):
        _typed(body, name, bool, "a boolean")
    include = body.get("include")
    if include is not None and (not isinstance(include, list) or not all(isinstance(x, str) for x in include)):
        raise _bad("'include' must be an array of strings.", "include")
    _check_provider_metadata(body.get("metadata"))
    request = _split(body, model, ("input",), RESPONSES_PARAMS, gateway_metadata=False)
    provider_metadata = request.params.pop("metadata", None)
    if provider_metadata:
        # LiteLLM keeps a Responses call's ``metadata`` for itself: sent verbatim, it reaches the provider.
        request.extra_body["metadata"] = provider_metadata
        request.client_metadata = dict(provider_metadata)
    return request


def _check_embedding_input(given: Any) -> None:
    """A string, or a non-empty array of strings, of token ids, or of arrays of token ids."""
    if isinstance(given, str):
        if given:
            return
    elif isinstance(given, list) and given:
        if all(isinstance(item, str) and item for item in given):
            return
        if all(_is_tokens(item) for item in given) or _is_tokens(given):
            return
    raise _bad(
        "'input' must be a non-empty string or a non-empty array of strings, token ids, or arrays of token ids.",
        "input",
    )


def _is_tokens(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(type(t) is int and t >= 0 for t in value)


def parse_embeddings_request(body: dict[str, Any]) -> ChatRequest:
    """``POST /embeddings``: never streamed; ``encoding_format`` is ``float`` or ``base64``."""
    model = _check_model(body)
    _check_embedding_input(body.get("input"))
    if body.get("stream"):
        raise _bad("Embeddings cannot be streamed.", "stream")
    if body.get("encoding_format") is not None and body["encoding_format"] not in ("float", "base64"):
        raise _bad("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    _positive_int(body, "dimensions")
    _typed(body, "user", str, "a string")
    return _split(body, model, ("input",), EMBEDDING_PARAMS, gateway_metadata=True)


def parse_text_completion_request(body: dict[str, Any]) -> ChatRequest:
    """``POST /completions``: ``prompt`` is text or token ids, as one or a batch."""
    model = _check_model(body)
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        try:
            _check_embedding_input(prompt)
        except Exception:
            raise _bad("'prompt' must be a string, an array of strings, or token ids.", "prompt") from None
    _check_known_types(body)
    n = body.get("n")
    if n is not None and not 1 <= n <= MAX_CHOICES:
        raise _bad(f"'n' must be an integer from 1 to {MAX_CHOICES}.", "n")
    _positive_int(body, "max_tokens")
    _positive_int(body, "best_of")
    logprobs = body.get("logprobs")
    if logprobs is not None and (type(logprobs) is not int or not 0 <= logprobs <= MAX_LOGPROBS):
        raise _bad(f"'logprobs' must be an integer from 0 to {MAX_LOGPROBS}.", "logprobs")
    _typed(body, "echo", bool, "a boolean")
    _typed(body, "suffix", str, "a string")
    return _split(body, model, ("prompt",), TEXT_COMPLETION_PARAMS, gateway_metadata=True)


def parse_messages_request(body: dict[str, Any]) -> ChatRequest:
    """``POST /messages`` (Anthropic): ``max_tokens`` and alternating user/assistant ``messages``."""
    model = _check_model(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("'messages' must be a non-empty array.", "messages")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise _bad(f"{param} must be an object.", param)
        if message.get("role") not in ANTHROPIC_ROLES:
            raise _bad(f"{param}.role must be one of {sorted(ANTHROPIC_ROLES)}.", f"{param}.role")
        _check_parts(message.get("content"), f"{param}.content")
    _positive_int(body, "max_tokens", required=True)
    if body.get("system") is not None:
        _check_parts(body["system"], "system")
    stream = body.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise _bad("'stream' must be a boolean.", "stream")
    for name in ("temperature", "top_p"):
        _typed(body, name, (int, float), "a number")
    _positive_int(body, "top_k")
    stops = body.get("stop_sequences")
    if stops is not None and (not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)):
        raise _bad("'stop_sequences' must be an array of strings.", "stop_sequences")
    _typed(body, "tools", list, "an array")
    for name in ("tool_choice", "thinking", "metadata"):
        _typed(body, name, dict, "an object")
    return _split(body, model, ("messages",), MESSAGES_PARAMS, gateway_metadata=False)


Parser = Callable[[dict[str, Any]], ChatRequest]
