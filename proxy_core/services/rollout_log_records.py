"""What a remote agent posts to ``/logs`` and what ``/logs`` and ``/status`` are asked, validated.

The agent's log handler (eval-protocol's ``FireworksTracingHttpHandler``) sends
``{program, status: {code, message, details} | null, message, tags, extras}``, with the record's
time and level inside ``extras``. The evaluation side compares ``status.code`` with its status
enum, so a code must be a JSON integer: ``"100"``, ``true`` and ``100.5`` are refused here, where
a lax parser would have turned them into a code the client then cannot read. Error messages name
the field and never quote a value, because refusals are logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from proxy_core.errors import InvalidRequestError
from proxy_core.ids import validate_identifier
from proxy_core.services.chat_request import parse_json_body
from proxy_core.services.paths import ROLLOUT_KEYS
from proxy_core.services.traces_query import ROLLOUT_TAG, _float, _int, _single  # the query rules /traces has

# Tags the handler builds from evaluation ids: kept verbatim (they are what entries are found by).
ID_TAG_PREFIXES = tuple(f"{key}:" for key in ROLLOUT_KEYS)
DEFAULT_PROGRAM = "eval_protocol"  # what the handler sends when a record names no program
MAX_TAGS = 64
MAX_ROLLOUTS_PER_RECORD = 64
MAX_STATUS_CODE = 2**31 - 1
LEVEL_NAMES = frozenset({"DEBUG", "INFO", "WARNING", "WARN", "ERROR", "CRITICAL", "FATAL", "NOTSET"})
DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
DEFAULT_HOURS_BACK = 24.0
MAX_HOURS_BACK = 24.0 * 366


@dataclass(frozen=True, slots=True)
class LogPost:
    """One posted log record, validated but not yet sanitized."""

    program: str
    status: dict[str, Any] | None
    message: str
    tags: tuple[str, ...]
    extras: dict[str, Any]
    rollout_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LogsQuery:
    """A validated ``GET /logs``: the rollout to read, and the filters its entries must pass."""

    rollout_id: str
    tags: tuple[str, ...]
    limit: int = DEFAULT_LIMIT
    hours_back: float = DEFAULT_HOURS_BACK
    program: str | None = None


def _bad(param: str, message: str, code: str = "invalid_value") -> InvalidRequestError:
    return InvalidRequestError(f"Invalid {param}: {message}.", param=param, code=code)


def _string_or_default(body: dict[str, Any], name: str, default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _bad(name, "must be a string")
    return value


def _status(value: Any) -> dict[str, Any] | None:
    """``{code, message, details}`` with ``code`` a JSON integer; any other key is dropped."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _bad("status", "must be an object or null")
    code = value.get("code")
    if type(code) is not int:  # bool is an int subclass; orjson gives float for 100.5 and 1e2
        raise _bad("status.code", "must be a JSON integer")
    if not 0 <= code <= MAX_STATUS_CODE:
        raise _bad("status.code", f"must be between 0 and {MAX_STATUS_CODE}")
    message = value.get("message")
    if message is not None and not isinstance(message, str):
        raise _bad("status.message", "must be a string or null")
    details = value.get("details")
    if details is None:
        details = []
    if not isinstance(details, list):
        raise _bad("status.details", "must be an array")
    return {"code": code, "message": message, "details": details}


def _tags(value: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tags, the rollout ids they name); at least one ``rollout_id:`` tag, each id a valid one."""
    if not isinstance(value, list) or not all(isinstance(tag, str) for tag in value):
        raise _bad("tags", "must be an array of strings")
    if len(value) > MAX_TAGS:
        raise _bad("tags", f"at most {MAX_TAGS} tags")
    rollouts: dict[str, None] = {}
    for tag in value:
        if tag.startswith(ROLLOUT_TAG):
            rollouts[validate_identifier(tag.removeprefix(ROLLOUT_TAG), "tags")] = None
    if not rollouts:
        raise _bad("tags", "at least one 'rollout_id:<id>' tag is required")
    if len(rollouts) > MAX_ROLLOUTS_PER_RECORD:
        raise _bad("tags", f"at most {MAX_ROLLOUTS_PER_RECORD} rollouts per record")
    return tuple(value), tuple(rollouts)


def parse_log_post(raw: bytes) -> LogPost:
    """Validate a ``POST /logs`` body; 400 naming the field on anything the reader could not use."""
    body = parse_json_body(raw)
    extras = body.get("extras")
    if extras is None:
        extras = {}
    if not isinstance(extras, dict):
        raise _bad("extras", "must be an object")
    tags, rollout_ids = _tags(body.get("tags"))
    return LogPost(
        program=_string_or_default(body, "program", DEFAULT_PROGRAM),
        status=_status(body.get("status")),
        message=_string_or_default(body, "message", ""),
        tags=tags,
        extras=extras,
        rollout_ids=rollout_ids,
    )


def claimed_rollouts(raw: bytes, most: int = 3) -> list[str]:
    """The valid rollout ids a body's tags name, whatever else is wrong with it (for a log line)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return []
    tags = body.get("tags") if isinstance(body, dict) else None
    if not isinstance(tags, list):
        return []
    claimed = []
    for tag in tags:
        if isinstance(tag, str) and tag.startswith(ROLLOUT_TAG):
            try:
                claimed.append(validate_identifier(tag.removeprefix(ROLLOUT_TAG), "tags"))
            except InvalidRequestError:
                continue
    return claimed[:most]


def record_timestamp(extras: dict[str, Any]) -> str | None:
    """``extras.timestamp`` when it is an ISO 8601 date-time (the handler's record time), else None.

    Such a value is when the agent logged, not a date about a person, so it is neither redacted
    (the PII rules would take it for a full date) nor replaced by the time of receipt.
    """
    value = extras.get("timestamp")
    if not isinstance(value, str) or "T" not in value or len(value) > 40:
        return None
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value


def record_severity(extras: dict[str, Any]) -> str:
    """``extras.level`` when it is a logging level name, else ``INFO`` (as ``ep logs`` shows it)."""
    level = extras.get("level")
    return level if isinstance(level, str) and level in LEVEL_NAMES else "INFO"


def parse_logs_query(params: dict[str, list[str]]) -> LogsQuery:
    """``tags`` (repeatable, all must match, one ``rollout_id:`` required), ``limit``, ``hours_back``, ``program``."""
    tags = tuple(tag for tag in params.get("tags", []) if tag)
    rollouts = [tag.removeprefix(ROLLOUT_TAG) for tag in tags if tag.startswith(ROLLOUT_TAG)]
    if not rollouts:
        raise _bad("tags", "at least one 'rollout_id:<id>' tag is required", "invalid_query_parameter")
    for rollout_id in rollouts:
        validate_identifier(rollout_id, "tags")
    limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
    hours_back = _float(params, "hours_back", DEFAULT_HOURS_BACK, 0, MAX_HOURS_BACK)
    return LogsQuery(
        rollout_id=rollouts[0],
        tags=tags,
        limit=limit if limit is not None else DEFAULT_LIMIT,
        hours_back=hours_back if hours_back is not None else DEFAULT_HOURS_BACK,
        program=_single(params, "program"),
    )


def parse_status_query(params: dict[str, list[str]]) -> str:
    """The ``rollout_id`` a ``GET /status`` asks about."""
    rollout_id = _single(params, "rollout_id")
    if rollout_id is None:
        raise _bad("rollout_id", "the query parameter is required", "invalid_query_parameter")
    return validate_identifier(rollout_id, "rollout_id")
