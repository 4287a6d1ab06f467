"""Redaction of an OpenAI chat-completions body before it reaches LiteLLM, traces or logs.

Only the fields that carry conversation text are rewritten: message content and text parts,
message names, tool-call and legacy function-call arguments, predicted output, the ``user`` field
and every string inside ``metadata``. Model names, sampling parameters and tool schemas pass through untouched.
The input is never mutated: every container on the path to a rewritten string is copied, and
untouched values are shared with the input.
"""

from __future__ import annotations

import json
from typing import Any

from .engine import PiiEngineError, PiiRedactor, PlaceholderMemo

_STRUCTURAL_MESSAGE_KEYS = frozenset({"role", "tool_call_id"})
_TEXT_MESSAGE_KEYS = frozenset({"refusal", "reasoning_content"})


def redact_chat_body(body: dict[str, Any], redactor: PiiRedactor, memo: PlaceholderMemo) -> dict[str, Any]:
    """A copy of ``body`` in which every string a provider or a trace can see is redacted.

    Raises ``PiiEngineError`` on any unexpected failure (including a body too deeply nested to
    walk), so the caller can refuse the request instead of forwarding it unscrubbed.
    """
    try:
        redacted = dict(body)
        if "messages" in body:
            redacted["messages"] = _redact_messages(body["messages"], redactor, memo)
        if isinstance(body.get("prediction"), dict):
            redacted["prediction"] = _redact_prediction(body["prediction"], redactor, memo)
        if isinstance(body.get("user"), str):
            redacted["user"] = redactor.redact(body["user"], memo)
        if "metadata" in body:
            redacted["metadata"] = redact_text_value(body["metadata"], redactor, memo)
        return redacted
    except PiiEngineError:
        raise
    except Exception as exc:
        raise PiiEngineError(f"chat body redaction failed: {type(exc).__name__}") from None


def _redact_prediction(prediction: dict[str, Any], redactor: PiiRedactor, memo: PlaceholderMemo) -> dict[str, Any]:
    """Predicted output is text the provider sees, shaped like message content."""
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


def redact_text_value(value: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """``value`` with every string inside it redacted, recursing through lists and dicts.

    Integers are checked too (``{"npi": 1234567893}`` in tool arguments or metadata) and become
    their placeholder string when they match; booleans, floats, ``None`` and dict keys are kept.
    """
    if isinstance(value, str):
        return redactor.redact(value, memo)
    if isinstance(value, dict):
        return {key: redact_text_value(item, redactor, memo) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_text_value(item, redactor, memo) for item in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return _redact_integer(value, redactor, memo)
    return value


def _redact_integer(value: int, redactor: PiiRedactor, memo: PlaceholderMemo) -> int | str:
    text = str(value)
    redacted = redactor.redact(text, memo)
    return value if redacted == text else redacted
