"""Prompts managed in Langfuse: fetched with the project's keys, cached, compiled, prepended.

A request can name a prompt (``x-prompt-name``, optionally ``x-prompt-version`` or
``x-prompt-label``) instead of carrying its system message, so prompts change without deploys.
Prompts are cached for ``ttl_s`` (no network call per request) and the last good version is
served when Langfuse cannot be reached; only a prompt never fetched fails with Langfuse down.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from proxy_core.errors import InvalidRequestError, NotFoundError, UpstreamTimeoutError
from proxy_core.retry import RetryableError
from proxy_core.services.llm import LangfuseTarget

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
FETCH_DEADLINE_S = 5.0
MAX_NAME = 256


@dataclass(frozen=True, slots=True)
class PromptRef:
    """Which prompt a request asked for."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    name: str
    version: int
    type: str
    prompt: Any


class PromptSource(Protocol):
    async def fetch_prompt(self, target: LangfuseTarget, ref: PromptRef, *, deadline: float) -> dict[str, Any] | None:
        """The prompt document, or None when Langfuse has no such prompt (404)."""
        ...


def prompt_ref(headers: Mapping[str, str]) -> PromptRef | None:
    """The prompt named by the request headers, validated; None when none is named."""
    name = headers.get("x-prompt-name")
    if name is None:
        return None
    if not 0 < len(name) <= MAX_NAME or any(ord(ch) < 0x20 for ch in name):
        raise InvalidRequestError("Invalid x-prompt-name header.", param="x-prompt-name", code="invalid_header")
    version_text, label = headers.get("x-prompt-version"), headers.get("x-prompt-label")
    if version_text is not None and label is not None:
        raise InvalidRequestError(
            "Send x-prompt-version or x-prompt-label, not both.", param="x-prompt-version", code="invalid_header"
        )
    version = None
    if version_text is not None:
        # isdigit() alone takes '²', which int() refuses: ASCII digits only.
        if not (version_text.isascii() and version_text.isdigit()) or int(version_text) < 1:
            raise InvalidRequestError(
                "x-prompt-version must be a positive integer.", param="x-prompt-version", code="invalid_header"
            )
        version = int(version_text)
    return PromptRef(name, version, label)


def _compile_text(text: str, variables: Mapping[str, Any], ref: PromptRef) -> str:
    missing = sorted({m.group(1) for m in VARIABLE.finditer(text)} - set(variables))
    if missing:
        raise InvalidRequestError(
            f"Prompt {ref.name!r} needs variable(s) {', '.join(missing)}; send them in 'prompt_variables'.",
            param="prompt_variables",
            code="prompt_variable_missing",
        )
    return VARIABLE.sub(lambda m: str(variables[m.group(1)]), text)


def compile_messages(prompt: Prompt, variables: Mapping[str, Any], ref: PromptRef) -> list[dict[str, Any]]:
    """The prompt as chat messages to put before the request's own."""
    if prompt.type == "chat" and isinstance(prompt.prompt, list):
        return [
            {"role": str(m.get("role", "system")), "content": _compile_text(str(m.get("content", "")), variables, ref)}
            for m in prompt.prompt
            if isinstance(m, dict) and m.get("type", "chatmessage") != "placeholder"
        ]
    return [{"role": "system", "content": _compile_text(str(prompt.prompt), variables, ref)}]


class PromptCache:
    def __init__(self, source: PromptSource, ttl_s: float) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._entries: dict[tuple[str, PromptRef], tuple[Prompt, float]] = {}

    async def get(self, target: LangfuseTarget, ref: PromptRef) -> Prompt:
        key = (target.project_id, ref)
        cached = self._entries.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        try:
            document = await self._source.fetch_prompt(target, ref, deadline=time.monotonic() + FETCH_DEADLINE_S)
        except RetryableError as exc:
            if cached is not None:
                return cached[0]  # Langfuse unreachable: the last good version keeps serving
            raise UpstreamTimeoutError(
                f"Prompt {ref.name!r} could not be fetched from Langfuse: {exc}", code="prompt_unavailable"
            ) from exc
        if document is None:
            raise NotFoundError(f"Prompt {ref.name!r} does not exist.", param="x-prompt-name", code="prompt_not_found")
        prompt = Prompt(
            name=str(document.get("name", ref.name)),
            version=int(document.get("version", 0)),
            type=str(document.get("type", "text")),
            prompt=document.get("prompt", ""),
        )
        self._entries[key] = (prompt, time.monotonic() + self._ttl_s)
        return prompt
