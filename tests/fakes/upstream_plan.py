"""How the fake provider plans one reply: directives in the prompt, content, usage, errors.

Pure functions over a request body; ``upstream`` serves what they plan. Directives such as
``[[status=429]]`` or ``[[chunks=5]]`` in the last user message steer one request's
``Behaviour``; usage counts words, so tests can predict it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = [
    "Behaviour",
    "apply_directives",
    "error_body",
    "format_number",
    "last_user_message_text",
    "message_text",
    "split_content",
    "usage_of",
]


_DIRECTIVE = re.compile(r"\[\[(\w+)(?:=(.*?))?\]\]", re.DOTALL)


_ERROR_KINDS = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("invalid_request_error", "permission_denied"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", "timeout"),
    429: ("requests", "rate_limit_exceeded"),
}


@dataclass
class Behaviour:
    """The resolved plan for answering one completion request."""

    status: int = 200
    retry_after: str | None = None
    delay_ms: float = 0.0
    chunks: int = 3
    chunk_delay_ms: float = 0.0
    cut_after: int | None = None
    hang: bool = False
    content: str | None = None


def format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def apply_directives(plan: Behaviour, text: str) -> str:
    for match in _DIRECTIVE.finditer(text):
        key, value = match.group(1), match.group(2)
        if key == "hang":
            plan.hang = True
        elif key == "content":
            plan.content = value or ""
        elif key == "retry_after":
            plan.retry_after = value
        elif key in ("status", "chunks", "cut_after"):
            setattr(plan, key, int(value or 0))
        elif key in ("delay_ms", "chunk_delay_ms"):
            setattr(plan, key, float(value or 0))
    return _DIRECTIVE.sub("", text).strip()


def message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def last_user_message_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def usage_of(body: dict[str, Any], content: str) -> dict[str, int]:
    prompt = sum(len(message_text(m.get("content")).split()) for m in body.get("messages") or [] if isinstance(m, dict))
    completion = len(content.split())
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def split_content(content: str, parts: int) -> list[str]:
    parts = max(parts, 0)
    if parts == 0:
        return []
    size, extra = divmod(len(content), parts)
    pieces, start = [], 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        pieces.append(content[start:end])
        start = end
    return pieces


def error_body(status: int, message: str) -> bytes:
    """An OpenAI-shaped error document for ``status``."""
    kind, code = _ERROR_KINDS.get(status, ("server_error" if status >= 500 else "api_error", None))
    return orjson.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}})
