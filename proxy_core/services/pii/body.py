"""Redaction of an OpenAI chat-completions body before it reaches LiteLLM, traces or logs.

Every string the provider or a trace can see is rewritten, except values that are structure
rather than text. Top-level fields fall into three groups:

* parameters that hold only numbers, booleans, enum words or references to declared names
  (``model``, ``temperature``, ``seed``, ``tool_choice`` …) pass through without being looked at;
* fields with a known layout are walked by rules that keep their structure: messages, predicted
  output, and declarations (``tools``, ``functions``, ``response_format``, see ``declarations``);
* every other field has all of its strings redacted: ``user``, ``metadata``, ``stop``,
  ``safety_identifier``, ``prompt_cache_key`` and any provider-specific extra key, so a field the
  gateway does not know cannot carry PII past it.

A ``stop`` sequence holding PII becomes its placeholder: a stop on the original value would hand
it to the provider, and the model, shown only the placeholder, writes the placeholder. A body with
no declarations and no extra keys costs one set lookup per top-level key beyond the walk of its
text. The input is never mutated: every container on the path to a rewritten string is copied,
and untouched values are shared with it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .declarations import redact_declaration, redact_declarations
from .engine import PiiEngineError, PiiRedactor, PlaceholderMemo
from .values import redact_text_value

_STRUCTURAL_MESSAGE_KEYS = frozenset({"role", "tool_call_id"})
_TEXT_MESSAGE_KEYS = frozenset({"refusal", "reasoning_content"})
# Parameters with no free text in them; ``messages`` is walked first, on its own.
_PASSED_THROUGH = frozenset(
    {
        "messages", "model", "stream", "audio", "frequency_penalty", "function_call", "logit_bias",
        "logprobs", "max_completion_tokens", "max_tokens", "modalities", "n", "parallel_tool_calls",
        "presence_penalty", "reasoning_effort", "seed", "service_tier", "store", "stream_options",
        "temperature", "tool_choice", "top_logprobs", "top_p", "verbosity",
    }
)  # fmt: skip

FieldRedaction = Callable[[Any, PiiRedactor, PlaceholderMemo], Any]


def redact_chat_body(body: dict[str, Any], redactor: PiiRedactor, memo: PlaceholderMemo) -> dict[str, Any]:
    """A copy of ``body`` in which every string a provider or a trace can see is redacted.

    Messages go first, so placeholders are numbered in the order the conversation reads whatever
    the order of the client's keys. Raises ``PiiEngineError`` on any unexpected failure (including
    a body too deeply nested to walk), so the caller can refuse the request instead of forwarding
    it unscrubbed.
    """
    try:
        redacted = dict(body)
        if "messages" in body:
            redacted["messages"] = _redact_messages(body["messages"], redactor, memo)
        for key, value in body.items():
            if key not in _PASSED_THROUGH:
                redacted[key] = _FIELD_REDACTIONS.get(key, redact_text_value)(value, redactor, memo)
        return redacted
    except PiiEngineError:
        raise
    except Exception as exc:
        raise PiiEngineError(f"chat body redaction failed: {type(exc).__name__}") from None


def _redact_prediction(prediction: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """Predicted output is text the provider sees, shaped like message content."""
    if not isinstance(prediction, dict):
        return redact_text_value(prediction, redactor, memo)
    if "content" not in prediction:
        return prediction
    return {**prediction, "content": redact_content(prediction["content"], redactor, memo)}


def _redact_messages(messages: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    if not isinstance(messages, list):
        return redact_text_value(messages, redactor, memo)
    return [redact_message(message, redactor, memo) for message in messages]


def redact_message(message: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """One chat message (request or assistant response) with its text fields redacted.

    A message of unexpected shape has all of its strings redacted: an unknown layout must not
    become a way around the scrubber.
    """
    if not isinstance(message, dict):
        return redact_text_value(message, redactor, memo)
    redacted = dict(message)
    for key, value in message.items():
        if key == "content":
            redacted[key] = redact_content(value, redactor, memo)
        elif key == "tool_calls":
            redacted[key] = _redact_tool_calls(value, redactor, memo)
        elif key == "name" and isinstance(value, str):
            redacted[key] = _redact_name(value, redactor, memo)
        elif key == "function_call":
            redacted[key] = _redact_function(value, redactor, memo)
        elif _is_message_text(key, value):
            redacted[key] = redact_text_value(value, redactor, memo)
    return redacted


def _is_message_text(key: str, value: Any) -> bool:
    """Known text fields, and any other string field that is not an id or a role."""
    if key in _TEXT_MESSAGE_KEYS:
        return True
    return isinstance(value, str) and key not in _STRUCTURAL_MESSAGE_KEYS


def _redact_name(name: str, redactor: PiiRedactor, memo: PlaceholderMemo) -> str:
    """A participant name; providers accept only ``[A-Za-z0-9_-]`` there, so brackets are dropped.

    ``caller-312-555-0147`` becomes ``caller-REDACTED_PHONE_1`` rather than a name the provider
    would reject with a 400.
    """
    redacted = redactor.redact(name, memo)
    return name if redacted is name else redacted.replace("<", "").replace(">", "")


def redact_content(content: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """Message content: a string, or a list of parts whose ``text`` fields are redacted.

    Non-text parts (images, audio, files) are kept as they are; their payloads are binary data in
    base64 or URLs, where the identifier patterns would only corrupt them.
    """
    if isinstance(content, str):
        return redactor.redact(content, memo)
    if content is None:
        return None
    if not isinstance(content, list):
        return redact_text_value(content, redactor, memo)
    return [_redact_part(part, redactor, memo) for part in content]


def _redact_part(part: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    if isinstance(part, str):
        return redactor.redact(part, memo)
    if not isinstance(part, dict) or not isinstance(part.get("text"), str):
        return part
    return {**part, "text": redactor.redact(part["text"], memo)}


def _redact_tool_calls(tool_calls: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    if not isinstance(tool_calls, list):
        return redact_text_value(tool_calls, redactor, memo)
    return [_redact_tool_call(call, redactor, memo) for call in tool_calls]


def _redact_tool_call(call: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    if not isinstance(call, dict) or "function" not in call:
        return call
    return {**call, "function": _redact_function(call["function"], redactor, memo)}


def _redact_function(function: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """Only ``arguments`` is rewritten: the name must keep matching the declared tool."""
    if not isinstance(function, dict) or not isinstance(function.get("arguments"), str):
        return function
    return {**function, "arguments": redact_tool_arguments(function["arguments"], redactor, memo)}


def redact_tool_arguments(arguments: str, redactor: PiiRedactor, memo: PlaceholderMemo) -> str:
    """Tool-call arguments (a JSON string) with the JSON's string and integer leaves redacted.

    Parsing first means escaped characters (``"\\u0032"``) cannot hide an identifier, and the
    result stays valid JSON. Text that is not JSON is redacted as plain text; arguments with
    nothing to redact come back unchanged, formatting included.
    """
    if not redactor.may_contain_pii(arguments):
        return arguments
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return redactor.redact(arguments, memo)
    redacted = redact_text_value(parsed, redactor, memo)
    if redacted == parsed:
        return arguments
    return json.dumps(redacted, ensure_ascii=False)


_FIELD_REDACTIONS: dict[str, FieldRedaction] = {
    "prediction": _redact_prediction,
    "tools": redact_declarations,
    "functions": redact_declarations,
    "response_format": redact_declaration,
}
