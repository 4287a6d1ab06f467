"""The bodies of the metadata routes, as OpenAPI describes them (documentation only).

Dispatch parses and validates requests itself (``services/chat_request.py``, ``traces_query.py``,
``scores.py``); these models exist so that ``/openapi.json`` and ``/docs`` show the same shapes.
Chat bodies are OpenAI's, open to every parameter a provider takes, so only what the gateway
itself reads or adds is named.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    message: str
    type: str = Field(description="`invalid_request_error`, `authentication_error`, `rate_limit_error`, …")
    param: str | None = Field(description="The parameter, path segment or header at fault, if any.")
    code: str | None = Field(description="A stable machine-readable code, e.g. `invalid_identifier`.")


class ErrorResponse(BaseModel):
    """Every error, in OpenAI's shape; some carry more (e.g. `expected`/`found`/`missing`)."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: str = Field(examples=["user"])
    content: str | list[dict[str, Any]] | None = Field(examples=["Hello!"])


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; any other parameter is passed to the provider."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(examples=["demo"], description="A catalogue name, or any model LiteLLM knows.")
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    metadata: dict[str, Any] | None = Field(
        default=None, description="`tags` (a list) join the trace's tags; other keys become trace metadata."
    )
    prompt_variables: dict[str, Any] | None = Field(
        default=None, description="Values for a managed prompt's `{{variables}}` (with `x-prompt-name`)."
    )
    user: str | None = Field(default=None, description="The trace's user when `x-user-id` is not sent.")


class ChatCompletion(BaseModel):
    """OpenAI's `chat.completion` object (with `stream: true`, server-sent `chat.completion.chunk`s)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[dict[str, Any]]
    usage: dict[str, Any] | None = None


class Observation(BaseModel):
    id: str
    type: str = Field(examples=["GENERATION"])
    name: str | None
    start_time: str | None
    end_time: str | None
    input: Any = None
    output: Any = None
    parent_observation_id: str | None


class Trace(BaseModel):
    id: str
    name: str | None = Field(examples=["chat-completion"])
    user_id: str | None
    session_id: str | None
    tags: list[str] = Field(examples=[["insertion_id:019abf0c-…", "rollout_id:r1"]])
    timestamp: str
    input: Any = Field(description="Null unless `fields` includes `io`.")
    output: Any = Field(description="Null unless `fields` includes `io`.")
    metadata: dict[str, Any] | None
    observations: list[Observation] = Field(description="Empty unless `fields` includes `observations`.")


class TracesResponse(BaseModel):
    project_id: str | None = Field(description="Null for calls that named no project.")
    total_traces: int
    traces: list[Trace]


class RolloutStatus(BaseModel):
    project_id: str | None
    rollout_id: str
    expected_count: int = Field(description="Recorded insertion ids.")
    first_insertion_id: str | None
    last_insertion_id: str | None
    ttl_s: int | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class ScoreRequest(BaseModel):
    """Exactly one of `trace_id` and `insertion_id`."""

    trace_id: str | None = None
    insertion_id: str | None = None
    name: str = Field(min_length=1, max_length=200, examples=["correct"])
    value: float | bool | str = Field(examples=[True])
    comment: str | None = Field(default=None, max_length=4000)
    data_type: Literal["NUMERIC", "BOOLEAN", "CATEGORICAL"] | None = Field(
        default=None, description="Inferred from `value` when omitted."
    )


class Score(BaseModel):
    id: str | None
    trace_id: str
    project_id: str | None
    name: str
    value: float | str
    dataType: Literal["NUMERIC", "BOOLEAN", "CATEGORICAL"]  # noqa: N815 (the wire name)
    comment: str | None = None


class LogStatus(BaseModel):
    code: int = Field(ge=0, le=2**31 - 1, examples=[100])
    message: str | None = None
    details: list[Any] = Field(default_factory=list)


class LogRecord(BaseModel):
    """What eval-protocol's tracing log handler posts."""

    program: str = "eval_protocol"
    status: LogStatus | None = None
    message: str = ""
    tags: list[str] = Field(examples=[["rollout_id:r1"]])
    extras: dict[str, Any] = Field(default_factory=dict)


class LogEntry(BaseModel):
    timestamp: str
    message: str
    severity: str
    tags: list[str]
    status: LogStatus | None
    extras: dict[str, Any]


class LogEntries(BaseModel):
    entries: list[LogEntry]


class RolloutLogStatus(BaseModel):
    rollout_id: str
    status: LogStatus | None
    extras: dict[str, Any] | None


MODELS: tuple[type[BaseModel], ...] = (
    ErrorResponse,
    ChatCompletionRequest,
    ChatCompletion,
    TracesResponse,
    RolloutStatus,
    ScoreRequest,
    Score,
    LogRecord,
    LogEntries,
    RolloutLogStatus,
)
