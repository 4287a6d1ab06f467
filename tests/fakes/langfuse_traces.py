"""The legacy Langfuse trace read API (``GET /api/public/traces`` and ``/traces/{id}``).

Page/limit pagination (limit 1..100, default 50), exact matches on
user/name/session/version/release, ``tags`` with AND semantics (one value is
split on commas), ``environment`` with OR semantics, ``orderBy`` (default
``timestamp desc``), ``fields`` groups with their exclusion rules, and the
structured ``filter``.  Lists carry observation and score ids; the single-trace
endpoint carries full objects.  Functions take a project's data with the state
lock held and return JSON-ready dictionaries.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

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
from .langfuse_model import ObservationRecord, TraceRecord, iso, parse_json_maybe
from .langfuse_state import ProjectData

__all__ = ["TRACE_COLUMNS", "get_trace", "list_traces", "render_dates", "render_observation_v1"]

_TRACE_GROUPS = ("core", "io", "scores", "observations", "metrics")
_ORDER_FIELDS = {
    "id": "id",
    "timestamp": "timestamp",
    "name": "name",
    "userId": "user_id",
    "release": "release",
    "version": "version",
    "public": "public",
    "bookmarked": "bookmarked",
    "sessionId": "session_id",
}
TRACE_COLUMNS: dict[str, Column] = {
    "id": lambda t: t.id,
    "name": lambda t: t.name,
    "timestamp": lambda t: t.timestamp,
    "userId": lambda t: t.user_id,
    "sessionId": lambda t: t.session_id,
    "release": lambda t: t.release,
    "version": lambda t: t.version,
    "environment": lambda t: t.environment,
    "tags": lambda t: t.tags,
    "bookmarked": lambda t: t.bookmarked,
    "public": lambda t: t.public,
    "metadata": lambda t: t.metadata,
}


def _trace_conditions(query: Query) -> list[Condition]:
    cols = TRACE_COLUMNS
    simple = [
        equals(col, value, cols)
        for name, col in (
            ("userId", "userId"),
            ("name", "name"),
            ("sessionId", "sessionId"),
            ("version", "version"),
            ("release", "release"),
        )
        if (value := param(query, name)) is not None
    ]
    if (raw := param(query, "fromTimestamp")) is not None:
        simple.append(Condition("datetime", "timestamp", ">=", parse_datetime(raw, "fromTimestamp"), cols["timestamp"]))
    if (raw := param(query, "toTimestamp")) is not None:
        simple.append(Condition("datetime", "timestamp", "<", parse_datetime(raw, "toTimestamp"), cols["timestamp"]))
    tags = params(query, "tags")
    tags = split_multi(tags) if len(tags) == 1 else tags
    if tags:
        simple.append(Condition("arrayOptions", "tags", "all of", tags, cols["tags"]))
    if envs := split_multi(params(query, "environment")):
        simple.append(Condition("stringOptions", "environment", "any of", envs, cols["environment"]))
    return combine(simple, parse_filter(param(query, "filter"), cols))


def _order(query: Query) -> tuple[str, bool]:
    raw = param(query, "orderBy") or "timestamp.desc"
    name, _, direction = raw.partition(".")
    if name not in _ORDER_FIELDS or direction not in ("asc", "desc"):
        raise zod_error("orderBy", f"Invalid orderBy: {raw}", code="custom")
    return _ORDER_FIELDS[name], direction == "desc"


def _sort_key(attr: str) -> Any:
    def key(trace: TraceRecord) -> tuple[bool, Any, str]:
        value = getattr(trace, attr)
        return (value is not None, value if value is not None else "", trace.id)

    return key


def list_traces(project: ProjectData, project_id: str, query: Query) -> dict[str, Any]:
    page = int_param(query, "page", 1, 1, None)
    limit = int_param(query, "limit", 50, 1, 100)
    conditions = _trace_conditions(query)
    attr, descending = _order(query)
    fields = field_groups(query, _TRACE_GROUPS)
    rows = [t for t in project.traces.values() if all(c.matches(t) for c in conditions)]
    rows.sort(key=_sort_key(attr), reverse=descending)
    start = (page - 1) * limit
    data = [_render_trace(project, project_id, t, fields, full=False) for t in rows[start : start + limit]]
    total = len(rows)
    return {
        "data": data,
        "meta": {"page": page, "limit": limit, "totalItems": total, "totalPages": -(-total // limit)},
    }


def get_trace(project: ProjectData, project_id: str, trace_id: str, query: Query) -> dict[str, Any]:
    trace = project.traces.get(trace_id)
    if trace is None:
        raise ApiError(
            404,
            {"message": f"Trace {trace_id} not found within authorized project", "error": "LangfuseNotFoundError"},
        )
    return _render_trace(project, project_id, trace, field_groups(query, _TRACE_GROUPS), full=True)


def _render_trace(
    project: ProjectData, project_id: str, trace: TraceRecord, fields: set[str] | None, full: bool
) -> dict[str, Any]:
    def wanted(group: str) -> bool:
        return fields is None or group in fields

    observations = sorted(project.observations_by_trace.get(trace.id, []), key=lambda o: o.start_time)
    scores = [s for s in project.scores if s.get("traceId") == trace.id]
    doc: dict[str, Any] = {
        "id": trace.id,
        "externalId": None,
        "timestamp": iso(trace.timestamp),
        "name": trace.name,
        "userId": trace.user_id,
        "release": trace.release,
        "version": trace.version,
        "projectId": project_id,
        "environment": trace.environment,
        "public": trace.public,
        "bookmarked": trace.bookmarked,
        "tags": list(trace.tags),
        "sessionId": trace.session_id,
        "createdAt": iso(trace.created_at),
        "updatedAt": iso(trace.updated_at),
        "htmlPath": f"/project/{project_id}/traces/{trace.id}",
    }
    if wanted("io"):
        doc["input"] = parse_json_maybe(trace.input)
        doc["output"] = parse_json_maybe(trace.output)
        doc["metadata"] = trace.metadata
    if full:
        doc["observations"] = [render_observation_v1(o) for o in observations] if wanted("observations") else []
        doc["scores"] = [render_score(s) for s in scores] if wanted("scores") else []
    else:
        doc["observations"] = [o.id for o in observations] if wanted("observations") else []
        doc["scores"] = [s["id"] for s in scores] if wanted("scores") else []
    if wanted("metrics"):
        doc["totalCost"] = sum(o.total_cost or 0.0 for o in observations)
        doc["latency"] = _trace_latency(observations)
    else:
        doc["totalCost"], doc["latency"] = -1, -1
    return doc


def _trace_latency(observations: list[ObservationRecord]) -> float:
    if not observations:
        return 0.0
    start = min(o.start_time for o in observations)
    end = max(o.end_time or o.start_time for o in observations)
    return (end - start).total_seconds()


def render_observation_v1(obs: ObservationRecord) -> dict[str, Any]:
    usage = obs.usage_details
    cost = obs.cost_details
    return {
        "id": obs.id,
        "projectId": obs.project_id,
        "traceId": obs.trace_id,
        "parentObservationId": obs.parent_observation_id,
        "type": obs.type,
        "name": obs.name,
        "environment": obs.environment,
        "startTime": iso(obs.start_time),
        "endTime": iso(obs.end_time),
        "completionStartTime": iso(obs.completion_start_time),
        "version": obs.version,
        "createdAt": iso(obs.created_at),
        "updatedAt": iso(obs.updated_at),
        "input": parse_json_maybe(obs.input),
        "output": parse_json_maybe(obs.output),
        "metadata": obs.metadata,
        "level": obs.level,
        "statusMessage": obs.status_message,
        "model": obs.model,
        "modelParameters": obs.model_parameters,
        "promptId": None,
        "promptName": obs.prompt_name,
        "promptVersion": obs.prompt_version,
        "usageDetails": usage,
        "costDetails": cost,
        "usage": {
            "unit": "TOKENS",
            "input": usage.get("input", 0),
            "output": usage.get("output", 0),
            "total": usage.get("total", 0),
        },
        "unit": "TOKENS",
        "promptTokens": usage.get("input", 0),
        "completionTokens": usage.get("output", 0),
        "totalTokens": usage.get("total", 0),
        "usagePricingTierName": None,
        "usagePricingTierId": None,
        "modelId": None,
        "inputPrice": None,
        "outputPrice": None,
        "totalPrice": None,
        "calculatedInputCost": cost.get("input"),
        "calculatedOutputCost": cost.get("output"),
        "calculatedTotalCost": obs.total_cost,
        "latency": obs.latency,
        "timeToFirstToken": obs.time_to_first_token,
    }


def render_dates(doc: dict[str, Any]) -> dict[str, Any]:
    """A shallow copy with datetime values rendered as Langfuse timestamps."""
    return {key: iso(value) if isinstance(value, datetime) else value for key, value in doc.items()}


render_score = render_dates
