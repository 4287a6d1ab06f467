"""OpenTelemetry spans as Langfuse turns them into traces and observations.

The embedded trace store must answer ``/traces`` exactly as the Langfuse read path does, so it
maps spans by Langfuse's own rules (its OTLP ingestion processor): the trace id is the span's
trace id; every span is one observation whose type, input and output come from the
``langfuse.observation.*`` attributes (OpenInference and GenAI names as fallbacks); trace-level
name, user, session, release and tags come from ``langfuse.trace.*``, ``user.id`` and
``session.id`` on any span, the span name naming a root span's trace; tags are parsed from a
JSON array, a comma list or one string and kept de-duplicated and sorted; an observation's
metadata is its domain metadata plus every other attribute as a string, the resource's
attributes and the scope.

A span becomes one ``entry`` (a JSON-ready dict, what the stores keep); ``trace_record`` merges
a trace's entries into the ``TraceRecord`` that ``langfuse_api`` builds from Langfuse's v2
observation rows: trace-level fields from the root observation, newer trace updates winning.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson

from proxy_core.adapters.langfuse_api import maybe_json
from proxy_core.adapters.otlp_spans import Span
from proxy_core.services.trace_source import TraceRecord

_OBSERVATION_TYPES = frozenset(
    {"span", "generation", "event", "embedding", "agent", "tool", "chain", "retriever", "guardrail", "evaluator"}
)
_OPENINFERENCE_KINDS = {
    "LLM": "GENERATION",
    "EMBEDDING": "EMBEDDING",
    "CHAIN": "CHAIN",
    "TOOL": "TOOL",
    "AGENT": "AGENT",
    "RETRIEVER": "RETRIEVER",
    "GUARDRAIL": "GUARDRAIL",
    "EVALUATOR": "EVALUATOR",
}
_GENAI_OPERATIONS = {"chat": "GENERATION", "text_completion": "GENERATION", "embeddings": "EMBEDDING"}
_MODEL_KEYS = (
    "langfuse.observation.model.name",
    "gen_ai.response.model",
    "gen_ai.request.model",
    "llm.response.model",
    "llm.model_name",
    "model",
)
_TAG_KEYS = (
    "langfuse.trace.tags",
    "langfuse.tags",
    "langfuse.observation.metadata.langfuse_tags",
    "langfuse.trace.metadata.langfuse_tags",
)
_USER_KEYS = (
    "langfuse.user.id",
    "user.id",
    "langfuse.observation.metadata.langfuse_user_id",
    "langfuse.trace.metadata.langfuse_user_id",
)
_SESSION_KEYS = (
    "langfuse.session.id",
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.observation.metadata.langfuse_session_id",
    "langfuse.trace.metadata.langfuse_session_id",
)
_ENVIRONMENT_KEYS = ("langfuse.environment", "deployment.environment.name", "deployment.environment")
_TRACE_UPDATE_KEYS = frozenset(
    {
        "langfuse.trace.name",
        "langfuse.trace.input",
        "langfuse.trace.output",
        "langfuse.trace.metadata",
        "langfuse.trace.tags",
        "langfuse.trace.public",
        "user.id",
        "session.id",
        "langfuse.user.id",
        "langfuse.session.id",
    }
)
# Input/output attribute pairs after ``langfuse.observation.*``, in the order Langfuse tries them.
_IO_PAIRS = (
    ("input.value", "output.value"),
    ("input", "output"),
    ("gen_ai.input.messages", "gen_ai.output.messages"),
)
_IO_KEYS = frozenset(
    {
        "langfuse.trace.input",
        "langfuse.trace.output",
        "langfuse.observation.input",
        "langfuse.observation.output",
        "prompt",
        *(key for pair in _IO_PAIRS for key in pair),
    }
)
_IO_PREFIXES = ("gen_ai.prompt", "gen_ai.completion", "llm.input_messages", "llm.output_messages")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def _first(attributes: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if value:
            return _text(value)
    return None


def iso(nanos: int) -> str | None:
    """Langfuse's timestamp format: ISO 8601 in UTC with milliseconds and ``Z``."""
    if not nanos:
        return None
    moment = datetime.fromtimestamp(nanos // 1000 / 1_000_000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _tags(attributes: dict[str, Any]) -> list[str]:
    for key in _TAG_KEYS:
        value = attributes.get(key)
        if value in (None, ""):
            continue
        if isinstance(value, str):
            parsed = maybe_json(value) if value.lstrip().startswith("[") else value
            value = parsed if isinstance(parsed, list) else [tag.strip() for tag in value.split(",")]
        if not isinstance(value, list):
            value = [value]
        return [str(tag) for tag in value if str(tag)]
    return []


def _environment(attributes: dict[str, Any], resource: dict[str, Any]) -> str:
    for key in _ENVIRONMENT_KEYS:
        value = attributes.get(key) or resource.get(key)
        if value:
            name = str(value).strip().lower()
            valid = 0 < len(name) <= 40 and all(ch.isascii() and (ch.isalnum() or ch in "-_") for ch in name)
            return name if valid and not name.startswith("langfuse") else "default"
    return "default"


def _observation_type(attributes: dict[str, Any]) -> str:
    declared = str(attributes.get("langfuse.observation.type") or "").lower()
    if declared in _OBSERVATION_TYPES:
        return declared.upper()
    kind = _OPENINFERENCE_KINDS.get(str(attributes.get("openinference.span.kind") or "").upper())
    if kind is None:
        kind = _GENAI_OPERATIONS.get(str(attributes.get("gen_ai.operation.name") or ""))
    if kind is not None:
        return kind
    return "GENERATION" if _first(attributes, _MODEL_KEYS) else "SPAN"


def _input_output(attributes: dict[str, Any]) -> tuple[Any, Any]:
    pair = (attributes.get("langfuse.observation.input"), attributes.get("langfuse.observation.output"))
    if pair != (None, None):
        return pair
    for input_key, output_key in _IO_PAIRS:
        if attributes.get(input_key) or attributes.get(output_key):
            return attributes.get(input_key), attributes.get(output_key)
    return None, None


def _metadata(span: Span) -> dict[str, Any]:
    """The observation's metadata: its ``langfuse.observation.metadata`` keys, then the rest."""
    attributes = span.attributes
    domain: dict[str, Any] = {}
    top = attributes.get("langfuse.observation.metadata") or attributes.get("langfuse.metadata")
    parsed = maybe_json(top) if isinstance(top, str) else top
    if isinstance(parsed, dict):
        domain.update(parsed)
    for key, value in attributes.items():
        for prefix in ("langfuse.observation.metadata.", "langfuse.metadata."):
            if key.startswith(prefix):
                domain[key.removeprefix(prefix)] = value
    others = {
        key: _text(value)
        for key, value in attributes.items()
        if key not in _IO_KEYS and not key.startswith(_IO_PREFIXES)
    }
    scope = {"name": span.scope_name, "version": span.scope_version, "attributes": span.scope_attributes}
    return {**domain, "attributes": others, "resourceAttributes": span.resource_attributes, "scope": scope}


def _trace_update(span: Span) -> dict[str, Any] | None:
    """What the span says about its trace; None for a child span that says nothing."""
    attributes = span.attributes
    is_root = span.parent_span_id is None or attributes.get("langfuse.internal.as_root") in ("true", True)
    if not is_root and not _TRACE_UPDATE_KEYS & attributes.keys():
        return None
    release = attributes.get("langfuse.release") or span.resource_attributes.get("langfuse.release")
    fields = {
        "name": attributes.get("langfuse.trace.name") or (span.name if is_root else None),
        "user_id": _first(attributes, _USER_KEYS),
        "session_id": _first(attributes, _SESSION_KEYS),
        "release": _text(release) if release else None,
    }
    return {"fields": {key: value for key, value in fields.items() if value}, "tags": _tags(attributes)}


def span_entry(span: Span) -> dict[str, Any]:
    """One span as the stores keep it: the observation, and what it says about its trace."""
    attributes = span.attributes
    observation_input, observation_output = _input_output(attributes)
    version = attributes.get("langfuse.version") or span.resource_attributes.get("service.version")
    return {
        "id": span.span_id,
        "parent": span.parent_span_id,
        "name": span.name,
        "type": _observation_type(attributes),
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "input": observation_input,
        "output": observation_output,
        "user_id": _first(attributes, _USER_KEYS),
        "session_id": _first(attributes, _SESSION_KEYS),
        "environment": _environment(attributes, span.resource_attributes),
        "version": _text(version) if version else None,
        "metadata": _metadata(span),
        "trace": _trace_update(span),
        "received": time.time_ns(),
    }


def entry_tags(entry: dict[str, Any]) -> list[str]:
    update = entry.get("trace")
    return list(update["tags"]) if update else []


def trace_record(trace_id: str, entries: list[dict[str, Any]]) -> TraceRecord | None:
    """A trace from all its spans' entries, as Langfuse's v2 read path returns it; None if none."""
    if not entries:
        return None
    observations = sorted(entries, key=lambda entry: (entry["start"], entry["id"]))
    root = next((entry for entry in observations if not entry["parent"]), observations[0])
    fields: dict[str, Any] = {}
    tags: set[str] = set()
    for entry in sorted(entries, key=lambda entry: entry["received"]):  # newer updates win
        if entry["trace"]:
            fields.update(entry["trace"]["fields"])
            tags.update(entry["trace"]["tags"])
    return TraceRecord(
        id=trace_id,
        name=fields.get("name") or root["name"],
        user_id=root["user_id"] or fields.get("user_id"),
        session_id=root["session_id"] or fields.get("session_id"),
        tags=sorted(tags),
        timestamp=str(iso(root["start"] or root["received"])),
        input=maybe_json(root["input"]),
        output=maybe_json(root["output"]),
        metadata=root["metadata"] or {},
        environment=root["environment"],
        version=root["version"],
        release=fields.get("release"),
        observations=[
            {
                "id": entry["id"],
                "type": entry["type"],
                "name": entry["name"],
                "start_time": iso(entry["start"]),
                "end_time": iso(entry["end"]),
                "input": maybe_json(entry["input"]),
                "output": maybe_json(entry["output"]),
                "parent_observation_id": entry["parent"],
            }
            for entry in observations
        ],
    )
