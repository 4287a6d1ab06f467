"""Redaction of the bodies of the Responses API and Anthropic's messages API.

Both carry conversations of another layout than chat's: Responses ``input`` items (messages,
function calls and their outputs, with ids the provider matches them by), and Anthropic content
blocks (text, ``tool_use`` with an ``input`` object, ``tool_result`` with content of its own).
Their text is redacted and their structure kept (ids, roles, types, tool names), as for chat;
every other field goes through the chat body's rules (``redact_chat_body``), which redact any
field they do not know. Embeddings' ``input`` and text completions' ``prompt`` are such unknown
fields: all of their strings are redacted.
"""

from __future__ import annotations

from typing import Any

from .body import redact_chat_body, redact_tool_arguments
from .engine import PiiEngineError, PiiRedactor, PlaceholderMemo
from .values import redact_text_value

# Members of an input item or content block that the provider matches on: never text.
_ITEM_STRUCTURE = frozenset({"id", "call_id", "tool_use_id", "type", "role", "status", "name", "phase"})
# Binary payloads (base64 or URLs) where identifier patterns would only corrupt the data.
_BINARY_BLOCKS = frozenset({"image", "input_image", "input_file", "input_audio", "document", "file"})


def _guarded(redact: Any, body: dict[str, Any], redactor: PiiRedactor, memo: PlaceholderMemo) -> dict[str, Any]:
    try:
        redacted: dict[str, Any] = redact(body, redactor, memo)
        return redacted
    except PiiEngineError:
        raise
    except Exception as exc:
        raise PiiEngineError(f"body redaction failed: {type(exc).__name__}") from None


def redact_responses_body(body: dict[str, Any], redactor: PiiRedactor, memo: PlaceholderMemo) -> dict[str, Any]:
    """A copy of a Responses body with ``input`` walked item by item and every other text redacted."""

    def redact(body: dict[str, Any], redactor: PiiRedactor, memo: PlaceholderMemo) -> dict[str, Any]:
        given = body.get("input")
        redacted = redact_chat_body({k: v for k, v in body.items() if k != "input"}, redactor, memo)
        if isinstance(given, list):
            redacted["input"] = [_redact_item(item, redactor, memo) for item in given]
        elif given is not None:
            redacted["input"] = redact_text_value(given, redactor, memo)
        return redacted

    return _guarded(redact, body, redactor, memo)


def redact_messages_body(body: dict[str, Any], redactor: PiiRedactor, memo: PlaceholderMemo) -> dict[str, Any]:
    """A copy of an Anthropic messages body with its messages' and system prompt's blocks redacted."""

    def redact(body: dict[str, Any], redactor: PiiRedactor, memo: PlaceholderMemo) -> dict[str, Any]:
        messages = body.get("messages")
        rest = {k: v for k, v in body.items() if k not in ("messages", "system")}
        redacted = redact_chat_body(rest, redactor, memo)
        if isinstance(messages, list):
            redacted["messages"] = [_redact_item(message, redactor, memo) for message in messages]
        if "system" in body:
            redacted["system"] = _redact_blocks(body["system"], redactor, memo)
        return redacted

    return _guarded(redact, body, redactor, memo)


def _redact_item(item: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    """A message, input item or content block: its text redacted, its structure kept."""
    if not isinstance(item, dict):
        return redact_text_value(item, redactor, memo)
    if item.get("type") in _BINARY_BLOCKS:
        return item
    redacted: dict[str, Any] = {}
    for key, value in item.items():
        if key in _ITEM_STRUCTURE and isinstance(value, str):
            redacted[key] = value
        elif key == "content":
            redacted[key] = _redact_blocks(value, redactor, memo)
        elif key == "arguments" and isinstance(value, str):
            redacted[key] = redact_tool_arguments(value, redactor, memo)
        else:
            redacted[key] = redact_text_value(value, redactor, memo)
    return redacted


def _redact_blocks(content: Any, redactor: PiiRedactor, memo: PlaceholderMemo) -> Any:
    if isinstance(content, str):
        return redactor.redact(content, memo)
    if isinstance(content, list):
        return [_redact_item(block, redactor, memo) for block in content]
    return redact_text_value(content, redactor, memo)
