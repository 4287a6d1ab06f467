"""Which OpenTelemetry span attributes mean what to Langfuse, and how their values are read.

The attribute names a Langfuse server maps (``langfuse.*``, OpenInference ``llm.*``, GenAI
``gen_ai.*``) and pure helpers that read a span's type, model, usage, cost, input/output,
metadata and environment from them. ``langfuse_model`` builds records from what these return.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import orjson

from .langfuse_otlp import SpanRecord

_OBSERVATION_TYPES = {
    "span",
    "generation",
    "event",
    "embedding",
    "agent",
    "tool",
    "chain",
    "retriever",
    "guardrail",
    "evaluator",
}
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
_GENAI_OPERATIONS = {
    "chat": "GENERATION",
    "text_completion": "GENERATION",
    "generate_content": "GENERATION",
    "embeddings": "EMBEDDING",
    "execute_tool": "TOOL",
    "invoke_agent": "AGENT",
    "create_agent": "AGENT",
}
MODEL_KEYS = (
    "langfuse.observation.model.name",
    "gen_ai.response.model",
    "ai.model.id",
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
    "ai.telemetry.metadata.tags",
    "tag.tags",
)
USER_KEYS = (
    "langfuse.user.id",
    "user.id",
    "langfuse.observation.metadata.langfuse_user_id",
    "langfuse.trace.metadata.langfuse_user_id",
    "ai.telemetry.metadata.userId",
)
SESSION_KEYS = (
    "langfuse.session.id",
    "session.id",
    "gen_ai.conversation.id",
    "langfuse.observation.metadata.langfuse_session_id",
    "langfuse.trace.metadata.langfuse_session_id",
    "ai.telemetry.metadata.sessionId",
)
_ENV_KEYS = ("langfuse.environment", "deployment.environment.name", "deployment.environment")
TRACE_UPDATE_KEYS = (
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
)
# Input/output attribute pairs in the order the server tries them.
_IO_PAIRS = (
    ("mlflow.spanInputs", "mlflow.spanOutputs"),
    ("traceloop.entity.input", "traceloop.entity.output"),
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
        "all_messages_events",
        "events",
        "final_result",
        "pydantic_ai.all_messages",
        "gen_ai.tool.call.arguments",
        "gen_ai.tool.call.result",
        *(key for pair in _IO_PAIRS for key in pair),
    }
)
_IO_PREFIXES = ("gen_ai.prompt", "gen_ai.completion", "llm.input_messages", "llm.output_messages")
_USAGE_KEY_MAP = {
    "prompt_tokens": "input",
    "completion_tokens": "output",
    "total_tokens": "total",
    "input_tokens": "input",
    "output_tokens": "output",
    "prompt": "input",
    "completion": "output",
}
_ENV_PATTERN = re.compile(r"^[a-z0-9_-]{1,40}$")


def iso(value: datetime | None) -> str | None:
    """Langfuse's timestamp format: ISO 8601, milliseconds, ``Z``."""
    if value is None:
        return None
    value = value.astimezone(UTC)
    return f"{value:%Y-%m-%dT%H:%M:%S}.{value.microsecond // 1000:03d}Z"


