"""The fake provider's endpoints, each in OpenAI's published wire format.

* ``/v1/chat/completions``: ``chat.completion`` / ``chat.completion.chunk`` frames and ``[DONE]``.
* ``/v1/responses``: a ``response`` object; streamed, the typed event sequence (``event:`` and
  ``data:`` lines, ``sequence_number`` from 0) from ``response.created`` to ``response.completed``.
* ``/v1/completions``: ``text_completion`` objects, streamed as ``data:`` frames and ``[DONE]``.
* ``/v1/embeddings``: a ``list`` of ``embedding`` objects, floats or base64 (little-endian
  float32, the encoding the ``openai`` client asks for by default), ``dimensions`` honoured.

Directives (``[[status=429]]`` …) are read from the last user text of each kind of request: the
last user message, the last user input item, the prompt, the (first) input to embed.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from typing import Any

import orjson

from .upstream_answer import DONE, Answer, data_frame
from .upstream_plan import last_user_message_text, message_text, usage_of

DEFAULT_DIMENSIONS = 8


def _words(text: str) -> int:
    return len(text.split())


class ChatAnswer(Answer):
    id_prefix = "chatcmpl"

    def document(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self.content},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": usage_of(self.body, self.content),
        }

    def _frame(self, choices: list[dict[str, Any]], **extra: Any) -> bytes:
        doc = {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}
        return data_frame({**doc, "choices": choices, **extra})

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._frame([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])

    def opening(self) -> list[bytes]:
        return [self._chunk({"role": "assistant", "content": ""})]

    def delta(self, piece: str) -> bytes:
        return self._chunk({"content": piece})

    def closing(self) -> list[bytes]:
        frames = [self._chunk({}, "stop")]
        if (self.body.get("stream_options") or {}).get("include_usage"):
            frames.append(self._frame([], usage=usage_of(self.body, self.content)))
        return [*frames, DONE]


def responses_input_text(body: dict[str, Any]) -> str:
    """The last user text of a Responses ``input`` (a string, or a list of items)."""
    given = body.get("input")
    if isinstance(given, str):
        return given
    for item in reversed(given if isinstance(given, list) else []):
        if isinstance(item, dict) and item.get("role", "user") == "user" and "content" in item:
            return message_text(item["content"])
    return ""


def _responses_input_words(body: dict[str, Any]) -> int:
    given = body.get("input")
    if isinstance(given, str):
        count = _words(given)
    else:
        items = given if isinstance(given, list) else []
        count = sum(_words(message_text(item.get("content"))) for item in items if isinstance(item, dict))
    instructions = body.get("instructions")
    return count + (_words(instructions) if isinstance(instructions, str) else 0)


class ResponsesAnswer(Answer):
    id_prefix = "resp"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.item_id = f"msg_{self.id}"
        self._sequence = 0

    def _usage(self) -> dict[str, Any]:
        prompt, completion = _responses_input_words(self.body), _words(self.content)
        return {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": completion,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + completion,
        }

    def _part(self, text: str) -> dict[str, Any]:
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _item(self, done: bool) -> dict[str, Any]:
        return {
            "id": self.item_id,
            "type": "message",
            "status": "completed" if done else "in_progress",
            "role": "assistant",
            "content": [self._part(self.content)] if done else [],
        }

    def _response(self, done: bool) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": "completed" if done else "in_progress",
            "error": None,
            "incomplete_details": None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "model": self.model,
            "output": [self._item(True)] if done else [],
            "parallel_tool_calls": True,
            "previous_response_id": self.body.get("previous_response_id"),
            "reasoning": {"effort": None, "summary": None},
            "store": True,
            "temperature": self.body.get("temperature", 1.0),
            "text": {"format": {"type": "text"}},
            "tool_choice": "auto",
            "tools": [],
            "top_p": self.body.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": self._usage() if done else None,
            "user": self.body.get("user"),
            "metadata": self.body.get("metadata") or {},
        }

    def document(self) -> dict[str, Any]:
        return self._response(True)

    def _event(self, kind: str, **fields: Any) -> bytes:
        doc = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(doc) + b"\n\n"

    def _at(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": 0, "content_index": 0}

    def opening(self) -> list[bytes]:
        return [
            self._event("response.created", response=self._response(False)),
            self._event("response.in_progress", response=self._response(False)),
            self._event("response.output_item.added", output_index=0, item=self._item(False)),
            self._event("response.content_part.added", **self._at(), part=self._part("")),
        ]

    def delta(self, piece: str) -> bytes:
        return self._event("response.output_text.delta", **self._at(), delta=piece, logprobs=[])

    def closing(self) -> list[bytes]:
        return [
            self._event("response.output_text.done", **self._at(), text=self.content, logprobs=[]),
            self._event("response.content_part.done", **self._at(), part=self._part(self.content)),
            self._event("response.output_item.done", output_index=0, item=self._item(True)),
            self._event("response.completed", response=self._response(True)),
        ]


def prompt_text(body: dict[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        return " ".join(part for part in prompt if isinstance(part, str))
    return prompt if isinstance(prompt, str) else ""


class TextCompletionAnswer(Answer):
    id_prefix = "cmpl"

    def _usage(self) -> dict[str, int]:
        prompt, completion = _words(prompt_text(self.body)), _words(self.content)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _logprobs(self, text: str) -> dict[str, Any] | None:
        """OpenAI's legacy logprobs object, one token per word (what scoring harnesses read)."""
        if self.body.get("logprobs") is None:
            return None
        tokens = text.split(" ")
        offsets, position = [], 0
        for token in tokens:
            offsets.append(position)
            position += len(token) + 1
        return {
            "tokens": tokens,
            "token_logprobs": [-0.5] * len(tokens),
            "top_logprobs": [{token: -0.5} for token in tokens],
            "text_offset": offsets,
        }

    def _doc(self, text: str, finish: str | None, **extra: Any) -> dict[str, Any]:
        choice = {"text": text, "index": 0, "logprobs": self._logprobs(text) if text else None, "finish_reason": finish}
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            **extra,
        }

    def document(self) -> dict[str, Any]:
        return self._doc(self.content, "stop", usage=self._usage())

    def delta(self, piece: str) -> bytes:
        return data_frame(self._doc(piece, None))

    def closing(self) -> list[bytes]:
        frames = [data_frame(self._doc("", "stop"))]
        if (self.body.get("stream_options") or {}).get("include_usage"):
            usage = {**self._doc("", None), "choices": [], "usage": self._usage()}
            frames.append(data_frame(usage))
        return [*frames, DONE]


