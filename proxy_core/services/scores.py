"""``POST /scores``: feedback on a completion, sent to the completion's Langfuse project.

Evaluation harnesses know a completion by its insertion id, not by its Langfuse trace id, so a
score may name either; an insertion id is resolved through the same tag lookup ``/traces`` uses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from proxy_core.errors import InvalidRequestError, NotFoundError, UpstreamTimeoutError
from proxy_core.ids import validate_identifier
from proxy_core.retry import RetryableError, retrying
from proxy_core.services.auth import AuthProvider
from proxy_core.services.llm import LangfuseTarget
from proxy_core.services.projects import ProjectDirectory, authorize, require_tracing
from proxy_core.services.trace_source import INSERTION_TAG, TraceSource

DATA_TYPES = frozenset({"NUMERIC", "BOOLEAN", "CATEGORICAL"})
SCORE_DEADLINE_S = 15.0
MAX_COMMENT = 4000


def _bad(message: str, param: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=param, code="invalid_value")


def parse_score(body: dict[str, Any]) -> tuple[str | None, str | None, dict[str, Any]]:
    """(trace_id, insertion_id, Langfuse score fields) from a request body; 400 on anything wrong."""
    trace_id, insertion_id = body.get("trace_id"), body.get("insertion_id")
    if (trace_id is None) == (insertion_id is None):
        raise _bad("Give exactly one of 'trace_id' and 'insertion_id'.", "trace_id")
    for field, given in (("trace_id", trace_id), ("insertion_id", insertion_id)):
        if given is not None and not isinstance(given, str):
            raise _bad(f"'{field}' must be a string.", field)
    unknown = set(body) - {"trace_id", "insertion_id", "name", "value", "comment", "data_type"}
    if unknown:
        raise _bad(f"Unknown field(s): {', '.join(sorted(unknown))}.", sorted(unknown)[0])
    name: Any = body.get("name")
    value: Any = body.get("value")
    if not isinstance(name, str) or not 0 < len(name) <= 200:
        raise _bad("'name' must be a string of 1–200 characters.", "name")
    data_type = body.get("data_type")
    if data_type is None:
        data_type = "BOOLEAN" if isinstance(value, bool) else "CATEGORICAL" if isinstance(value, str) else "NUMERIC"
    if not isinstance(data_type, str) or data_type not in DATA_TYPES:  # a list or object is unhashable
        raise _bad(f"'data_type' must be one of {', '.join(sorted(DATA_TYPES))}.", "data_type")
    if isinstance(value, bool):
        value = 1 if value else 0
    if data_type == "CATEGORICAL" and not isinstance(value, str):
        raise _bad("A CATEGORICAL score needs a string value.", "value")
    if data_type != "CATEGORICAL" and not isinstance(value, int | float):
        raise _bad(f"A {data_type} score needs a numeric value.", "value")
    if data_type == "BOOLEAN" and value not in (0, 1):
        raise _bad("A BOOLEAN score must be true/false or 0/1.", "value")
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise _bad(f"'comment' must be a string of at most {MAX_COMMENT} characters.", "comment")
    fields: dict[str, Any] = {"name": name, "value": value, "dataType": data_type}
    if comment is not None:
        fields["comment"] = comment
    return trace_id, insertion_id, fields


class ScoresService:
    def __init__(self, *, source: TraceSource, auth: AuthProvider, projects: ProjectDirectory) -> None:
        self._source = source
        self._auth = auth
        self._projects = projects

    async def create(
        self, headers: Mapping[str, str], path_project: str | None, body: dict[str, Any]
    ) -> dict[str, Any]:
        trace_id, insertion_id, fields = parse_score(body)
        _, project = await authorize(self._auth, self._projects, headers, path_project)
        target = require_tracing(project)
        deadline = time.monotonic() + SCORE_DEADLINE_S
        try:
            return await self._send(target, trace_id, insertion_id, fields, deadline)
        except RetryableError as exc:
            raise UpstreamTimeoutError(
                f"The trace store did not accept the score: {exc}", code="langfuse_unavailable"
            ) from exc

    async def _send(
        self,
        target: LangfuseTarget,
        trace_id: str | None,
        insertion_id: str | None,
        fields: dict[str, Any],
        deadline: float,
    ) -> dict[str, Any]:
        if insertion_id is not None:
            validate_identifier(insertion_id, "insertion_id")
            traces = await self._source.rollout_traces(target, (INSERTION_TAG + insertion_id,), deadline=deadline)
            if not traces:
                raise NotFoundError(
                    f"No trace carries insertion_id {insertion_id!r} (yet) in this project.",
                    param="insertion_id",
                    code="trace_not_found",
                )
            trace_id = traces[0].id
        elif trace_id is None or not await self._source.trace_exists(target, trace_id, deadline=deadline):
            raise NotFoundError(
                f"Trace {trace_id!r} does not exist in this project.", param="trace_id", code="trace_not_found"
            )
        score = {"traceId": trace_id, **fields}
        score_id: str | None = await retrying(attempts=3, deadline=deadline)(
            self._source.create_score, target, score, deadline=deadline
        )
        return {"id": score_id, "trace_id": trace_id, "project_id": target.project_id or None, **fields}