def parse_json_maybe(value: Any) -> Any:
    """Return ``value`` parsed when it is a JSON document string, else unchanged."""
    if isinstance(value, str | bytes) and value:
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def from_nanos(nanos: int) -> datetime | None:
    if not nanos:
        return None
    return datetime.fromtimestamp(nanos // 1000 / 1_000_000, UTC)


def first_str(attrs: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attrs.get(key)
        if value:
            return value if isinstance(value, str) else orjson.dumps(value).decode()
    return None


def _stringify(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value, default=str).decode()


def extract_tags(attrs: dict[str, Any]) -> list[str]:
    """Tags as a list from a list, a JSON array string, a comma list or one string."""
    for key in _TAG_KEYS:
        if key not in attrs or attrs[key] in (None, ""):
            continue
        value = attrs[key]
        if isinstance(value, str):
            parsed = parse_json_maybe(value) if value.lstrip().startswith("[") else value
            value = parsed if isinstance(parsed, list) else [t.strip() for t in value.split(",")]
        if not isinstance(value, list):
            value = [value]
        return [str(tag) for tag in value if str(tag)]
    return []


def read_environment(attrs: dict[str, Any], resource: dict[str, Any]) -> str:
    for key in _ENV_KEYS:
        value = attrs.get(key) or resource.get(key)
        if value:
            env = str(value).strip().lower()
            if _ENV_PATTERN.match(env) and not env.startswith("langfuse"):
                return env
            return "default"
    return "default"


def _domain_metadata(attrs: dict[str, Any], prefix: str) -> dict[str, Any]:
    top = attrs.get(prefix) or attrs.get("langfuse.metadata")
    result: dict[str, Any] = {}
    parsed = parse_json_maybe(top) if isinstance(top, str) else top
    if isinstance(parsed, dict):
        result.update(parsed)
    for key, value in attrs.items():
        for candidate in (prefix, "langfuse.metadata"):
            if key.startswith(candidate + "."):
                result[key[len(candidate) + 1 :]] = value
    return result


def read_metadata(span: SpanRecord, prefix: str) -> dict[str, Any]:
    attributes = {
        key: _stringify(value)
        for key, value in span.attributes.items()
        if key not in _IO_KEYS and not key.startswith(_IO_PREFIXES)
    }
    return {
        **_domain_metadata(span.attributes, prefix),
        "attributes": attributes,
        "resourceAttributes": dict(span.resource_attributes),
        "scope": {
            "name": span.scope_name,
            "version": span.scope_version,
            "attributes": dict(span.scope_attributes),
        },
    }


def read_io(attrs: dict[str, Any], domain: str) -> tuple[Any, Any]:
    if domain == "trace" and (attrs.get("langfuse.trace.input") or attrs.get("langfuse.trace.output")):
        return attrs.get("langfuse.trace.input"), attrs.get("langfuse.trace.output")
    pair = (attrs.get("langfuse.observation.input"), attrs.get("langfuse.observation.output"))
    if pair != (None, None):
        return pair
    for in_key, out_key in _IO_PAIRS:
        if attrs.get(in_key) or attrs.get(out_key):
            return attrs.get(in_key), attrs.get(out_key)
    return None, None


def read_observation_type(attrs: dict[str, Any]) -> str:
    declared = str(attrs.get("langfuse.observation.type") or "").lower()
    if declared in _OBSERVATION_TYPES:
        return declared.upper()
    kind = _OPENINFERENCE_KINDS.get(str(attrs.get("openinference.span.kind") or "").upper())
    if kind:
        return kind
    operation = _GENAI_OPERATIONS.get(str(attrs.get("gen_ai.operation.name") or ""))
    if operation:
        return operation
    return "GENERATION" if first_str(attrs, MODEL_KEYS) else "SPAN"


def read_usage(attrs: dict[str, Any]) -> dict[str, int]:
    explicit = parse_json_maybe(attrs.get("langfuse.observation.usage_details"))
    if isinstance(explicit, dict):
        return {str(k): int(v) for k, v in explicit.items() if isinstance(v, int | float)}
    usage: dict[str, int] = {}
    for key, value in attrs.items():
        if key.startswith("gen_ai.usage.") and key != "gen_ai.usage.cost":
            name = key[len("gen_ai.usage.") :]
        elif key.startswith("llm.token_count."):
            name = key[len("llm.token_count.") :]
        else:
            continue
        try:
            usage[_USAGE_KEY_MAP.get(name, name)] = int(value)
        except (TypeError, ValueError):
            continue
    return usage


def read_cost(attrs: dict[str, Any]) -> dict[str, float]:
    explicit = parse_json_maybe(attrs.get("langfuse.observation.cost_details"))
    if isinstance(explicit, dict):
        return {str(k): float(v) for k, v in explicit.items() if isinstance(v, int | float)}
    for key in ("gen_ai.usage.cost", "llm.cost.total"):
        value = attrs.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"total": float(value)}
    return {}


def read_model_parameters(attrs: dict[str, Any]) -> dict[str, Any] | None:
    for key in ("langfuse.observation.model.parameters", "llm.invocation_parameters", "model_config"):
        parsed = parse_json_maybe(attrs.get(key))
        if isinstance(parsed, dict):
            return {
                k: v if isinstance(v, str | int | float) and not isinstance(v, bool) else _stringify(v)
                for k, v in parsed.items()
            }
    params = {k[len("gen_ai.request.") :]: v for k, v in attrs.items() if k.startswith("gen_ai.request.")}
    params.pop("model", None)
    return params or None


def read_completion_start(attrs: dict[str, Any]) -> datetime | None:
    raw = attrs.get("langfuse.observation.completion_start_time")
    if not isinstance(raw, str) or not raw:
        return None
    value = parse_json_maybe(raw) if raw.startswith('"') else raw
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