def embedding_inputs(body: dict[str, Any]) -> list[str]:
    """Each input to embed as text (token arrays as their numbers)."""
    given = body.get("input")
    if isinstance(given, str):
        return [given]
    if isinstance(given, list) and given and all(isinstance(token, int) for token in given):
        return [" ".join(map(str, given))]
    items = given if isinstance(given, list) else []
    return [item if isinstance(item, str) else " ".join(map(str, item)) for item in items]


def fake_vector(text: str, dimensions: int) -> list[float]:
    """A deterministic unit-free vector of ``text``: equal texts embed equally."""
    digest = hashlib.sha256(text.encode()).digest()
    return [round((digest[i % len(digest)] - 128) / 128, 6) for i in range(dimensions)]


class EmbeddingsAnswer(Answer):
    @property
    def streamed(self) -> bool:
        return False

    def document(self) -> dict[str, Any]:
        dimensions = self.body.get("dimensions") or DEFAULT_DIMENSIONS
        base64_wanted = self.body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(embedding_inputs(self.body)):
            vector = fake_vector(text, dimensions)
            packed: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if base64_wanted else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": packed})
        tokens = sum(_words(text) for text in embedding_inputs(self.body))
        return {
            "object": "list",
            "data": data,
            "model": self.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def directive_text(path: str, body: dict[str, Any]) -> str:
    """The text whose ``[[directives]]`` steer a request to ``path``."""
    if path.endswith("/responses"):
        return responses_input_text(body)
    if path.endswith("/embeddings"):
        return next(iter(embedding_inputs(body)), "")
    if path.endswith("/completions") and not path.endswith("/chat/completions"):
        return prompt_text(body)
    return last_user_message_text(body)
