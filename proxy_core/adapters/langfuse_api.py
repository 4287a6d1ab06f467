"""Reading traces back from Langfuse's public HTTP API (httpx, one shared client).

Two read paths exist. ``GET /api/public/v2/observations`` (cursor pages of up to 1 000, a JSON
``filter`` on trace tags, field groups) is the real-time one and the only one Langfuse Cloud
keeps; ``GET /api/public/traces`` (pages of at most 100, ``tags`` ANDed) is all that older
self-hosted servers have. The client prefers v2, falls back to the legacy API when a server
answers 404, and remembers the answer per project for ``MODE_TTL_S``.

One request per page, never one per trace; every request first takes a token from the
project's read budget; 429 and 5xx become ``RetryableError`` carrying ``Retry-After``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx
import orjson

from proxy_core.retry import RetryableError
from proxy_core.services.budget import ReadBudgets
from proxy_core.services.llm import LangfuseTarget
from proxy_core.services.prompts import PromptRef
from proxy_core.services.trace_source import TraceRecord, TracingBackendError

V2_PATH = "/api/public/v2/observations"
LEGACY_PATH = "/api/public/traces"
PROMPTS_PATH = "/api/public/v2/prompts"
V2_PAGE = 1000
LEGACY_PAGE = 100
MODE_TTL_S = 600.0
MAX_PAGES = 2000
V2_FIELDS = "core,basic,io,metadata,trace_context"

Mode = Literal["v2", "legacy"]


class _EndpointMissingError(Exception):
    """The server does not have this read API (404)."""


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def maybe_json(value: Any) -> Any:
    """A JSON document in a string, parsed: how trace input, output and metadata are read back
    (the v2 API returns them as raw strings). The embedded store reads its own this way too."""
    if isinstance(value, str) and value[:1] in ("{", "[", '"'):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _observation(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row.get("id"),
        "type": row.get("type"),
        "name": row.get("name"),
        "start_time": row.get("startTime"),
        "end_time": row.get("endTime"),
        "input": maybe_json(row.get("input")),
        "output": maybe_json(row.get("output")),
        "parent_observation_id": row.get("parentObservationId"),
    }


def _trace(row: dict[str, Any], *, trace_id: str, name: Any, tags: Any, timestamp: Any) -> TraceRecord:
    """The fields both read APIs name alike (user, session, input/output, metadata, release …)."""
    return TraceRecord(
        id=trace_id,
        name=name,
        user_id=row.get("userId"),
        session_id=row.get("sessionId"),
        tags=list(tags or []),
        timestamp=str(timestamp),
        input=maybe_json(row.get("input")),
        output=maybe_json(row.get("output")),
        metadata=row.get("metadata") or {},
        environment=row.get("environment"),
        version=row.get("version"),
        release=row.get("release"),
    )


def traces_from_observations(rows: list[dict[str, Any]]) -> list[TraceRecord]:
    """Group v2 observation rows by trace; trace-level fields live on the root observation."""
    by_trace: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_trace[str(row.get("traceId"))].append(row)
    traces = []
    for trace_id, observations in by_trace.items():
        observations.sort(key=lambda r: str(r.get("startTime") or ""))
        root = next((r for r in observations if not r.get("parentObservationId")), observations[0])
        trace = _trace(
            root,
            trace_id=trace_id,
            name=root.get("traceName") or root.get("name"),
            tags=root.get("tags") or root.get("traceTags"),
            timestamp=root.get("startTime"),
        )
        trace.observations = [_observation(r) for r in observations]
        traces.append(trace)
    return traces


def trace_from_legacy(row: dict[str, Any]) -> TraceRecord:
    """A legacy list row; it carries observation ids only, so no observation bodies are returned."""
    return _trace(
        row, trace_id=str(row.get("id")), name=row.get("name"), tags=row.get("tags"), timestamp=row.get("timestamp")
    )


class LangfuseReadClient:
    """Implements ``TraceSource`` over Langfuse's public read APIs."""

    def __init__(self, client: httpx.AsyncClient, budgets: ReadBudgets) -> None:
        self._client = client
        self._budgets = budgets
        self._modes: dict[str, tuple[Mode, float]] = {}

    @staticmethod
    def _key(target: LangfuseTarget) -> str:
        return f"{target.host}|{target.public_key}"

    async def _get(self, target: LangfuseTarget, path: str, pairs: Sequence[tuple[str, str]], deadline: float) -> Any:
        params = httpx.QueryParams(list(pairs))
        await self._budgets.for_key(self._key(target)).acquire(deadline)
        try:
            response = await self._client.get(
                f"{target.host}{path}",
                params=params,
                auth=(target.public_key, target.secret_key),
                timeout=max(0.5, min(30.0, deadline - time.monotonic())),
            )
        except httpx.HTTPError as exc:
            raise RetryableError(f"Langfuse could not be reached ({type(exc).__name__})") from exc
        if response.status_code == 200:
            return orjson.loads(response.content)
        if response.status_code == 404:
            raise _EndpointMissingError(path)
        if response.status_code in (408, 409, 429) or response.status_code >= 500:
            raise RetryableError(f"Langfuse answered {response.status_code}", retry_after_s=_retry_after(response))
        raise TracingBackendError(
            f"Langfuse refused the read for project {target.project_id!r} (HTTP {response.status_code})."
        )

    async def rollout_traces(
        self, target: LangfuseTarget, tags: tuple[str, ...], *, deadline: float
    ) -> list[TraceRecord]:
        key = self._key(target)
        cached = self._modes.get(key)
        order: tuple[Mode, ...] = ("v2", "legacy")
        if cached is not None and cached[1] > time.monotonic():
            order = (cached[0],)
        for mode in order:
            try:
                traces = await (self._read_v2 if mode == "v2" else self._read_legacy)(target, tags, deadline)
            except _EndpointMissingError:
                continue
            self._modes[key] = (mode, time.monotonic() + MODE_TTL_S)
            return traces
        self._modes.pop(key, None)
        raise TracingBackendError(f"Langfuse at {target.host} offers neither trace read API.")

    async def _read_v2(self, target: LangfuseTarget, tags: tuple[str, ...], deadline: float) -> list[TraceRecord]:
        tag_filter = orjson.dumps(
            [{"type": "arrayOptions", "column": "tags", "operator": "all of", "value": list(tags)}]
        )
        base = [("fields", V2_FIELDS), ("limit", str(V2_PAGE)), ("filter", tag_filter.decode())]
        rows: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._get(target, V2_PATH, base + ([("cursor", cursor)] if cursor else []), deadline)
            rows.extend(page.get("data") or [])
            cursor = (page.get("meta") or {}).get("cursor")
            if not cursor:
                break
        return traces_from_observations(rows)

    async def _read_legacy(self, target: LangfuseTarget, tags: tuple[str, ...], deadline: float) -> list[TraceRecord]:
        base = [("tags", tag) for tag in tags] + [("limit", str(LEGACY_PAGE)), ("fields", "core,io")]
        traces: list[TraceRecord] = []
        for page_number in range(1, MAX_PAGES + 1):
            page = await self._get(target, LEGACY_PATH, [*base, ("page", str(page_number))], deadline)
            rows = page.get("data") or []
            traces.extend(trace_from_legacy(row) for row in rows)
            total_pages = (page.get("meta") or {}).get("totalPages") or 0
            if page_number >= total_pages or len(rows) < LEGACY_PAGE:
                break
        return traces

    async def fetch_prompt(self, target: LangfuseTarget, ref: PromptRef, *, deadline: float) -> dict[str, Any] | None:
        """``GET /api/public/v2/prompts/{name}`` (folder slashes kept); None when there is no such prompt."""
        params = [("version", str(ref.version))] if ref.version is not None else []
        params += [("label", ref.label)] if ref.label is not None else []
        try:
            document = await self._get(target, f"{PROMPTS_PATH}/{quote(ref.name, safe='/')}", params, deadline)
        except _EndpointMissingError:
            return None
        return document if isinstance(document, dict) else None

    async def trace_exists(self, target: LangfuseTarget, trace_id: str, *, deadline: float) -> bool:
        """Whether the project holds ``trace_id`` (one small read on whichever API the server has)."""
        try:
            page = await self._get(target, V2_PATH, [("traceId", trace_id), ("limit", "1")], deadline)
            return bool(page.get("data"))
        except _EndpointMissingError:
            pass
        try:
            await self._get(target, f"{LEGACY_PATH}/{quote(trace_id, safe='')}", [("fields", "core")], deadline)
        except _EndpointMissingError:
            return False
        return True

    async def create_score(self, target: LangfuseTarget, score: dict[str, Any], *, deadline: float) -> str | None:
        """``POST /api/public/scores`` (one object, the server's documented form); the score id."""
        await self._budgets.for_key(self._key(target)).acquire(deadline)
        try:
            response = await self._client.post(
                f"{target.host}/api/public/scores",
                content=orjson.dumps(score),
                headers={"content-type": "application/json"},
                auth=(target.public_key, target.secret_key),
                timeout=max(0.5, min(30.0, deadline - time.monotonic())),
            )
        except httpx.HTTPError as exc:
            raise RetryableError(f"Langfuse could not be reached ({type(exc).__name__})") from exc
        if response.status_code in (200, 201, 202):
            body = orjson.loads(response.content) if response.content else {}
            return body.get("id") if isinstance(body, dict) else None
        if response.status_code == 429 or response.status_code >= 500:
            raise RetryableError(f"Langfuse answered {response.status_code}", retry_after_s=_retry_after(response))
        raise TracingBackendError(
            f"Langfuse refused the score for project {target.project_id!r} (HTTP {response.status_code}).",
            status_code=400 if response.status_code == 400 else 502,
        )

    async def aclose(self) -> None:
        await self._client.aclose()
