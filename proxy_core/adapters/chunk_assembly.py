"""Folding a stream of OpenAI ``chat.completion.chunk`` dicts into the completion they spell out.

A stream relayed chunk by chunk still needs one complete answer at its end: for the trace (its
output, finish reason and usage) and for the rollout's token totals. The assembler keeps only
the running sums a chunk adds to (text per choice, tool-call arguments per index), so its cost
per chunk is a few dict look-ups, not a copy of every chunk.

The text kept is bounded (``TextBudget``, ``MAX_STREAM_TRACE_BYTES``): a stream of tens of
megabytes is still relayed whole to its client, but the gateway keeps only the first bytes for
the trace, and the traced message ends with a marker saying how much was left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_TEXT_FIELDS = ("content", "reasoning_content", "refusal")
DEFAULT_MAX_TEXT_BYTES = 8 * 1024 * 1024


class TextBudget:
    """How many bytes of text (UTF-8) a stream may still keep; what it had to leave out."""

    __slots__ = ("left", "limit", "omitted")

    def __init__(self, limit: int = DEFAULT_MAX_TEXT_BYTES) -> None:
        self.limit = limit
        self.left = limit
        self.omitted = 0

    def take(self, text: str) -> str:
        """``text``, or as much of its start as still fits (``""`` once the budget is spent)."""
        if self.omitted == 0 and len(text) * 4 <= self.left:  # fits whatever its encoding: no need to encode
            self.left -= len(text.encode())
            return text
        encoded = text.encode()
        kept = encoded[: self.left].decode(errors="ignore")  # never half a character
        kept_bytes = len(kept.encode())
        self.left -= kept_bytes
        self.omitted += len(encoded) - kept_bytes
        return kept

    def marker(self) -> str:
        """Appended to a cut message: the trace shows it was cut, and by how much."""
        return f"\n[trace output cut at {self.limit} bytes: {self.omitted} more bytes went to the client untraced]"


_HEADER_FIELDS = ("id", "created", "model", "system_fingerprint")


@dataclass(slots=True)
class _ToolCall:
    id: str | None = None
    type: str = "function"
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def add(self, delta: dict[str, Any], budget: TextBudget) -> None:
        self.id = delta.get("id") or self.id
        self.type = delta.get("type") or self.type
        function = delta.get("function") or {}
        self.name += budget.take(function.get("name") or "")
        if function.get("arguments"):
            self.arguments.append(budget.take(function["arguments"]))

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "function": {"name": self.name, "arguments": "".join(self.arguments)}}


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    texts: dict[str, list[str]] = field(default_factory=dict)
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)
    finish_reason: str | None = None
    cut: bool = False

    def add(self, choice: dict[str, Any], budget: TextBudget) -> None:
        delta = choice.get("delta") or {}
        if delta.get("role"):
            self.role = delta["role"]
        omitted = budget.omitted
        for name in _TEXT_FIELDS:
            text = delta.get(name)
            if text:
                self.texts.setdefault(name, []).append(budget.take(text))
        for call in delta.get("tool_calls") or ():
            self.tool_calls.setdefault(int(call.get("index") or 0), _ToolCall()).add(call, budget)
        self.cut = self.cut or budget.omitted > omitted
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def message(self, budget: TextBudget) -> dict[str, Any]:
        content = "".join(self.texts.get("content", ())) + (budget.marker() if self.cut else "")
        message: dict[str, Any] = {"role": self.role, "content": content or None}
        for name in _TEXT_FIELDS[1:]:
            if name in self.texts:
                message[name] = "".join(self.texts[name])
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index].as_dict() for index in sorted(self.tool_calls)]
        return message


class ChunkAssembler:
    """Accumulates chunks (``add``) and returns the equivalent ``chat.completion`` (``completion``),
    keeping at most ``max_text_bytes`` of text over all choices."""

    def __init__(self, max_text_bytes: int = DEFAULT_MAX_TEXT_BYTES) -> None:
        self.budget = TextBudget(max_text_bytes)
        self._choices: dict[int, _Choice] = {}
        self._header: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.chunks = 0

    def add(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        if not self._header:
            self._header = {key: chunk[key] for key in _HEADER_FIELDS if chunk.get(key)}
        for choice in chunk.get("choices") or ():
            self._choices.setdefault(int(choice.get("index") or 0), _Choice()).add(choice, self.budget)
        if chunk.get("usage"):
            self.usage = chunk["usage"]

    def completion(self) -> dict[str, Any]:
        choices = [
            {"index": index, "message": choice.message(self.budget), "finish_reason": choice.finish_reason}
            for index, choice in sorted(self._choices.items())
        ]
        body: dict[str, Any] = {**self._header, "object": "chat.completion", "choices": choices}
        if self.usage is not None:
            body["usage"] = self.usage
        return body
