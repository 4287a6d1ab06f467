"""Turn received OTel spans into Langfuse traces and observations.

This mirrors how a Langfuse server maps OpenTelemetry spans (the rules the
gateway's tracing depends on): the trace id is the OTel trace id; trace-level
fields come from ``langfuse.trace.*`` / ``user.id`` / ``session.id`` attributes
and, for root spans, from the span itself; tags are parsed from several
encodings and stored de-duplicated and sorted; every span becomes one
observation whose type, model, usage, cost and level are derived from the
attributes LiteLLM (OpenInference + ``langfuse.*``) emits.

The functions here are pure; what each attribute means lives in
``langfuse_attributes``; storage, visibility delays and the HTTP API in the other
``langfuse_*`` modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .langfuse_attributes import (
    MODEL_KEYS,
    SESSION_KEYS,
    TRACE_UPDATE_KEYS,
    USER_KEYS,
    extract_tags,
    first_str,
    from_nanos,
    iso,
    parse_json_maybe,
    read_completion_start,
    read_cost,
    read_environment,
    read_io,
    read_metadata,
    read_model_parameters,
    read_observation_type,
    read_usage,
)
from .langfuse_otlp import SpanRecord

__all__ = [
    "ObservationRecord",
    "TraceRecord",
    "TraceUpdate",
    "iso",
    "parse_json_maybe",
    "span_to_observation",
    "span_to_trace_update",
]


@dataclass
class ObservationRecord:
    """One observation as Langfuse stores it (values before API rendering)."""

    id: str
    trace_id: str
    project_id: str
    parent_observation_id: str | None
    type: str
    name: str
    start_time: datetime
    end_time: datetime | None
    completion_start_time: datetime | None
    model: str | None
    model_parameters: dict[str, Any] | None
    usage_details: dict[str, int]
    cost_details: dict[str, float]
    level: str
    status_message: str | None
    version: str | None
    environment: str
    input: Any
    output: Any
    metadata: dict[str, Any]
    prompt_name: str | None
    prompt_version: int | None
    user_id: str | None
    session_id: str | None
    created_at: datetime
    updated_at: datetime

    @property
    def latency(self) -> float | None:
        """Seconds from start to end (``None`` while the observation is open)."""
        return None if self.end_time is None else (self.end_time - self.start_time).total_seconds()

    @property
    def time_to_first_token(self) -> float | None:
        if self.completion_start_time is None:
            return None
        return (self.completion_start_time - self.start_time).total_seconds()

    @property
    def total_cost(self) -> float | None:
        if not self.cost_details:
            return None
        return self.cost_details.get("total", sum(self.cost_details.values()))


def span_to_observation(span: SpanRecord, project_id: str, now: datetime) -> ObservationRecord:
    attrs = span.attributes
    start = from_nanos(span.start_time_unix_nano) or now
    obs_input, obs_output = read_io(attrs, "observation")
    prompt_version = attrs.get("langfuse.observation.prompt.version")
    return ObservationRecord(
        id=span.span_id,
        trace_id=span.trace_id,
        project_id=project_id,
        parent_observation_id=span.parent_span_id,
        type=read_observation_type(attrs),
        name=span.name,
        start_time=start,
        end_time=from_nanos(span.end_time_unix_nano),
        completion_start_time=read_completion_start(attrs),
        model=first_str(attrs, MODEL_KEYS),
        model_parameters=read_model_parameters(attrs),
        usage_details=read_usage(attrs),
        cost_details=read_cost(attrs),
        level=str(attrs.get("langfuse.observation.level") or ("ERROR" if span.is_error else "DEFAULT")),
        status_message=attrs.get("langfuse.observation.status_message") or span.status_message or None,
        version=attrs.get("langfuse.version") or span.resource_attributes.get("service.version"),
        environment=read_environment(attrs, span.resource_attributes),
        input=obs_input,
        output=obs_output,
        metadata=read_metadata(span, "langfuse.observation.metadata"),
        prompt_name=attrs.get("langfuse.observation.prompt.name"),
        prompt_version=int(prompt_version) if isinstance(prompt_version, int | str) and prompt_version else None,
        user_id=first_str(attrs, USER_KEYS),
        session_id=first_str(attrs, SESSION_KEYS),
        created_at=now,
        updated_at=now,
    )


@dataclass
class TraceUpdate:
    """What one span contributes to its trace; ``fields`` holds only set values."""

    trace_id: str
    timestamp: datetime
    is_root: bool
    environment: str
    fields: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)


def span_to_trace_update(span: SpanRecord, now: datetime) -> TraceUpdate:
    attrs = span.attributes
    is_root = span.parent_span_id is None or attrs.get("langfuse.internal.as_root") in ("true", True)
    update = TraceUpdate(
        trace_id=span.trace_id,
        timestamp=from_nanos(span.start_time_unix_nano) or now,
        is_root=is_root,
        environment=read_environment(attrs, span.resource_attributes),
    )
    if not is_root and not any(key in attrs for key in TRACE_UPDATE_KEYS):
        return update
    trace_input, trace_output = (
        read_io(attrs, "trace") if is_root else (attrs.get("langfuse.trace.input"), attrs.get("langfuse.trace.output"))
    )
    public = attrs.get("langfuse.trace.public", attrs.get("langfuse.public"))
    candidates = {
        "name": attrs.get("langfuse.trace.name") or (span.name if is_root else None),
        "user_id": first_str(attrs, USER_KEYS),
        "session_id": first_str(attrs, SESSION_KEYS),
        "release": attrs.get("langfuse.release") or span.resource_attributes.get("langfuse.release"),
        "version": attrs.get("langfuse.version") or span.resource_attributes.get("service.version"),
        "input": trace_input,
        "output": trace_output,
        "public": None if public is None else public in (True, "true", "True"),
    }
    update.fields = {key: value for key, value in candidates.items() if value is not None}
    update.tags = extract_tags(attrs)
    update.metadata = read_metadata(span, "langfuse.trace.metadata")
    return update


@dataclass
class TraceRecord:
    """A trace as merged from all the span contributions seen so far."""

    id: str
    project_id: str
    timestamp: datetime
    environment: str
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    user_id: str | None = None
    session_id: str | None = None
    release: str | None = None
    version: str | None = None
    input: Any = None
    output: Any = None
    public: bool = False
    bookmarked: bool = False
    tags: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    has_root: bool = False

    def apply(self, update: TraceUpdate, now: datetime) -> None:
        """Merge one contribution: newer values win, tags are unioned."""
        if update.is_root and not self.has_root:
            self.timestamp, self.environment, self.has_root = update.timestamp, update.environment, True
        elif not self.has_root and update.timestamp < self.timestamp:
            self.timestamp = update.timestamp
        for key, value in update.fields.items():
            setattr(self, key, value)
        if update.tags:
            self.tags = sorted(set(self.tags) | set(update.tags))
        self.metadata.update(update.metadata)
        self.updated_at = now
