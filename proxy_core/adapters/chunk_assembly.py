"""Folding a stream of OpenAI ``chat.completion.chunk`` dicts into the completion they spell out.

A stream relayed chunk by chunk still needs one complete answer at its end: for the trace (its
output, finish reason and usage) and for the rollout's token totals. The assembler keeps only
the running sums a chunk adds to (text per choice, tool-call arguments per index), so its cost
per chunk is a few dict look-ups, not a copy of every chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_TEXT_FIELDS = ("content", "reasoning_content", "refusal")
_HEADER_FIELDS = ("id", "created", "model", "system_fingerprint")


@dataclass(slots=True)
class _ToolCall:
    id: str | None = None
    type: str = "function"
    name: str = ""
    arguments: list[str] = field(default_factory=list)

    def add(self, delta: dict[str, Any]) -> None:
        self.id = delta.get("id") or self.id
        self.type = delta.get("type") or self.type
        function = delta.get("function") or {}
        self.name += function.get("name") or ""
        if function.get("arguments"):
            self.arguments.append(function["arguments"])

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.type, "function": {"name": self.name, "arguments": "".join(self.arguments)}}


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    texts: dict[str, list[str]] = field(default_factory=dict)
    tool_calls: dict[int, _ToolCall] = field(default_factory=dict)
    finish_reason: str | None = None

    def add(self, choice: dict[str, Any]) -> None:
        delta = choice.get("delta") or {}
        if delta.get("role"):
            self.role = delta["role"]
        for name in _TEXT_FIELDS:
            text = delta.get(name)
            if text:
                self.texts.setdefault(name, []).append(text)
        for call in delta.get("tool_calls") or ():
            self.tool_calls.setdefault(int(call.get("index") or 0), _ToolCall()).add(call)
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def message(self) -> dict[str, Any]:
        message: dict[str, Any] = {"role": self.role, "content": "".join(self.texts.get("content", ())) or None}
        for name in _TEXT_FIELDS[1:]:
            if name in self.texts:
                message[name] = "".join(self.texts[name])
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[index].as_dict() for index in sorted(self.tool_calls)]
        return message


class ChunkAssembler:
    """Accumulates chunks (``add``) and returns the equivalent ``chat.completion`` (``completion``)."""

    def __init__(self) -> None:
        self._choices: dict[int, _Choice] = {}
        self._header: dict[str, Any] = {}
        self.usage: dict[str, Any] | None = None
        self.chunks = 0

    def add(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        if not self._header:
            self._header = {key: chunk[key] for key in _HEADER_FIELDS if chunk.get(key)}
        for choice in chunk.get("choices") or ():
            self._choices.setdefault(int(choice.get("index") or 0), _Choice()).add(choice)
        if chunk.get("usage"):
            self.usage = chunk["usage"]

    def completion(self) -> dict[str, Any]:
        choices = [
            {"index": index, "message": choice.message(), "finish_reason": choice.finish_reason}
            for index, choice in sorted(self._choices.items())
        ]
        body: dict[str, Any] = {**self._header, "object": "chat.completion", "choices": choices}
        if self.usage is not None:
            body["usage"] = self.usage
        return body
