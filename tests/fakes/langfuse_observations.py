"""The cursor-paginated observations API (``GET /api/public/v2/observations``).

Newest first (start time, then trace id, then id), an opaque base64
``meta.cursor`` that is absent on the last page, ``fields`` groups (``core``
always, ``core,basic`` by default), simple filters and the structured
``filter`` including the trace's tags and name.  As on the real v2 API, input
and output are returned as the raw stored strings.  Trace-level user and
session ids are denormalised onto observations that do not carry their own.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import orjson

from .langfuse_filters import (
    ApiError,
    Column,
    Condition,
    Query,
    combine,
    equals,
    field_groups,
    int_param,
    param,
    params,
    parse_datetime,
    parse_filter,
    split_multi,
    zod_error,
)
from .langfuse_model import ObservationRecord, TraceRecord, iso
from .langfuse_state import ProjectData

__all__ = ["OBSERVATION_COLUMNS", "list_observations_v2"]

_OBS_GROUPS = ("core", "basic", "time", "io", "metadata", "model", "usage", "prompt", "metrics", "trace_context")
_OBS_TYPES = {
    "GENERATION",
    "SPAN",
    "EVENT",
    "AGENT",
    "TOOL",
    "CHAIN",
    "RETRIEVER",
    "EVALUATOR",
    "EMBEDDING",
    "GUARDRAIL",
}
_LEVELS = {"DEBUG", "DEFAULT", "WARNING", "ERROR"}
_METADATA_LIMIT = 200

Row = tuple[ObservationRecord, TraceRecord | None]


def _user_id(obs: ObservationRecord, trace: TraceRecord | None) -> str | None:
    return obs.user_id or (trace.user_id if trace else None)


def _session_id(obs: ObservationRecord, trace: TraceRecord | None) -> str | None:
    return obs.session_id or (trace.session_id if trace else None)


# Filter columns over (observation, trace-or-None) rows.
OBSERVATION_COLUMNS: dict[str, Column] = {
    "id": lambda r: r[0].id,
    "type": lambda r: r[0].type,
    "name": lambda r: r[0].name,
    "traceId": lambda r: r[0].trace_id,
    "startTime": lambda r: r[0].start_time,
    "endTime": lambda r: r[0].end_time,
    "environment": lambda r: r[0].environment,
    "level": lambda r: r[0].level,
    "statusMessage": lambda r: r[0].status_message,
    "version": lambda r: r[0].version,
    "userId": lambda r: _user_id(*r),
    "sessionId": lambda r: _session_id(*r),
    "parentObservationId": lambda r: r[0].parent_observation_id,
    "isRootObservation": lambda r: r[0].parent_observation_id is None,
    "traceName": lambda r: r[1].name if r[1] else None,
    "traceTags": lambda r: r[1].tags if r[1] else [],
    "tags": lambda r: r[1].tags if r[1] else [],
    "model": lambda r: r[0].model,
    "providedModelName": lambda r: r[0].model,
    "promptName": lambda r: r[0].prompt_name,
    "promptVersion": lambda r: r[0].prompt_version,
    "latency": lambda r: r[0].latency,
    "timeToFirstToken": lambda r: r[0].time_to_first_token,
    "inputTokens": lambda r: r[0].usage_details.get("input"),
    "outputTokens": lambda r: r[0].usage_details.get("output"),
    "totalTokens": lambda r: r[0].usage_details.get("total"),
    "tokens": lambda r: r[0].usage_details.get("total"),
    "inputCost": lambda r: r[0].cost_details.get("input"),
    "outputCost": lambda r: r[0].cost_details.get("output"),
    "totalCost": lambda r: r[0].total_cost,
    "input": lambda r: r[0].input,
    "output": lambda r: r[0].output,
    "metadata": lambda r: r[0].metadata,
}
_OBS_ALIASES = {"tags": "traceTags", "providedModelName": "model", "tokens": "totalTokens"}


def _observation_conditions(query: Query) -> list[Condition]:
    cols = OBSERVATION_COLUMNS
    simple = [
        equals(col, value, cols)
        for name, col in (
            ("traceId", "traceId"),
            ("name", "name"),
            ("userId", "userId"),
            ("sessionId", "sessionId"),
            ("type", "type"),
            ("level", "level"),
            ("version", "version"),
        )
        if (value := param(query, name)) is not None
    ]
    if (value := param(query, "type")) is not None and value not in _OBS_TYPES:
        raise zod_error("type", f"Invalid enum value. Received '{value}'", code="invalid_enum_value")
    if (value := param(query, "level")) is not None and value not in _LEVELS:
        raise zod_error("level", f"Invalid enum value. Received '{value}'", code="invalid_enum_value")
    if (value := param(query, "parentObservationId")) is not None:
        simple.append(
            Condition("null", "parentObservationId", "is null", None, cols["parentObservationId"])
            if value == ""
            else equals("parentObservationId", value, cols)
        )
    if (value := param(query, "isRootObservation")) is not None:
        flag = value.lower() == "true"
        simple.append(Condition("boolean", "isRootObservation", "=", flag, cols["isRootObservation"]))
    if (raw := param(query, "fromStartTime")) is not None:
        simple.append(Condition("datetime", "startTime", ">=", parse_datetime(raw, "fromStartTime"), cols["startTime"]))
    if (raw := param(query, "toStartTime")) is not None:
        simple.append(Condition("datetime", "startTime", "<", parse_datetime(raw, "toStartTime"), cols["startTime"]))
    if envs := split_multi(params(query, "environment")):
        simple.append(Condition("stringOptions", "environment", "any of", envs, cols["environment"]))
    return combine(simple, parse_filter(param(query, "filter"), cols), _OBS_ALIASES)


def _cursor_key(obs: ObservationRecord) -> tuple[int, str, str]:
    return (int(obs.start_time.timestamp() * 1000), obs.trace_id, obs.id)


def _encode_cursor(obs: ObservationRecord) -> str:
    doc = {"lastStartTimeTo": iso(obs.start_time), "lastTraceId": obs.trace_id, "lastId": obs.id}
    return base64.b64encode(orjson.dumps(doc)).decode()


def _decode_cursor(raw: str) -> tuple[int, str, str]:
    try:
        doc = orjson.loads(base64.b64decode(raw))
        when = parse_datetime(str(doc["lastStartTimeTo"]), "cursor")
        return (int(when.timestamp() * 1000), str(doc["lastTraceId"]), str(doc["lastId"]))
    except (ValueError, KeyError, TypeError, ApiError):
        raise ApiError(400, {"message": "Invalid cursor format", "error": "InvalidRequestError"}) from None


def list_observations_v2(project: ProjectData, project_id: str, query: Query) -> dict[str, Any]:
    limit = int_param(query, "limit", 50, 0, 1000)
    if param(query, "parseIoAsJson") == "true":
        raise zod_error(
            "parseIoAsJson",
            "parseIoAsJson=true is no longer supported on the v2 observations endpoint. "
            "Input/output fields are always returned as raw strings.",
            code="custom",
        )
    cursor = param(query, "cursor")
    after = _decode_cursor(cursor) if cursor else None
    conditions = _observation_conditions(query)
    groups = field_groups(query, _OBS_GROUPS) or {"core", "basic"}
    expand = set(split_multi(params(query, "expandMetadata")))
    rows: list[Row] = []
    for obs in project.observations.values():
        row = (obs, project.traces.get(obs.trace_id))
        if (after is None or _cursor_key(obs) < after) and all(c.matches(row) for c in conditions):
            rows.append(row)
    rows.sort(key=lambda r: _cursor_key(r[0]), reverse=True)
    page = rows[:limit]
    meta = {"cursor": _encode_cursor(page[-1][0])} if len(rows) > limit and page else {}
    return {"data": [_render_v2(row, groups, expand) for row in page], "meta": meta}


def _truncate_metadata(metadata: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, str) and len(value) > _METADATA_LIMIT and key not in expand:
            value = value[:_METADATA_LIMIT] + "..."
        result[key] = value
    return result


def _core(obs: ObservationRecord, _trace: TraceRecord | None, _expand: set[str]) -> dict[str, Any]:
    return {
        "id": obs.id,
        "traceId": obs.trace_id,
        "startTime": iso(obs.start_time),
        "endTime": iso(obs.end_time),
        "projectId": obs.project_id,
        "parentObservationId": obs.parent_observation_id,
        "type": obs.type,
    }


def _basic(obs: ObservationRecord, trace: TraceRecord | None, _expand: set[str]) -> dict[str, Any]:
    return {
        "name": obs.name,
        "level": obs.level,
        "statusMessage": obs.status_message,
        "version": obs.version,
        "environment": obs.environment,
        "bookmarked": False,
        "public": bool(trace and trace.public),
        "userId": _user_id(obs, trace),
        "sessionId": _session_id(obs, trace),
        "isRootObservation": obs.parent_observation_id is None,
    }


def _time(obs: ObservationRecord, _trace: TraceRecord | None, _expand: set[str]) -> dict[str, Any]:
    return {
        "completionStartTime": iso(obs.completion_start_time),
        "createdAt": iso(obs.created_at),
        "updatedAt": iso(obs.updated_at),
    }


def _usage(obs: ObservationRecord, _trace: TraceRecord | None, _expand: set[str]) -> dict[str, Any]:
    return {
        "usageDetails": obs.usage_details,
        "costDetails": obs.cost_details,
        "totalCost": obs.total_cost,
        "usagePricingTierName": None,
    }


def _trace_context(_obs: ObservationRecord, trace: TraceRecord | None, _expand: set[str]) -> dict[str, Any]:
    if trace is None:
        return {"tags": [], "release": None, "traceName": None}
    return {"tags": list(trace.tags), "release": trace.release, "traceName": trace.name}


_GROUPS: dict[str, Callable[[ObservationRecord, TraceRecord | None, set[str]], dict[str, Any]]] = {
    "core": _core,
    "basic": _basic,
    "time": _time,
    "io": lambda obs, _t, _e: {"input": obs.input, "output": obs.output},
    "metadata": lambda obs, _t, expand: {"metadata": _truncate_metadata(obs.metadata, expand)},
    "model": lambda obs, _t, _e: {
        "model": obs.model,
        "internalModelId": None,
        "modelParameters": obs.model_parameters,
    },
    "usage": _usage,
    "prompt": lambda obs, _t, _e: {
        "promptId": None,
        "promptName": obs.prompt_name,
        "promptVersion": obs.prompt_version,
    },
    "metrics": lambda obs, _t, _e: {"latency": obs.latency, "timeToFirstToken": obs.time_to_first_token},
    "trace_context": _trace_context,
}


def _render_v2(row: Row, groups: set[str], expand: set[str]) -> dict[str, Any]:
    """The observation with only the requested field groups (``core`` always)."""
    doc: dict[str, Any] = {}
    for name, render in _GROUPS.items():
        if name == "core" or name in groups:
            doc.update(render(*row, expand))
    return doc
