"""Query parameters of ``/traces``: the original gateway's set, each validated with a named 400.

The parameters are the same as the original gateway's so its clients work unchanged; two of
them change meaning in a compatible way: ``sleep_between_gets`` is accepted and ignored (the
gateway never sleeps per trace), and ``max_retries`` bounds the number of re-polls inside the
``timeout_s`` deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from proxy_core.errors import InvalidRequestError
from proxy_core.ids import validate_identifier

ROLLOUT_TAG = "rollout_id:"
TRACE_FIELD_GROUPS = frozenset({"core", "io", "scores", "observations", "metrics"})
MAX_LIMIT = 100_000
MAX_TIMEOUT_S = 900.0
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class TracesQuery:
    """A validated ``/traces`` request."""

    rollout_id: str
    tags: tuple[str, ...]
    limit: int = 100
    sample_size: int | None = None
    user_id: str | None = None
    session_id: str | None = None
    name: str | None = None
    environment: tuple[str, ...] = ()
    version: str | None = None
    release: str | None = None
    fields: frozenset[str] = TRACE_FIELD_GROUPS
    from_timestamp: datetime | None = None
    to_timestamp: datetime | None = None
    max_retries: int = 3
    timeout_s: float = DEFAULT_TIMEOUT_S
    project_id: str | None = None


def _bad(param: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(f"Invalid {param}: {message}.", param=param, code="invalid_query_parameter")


def _single(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise _bad(name, "given more than once")
    return values[0]


def _int(params: dict[str, list[str]], name: str, default: int | None, low: int, high: int) -> int | None:
    raw = _single(params, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _bad(name, "not an integer") from None
    if not low <= value <= high:
        raise _bad(name, f"must be between {low} and {high}")
    return value


def _float(params: dict[str, list[str]], name: str, default: float | None, low: float, high: float) -> float | None:
    raw = _single(params, name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise _bad(name, "not a number") from None
    if not low <= value <= high:
        raise _bad(name, f"must be between {low:g} and {high:g}")
    return value


def _timestamp(params: dict[str, list[str]], name: str) -> datetime | None:
    raw = _single(params, name)
    if raw is None:
        return None
    try:
        value = datetime.fromisoformat(raw.replace("Z", "+00:00").replace(" ", "+") if "T" in raw else raw)
    except ValueError:
        raise _bad(name, "not an ISO 8601 date-time") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _tags(params: dict[str, list[str]]) -> tuple[str, tuple[str, ...]]:
    tags = tuple(tag for value in params.get("tags", []) for tag in ([value] if value else []))
    rollouts = {tag.removeprefix(ROLLOUT_TAG) for tag in tags if tag.startswith(ROLLOUT_TAG)}
    if not rollouts:
        raise _bad("tags", "at least one 'rollout_id:<id>' tag is required")
    if len(rollouts) > 1:
        raise _bad("tags", "name exactly one rollout")
    rollout_id = validate_identifier(rollouts.pop(), "tags")
    return rollout_id, tags


def _fields(params: dict[str, list[str]]) -> frozenset[str]:
    raw = _single(params, "fields")
    if raw is None:
        return TRACE_FIELD_GROUPS
    groups = frozenset(part.strip() for part in raw.split(",") if part.strip())
    unknown = groups - TRACE_FIELD_GROUPS
    if unknown or not groups:
        raise _bad("fields", f"use a comma-separated subset of {', '.join(sorted(TRACE_FIELD_GROUPS))}")
    return groups | {"core"}


def _time_window(params: dict[str, list[str]]) -> tuple[datetime | None, datetime | None]:
    start, end = _timestamp(params, "from_timestamp"), _timestamp(params, "to_timestamp")
    hours_back = _float(params, "hours_back", None, 0.0, 24 * 365)
    if start is None and hours_back is not None:
        start = datetime.now(UTC) - timedelta(hours=hours_back)
    if start is not None and end is not None and start >= end:
        raise _bad("from_timestamp", "must be before to_timestamp")
    return start, end


def parse_traces_query(params: dict[str, list[str]], *, default_timeout_s: float = DEFAULT_TIMEOUT_S) -> TracesQuery:
    """Validate the query string (as a multi-dict of lists) of a ``/traces`` request."""
    rollout_id, tags = _tags(params)
    start, end = _time_window(params)
    _float(params, "sleep_between_gets", None, 0.0, 3600.0)  # accepted for compatibility, never slept
    environment = tuple(e for value in params.get("environment", []) for e in value.split(",") if e)
    optional: dict[str, Any] = {name: _single(params, name) for name in ("user_id", "session_id", "name")}
    optional.update(version=_single(params, "version"), release=_single(params, "release"))
    project_id = _single(params, "project_id")
    return TracesQuery(
        rollout_id=rollout_id,
        tags=tags,
        limit=_int(params, "limit", 100, 1, MAX_LIMIT) or 100,
        sample_size=_int(params, "sample_size", None, 1, MAX_LIMIT),
        environment=environment,
        fields=_fields(params),
        from_timestamp=start,
        to_timestamp=end,
        max_retries=_int(params, "max_retries", 3, 0, 50) or 0,
        timeout_s=_float(params, "timeout_s", default_timeout_s, 0.1, MAX_TIMEOUT_S) or default_timeout_s,
        project_id=validate_identifier(project_id, "project_id") if project_id is not None else None,
        **optional,
    )
