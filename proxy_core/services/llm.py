"""The port through which the services layer calls a provider (implemented by the LiteLLM adapter)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol


class Operation(Enum):
    """What kind of call: the OpenAI (or Anthropic) endpoint a client called, and so the provider call."""

    CHAT = "chat"
    RESPONSES = "responses"
    EMBEDDINGS = "embeddings"
    TEXT_COMPLETION = "text_completion"
    MESSAGES = "messages"


@dataclass(frozen=True, slots=True)
class LangfuseTarget:
    """Where a call's trace goes: one Langfuse project's keys and host."""

    project_id: str
    public_key: str
    secret_key: str
    host: str


@dataclass(slots=True)
class LlmCall:
    """One provider call, validated and sanitized; ``metadata`` is fresh for every call."""

    model: str
    messages: list[dict[str, Any]]
    params: dict[str, Any]
    metadata: dict[str, Any]
    deployment_params: dict[str, Any] = field(default_factory=dict)
    extra_body: dict[str, Any] | None = None
    api_key: str | None = None
    api_base: str | None = None
    langfuse: LangfuseTarget | None = None
    langfuse_environment: str | None = None
    timeout_s: float = 300.0
    max_retries: int = 0
    drop_params: bool = True
    routed: bool = False
    # A cached answer to replay through LiteLLM (so it still gets its own trace); no provider call.
    replay: dict[str, Any] | None = None
    operation: Operation = Operation.CHAT
    # What a call other than chat sends in place of ``messages`` (``input``, ``prompt`` …).
    inputs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class CallInfo:
    """What a call cost and where it went; complete once a stream has ended."""

    deployment: str | None = None
    fallbacks: int = 0
    cost_usd: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(slots=True)
class Completion:
    body: dict[str, Any]
    info: CallInfo


class ChunkStream(Protocol):
    """An open stream of event dicts (``chat.completion.chunk``s for chat, typed events for Responses
    and Anthropic messages: ``{"type": …}``); iteration errors are ``GatewayError``."""

    def __aiter__(self) -> AsyncGenerator[dict[str, Any], None]: ...

    async def aclose(self) -> None: ...

    @property
    def info(self) -> CallInfo: ...


class LlmClient(Protocol):
    async def complete(self, call: LlmCall) -> Completion:
        """A non-streamed completion; raises ``GatewayError`` subclasses."""
        ...

    async def stream(self, call: LlmCall) -> ChunkStream:
        """An open stream; errors while opening are ``GatewayError`` subclasses."""
        ...
