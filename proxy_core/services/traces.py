"""``/traces``: a rollout's traces, returned only when every recorded insertion id is visible.

The rollout store says which insertion ids a rollout produced; Langfuse says which traces it
holds. The answer is complete when the first set is contained in the second. Langfuse ingests
asynchronously, so the service polls — one filtered, paginated list read per poll, with
jittered exponential backoff, ``Retry-After`` honoured, and a total deadline — and answers
404 ``traces_incomplete`` naming the missing ids rather than ever returning a partial set as
if it were whole. What it returns is exactly the recorded ids' traces: a traced call that was
never recorded is no step of the rollout. Concurrent calls for the same rollout share each read
(``SingleFlight``); each waits for a shared read no longer than its own ``timeout_s``, and a read
nobody waits for any more (every client disconnected) is cancelled.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from proxy_core.errors import NotFoundError, RateLimitError, UpstreamTimeoutError
from proxy_core.retry import RetryableError, retrying
from proxy_core.services.auth import AuthProvider
from proxy_core.services.budget import reading_for
from proxy_core.services.llm import LangfuseTarget
from proxy_core.services.metrics import GatewayMetrics, NoMetrics
from proxy_core.services.projects import ProjectDirectory, authorize, require_tracing
from proxy_core.services.single_flight import SingleFlight
from proxy_core.services.store import GuardedStore
from proxy_core.services.trace_source import INSERTION_TAG, TraceRecord, TraceSource
from proxy_core.services.traces_query import ROLLOUT_TAG, TracesQuery

MAX_MISSING_LISTED = 100
MAX_POLLS = 10_000
# How a /traces wait ended (``gateway_traces_wait_seconds{outcome}``).
WAIT_COMPLETE = "complete"
WAIT_INCOMPLETE = "incomplete"
WAIT_RATE_LIMITED = "rate_limited"
WAIT_UNAVAILABLE = "unavailable"
WAIT_CANCELLED = "cancelled"
WAIT_ERROR = "error"


class TracesIncompleteError(NotFoundError):
    """Some recorded insertion ids never became visible before the deadline."""

    default_code = "traces_incomplete"


@dataclass(frozen=True, slots=True)
class _Poll:
    traces: list[TraceRecord]
    missing: frozenset[str]


def _parse_time(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _matches(trace: TraceRecord, query: TracesQuery) -> bool:
    """The client's optional filters, applied after the completeness check."""
    checks = (
        (query.user_id, trace.user_id),
        (query.session_id, trace.session_id),
        (query.name, trace.name),
        (query.version, trace.version),
        (query.release, trace.release),
    )
    if any(wanted is not None and wanted != actual for wanted, actual in checks):
        return False
    if query.environment and trace.environment not in query.environment:
        return False
    if not set(query.tags) <= set(trace.tags):
        return False
    if query.from_timestamp or query.to_timestamp:
        stamp = _parse_time(trace.timestamp)
        if stamp is None:
            return False
        if query.from_timestamp and stamp < query.from_timestamp:
            return False
        if query.to_timestamp and stamp >= query.to_timestamp:
            return False
    return True


class TracesService:
    def __init__(
        self,
        *,
        store: GuardedStore,
        source: TraceSource,
        auth: AuthProvider,
        projects: ProjectDirectory,
        max_poll_interval_s: float = 2.0,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._metrics = metrics or NoMetrics()
        self._max_poll_interval_s = max_poll_interval_s
        self._store = store
        self._source = source
        self._auth = auth
        self._projects = projects
        self._reads = SingleFlight()

    async def _target(self, headers: Mapping[str, str], path_project: str | None, query: TracesQuery) -> LangfuseTarget:
        project_id = path_project if path_project is not None else query.project_id
        _, project = await authorize(self._auth, self._projects, headers, project_id)
        return require_tracing(project)

    async def _expected(self, project_id: str, rollout_id: str) -> set[str]:
        expected = await self._store.insertion_ids(project_id, rollout_id)
        if not expected:
            raise NotFoundError(
                f"Rollout {rollout_id!r} has no recorded completions in this project.",
                param="tags",
                code="rollout_not_found",
            )
        return expected

    async def rollout_status(
        self, headers: Mapping[str, str], path_project: str | None, rollout_id: str
    ) -> dict[str, Any]:
        """What the store knows of a rollout, without touching Langfuse (cheap enough to poll)."""
        _, project = await authorize(self._auth, self._projects, headers, path_project)
        status = await self._store.status(project.store_id, rollout_id)
        if status.count == 0:
            raise NotFoundError(
                f"Rollout {rollout_id!r} has no recorded completions in this project.",
                param="rollout_id",
                code="rollout_not_found",
            )
        return {
            "project_id": project.store_id or None,  # None: calls that named no project
            "rollout_id": rollout_id,
            "expected_count": status.count,
            "first_insertion_id": status.first_insertion_id,
            "last_insertion_id": status.last_insertion_id,
            "ttl_s": status.ttl_s,
            "prompt_tokens": status.prompt_tokens,
            "completion_tokens": status.completion_tokens,
            "cost_usd": round(status.cost_usd, 10),
        }

    async def all_traces(
        self, headers: Mapping[str, str], path_project: str | None, query: TracesQuery
    ) -> dict[str, Any]:
        """The traces of exactly the rollout's recorded insertion ids, once all are visible.

        A trace whose insertion id was never recorded (its call was answered with an error after
        the provider ran: the store refused it, the client went away) carries the rollout's tag
        too; returning it would hand a harness a step it was told had failed.
        """
        target = await self._target(headers, path_project, query)
        expected = await self._expected(target.project_id, query.rollout_id)
        traces = await self._poll_until_complete(target, (ROLLOUT_TAG + query.rollout_id,), expected, query)
        selected = [trace for trace in traces if trace.insertion_ids() & expected and _matches(trace, query)]
        selected.sort(key=lambda trace: trace.timestamp, reverse=True)
        if query.sample_size is not None and query.sample_size < len(selected):
            selected = random.sample(selected, query.sample_size)
        selected = selected[: query.limit]
        return self._response(target.project_id, selected, query)

    async def latest_trace(
        self, headers: Mapping[str, str], path_project: str | None, query: TracesQuery
    ) -> dict[str, Any]:
        """The trace of the newest insertion id (UUID7 order), which holds the whole conversation.

        The client's filters apply to it as they do on ``/traces``: a newest trace that does not
        match them (another user, outside the time window, missing a tag) is not returned.
        """
        target = await self._target(headers, path_project, query)
        latest = max(await self._expected(target.project_id, query.rollout_id))
        tags = (ROLLOUT_TAG + query.rollout_id, INSERTION_TAG + latest)
        traces = await self._poll_until_complete(target, tags, {latest}, query)
        chosen = [trace for trace in traces if latest in trace.insertion_ids() and _matches(trace, query)][:1]
        return self._response(target.project_id, chosen, query)

    @staticmethod
    def _response(project_id: str, traces: list[TraceRecord], query: TracesQuery) -> dict[str, Any]:
        return {
            "project_id": project_id or None,  # None: calls that named no project
            "total_traces": len(traces),
            "traces": [trace.to_response(query.fields) for trace in traces],
        }

    async def _read(self, target: LangfuseTarget, tags: tuple[str, ...], expected: set[str], deadline: float) -> _Poll:
        traces: list[TraceRecord] = await self._reads.run(
            (target.project_id, tags),
            lambda: self._source.rollout_traces(target, tags, deadline=deadline),
            deadline=deadline,
        )
        found: set[str] = set()
        for trace in traces:
            found |= trace.insertion_ids()
        return _Poll(traces, frozenset(expected - found))

    async def _poll_until_complete(
        self, target: LangfuseTarget, tags: tuple[str, ...], expected: set[str], query: TracesQuery
    ) -> list[TraceRecord]:
        started = time.monotonic()
        outcome = WAIT_ERROR
        try:
            traces = await self._wait_until_complete(target, tags, expected, query)
            outcome = WAIT_COMPLETE
            return traces
        except TracesIncompleteError:
            outcome = WAIT_INCOMPLETE
            raise
        except RateLimitError:
            outcome = WAIT_RATE_LIMITED
            raise
        except UpstreamTimeoutError:
            outcome = WAIT_UNAVAILABLE
            raise
        except asyncio.CancelledError:
            outcome = WAIT_CANCELLED
            raise
        finally:
            self._metrics.traces_wait(target.project_id, outcome, time.monotonic() - started)

    async def _wait_until_complete(
        self, target: LangfuseTarget, tags: tuple[str, ...], expected: set[str], query: TracesQuery
    ) -> list[TraceRecord]:
        """Poll until complete. ``max_retries`` keeps the original gateway's waiting budget.

        The original slept 1, 2, 4 … seconds between its ``max_retries`` passes, so a client asking
        for n retries expects to be waited for up to 2^n − 1 seconds. The gateway polls more often
        than that (an answer comes at most ``max_poll_interval_s`` after the traces are visible)
        but gives up no sooner, and never after ``timeout_s``.
        """
        started = time.monotonic()
        deadline = started + query.timeout_s
        wait_budget = min(query.timeout_s, 2.0**query.max_retries - 1)
        last: _Poll | None = None

        async def read() -> _Poll:
            nonlocal last
            last = await self._read(target, tags, expected, deadline)
            return last

        try:
            with reading_for(query.rollout_id):  # the read budget is shared fairly between rollouts
                poll: _Poll = await retrying(
                    attempts=MAX_POLLS,
                    deadline=started + wait_budget,
                    cap_s=self._max_poll_interval_s,
                    until=lambda p: not p.missing,
                )(read)
        except RetryableError as exc:
            if last is not None:  # the deadline came while waiting to read again: the last read stands
                poll = last
            elif exc.retry_after_s is not None:
                raise RateLimitError(
                    "Langfuse is rate-limiting reads for this project; try again later.",
                    headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
                    code="langfuse_rate_limited",
                ) from exc
            else:
                raise UpstreamTimeoutError(
                    f"The trace store did not answer in time: {exc}", code="langfuse_unavailable"
                ) from exc
        if poll.missing:
            missing = sorted(poll.missing)
            raise TracesIncompleteError(
                f"Incomplete traces for rollout_id {query.rollout_id!r}: found "
                f"{len(expected) - len(missing)} of {len(expected)} after waiting {time.monotonic() - started:.1f}s.",
                param="tags",
                extra={
                    "expected": len(expected),
                    "found": len(expected) - len(missing),
                    "missing": missing[:MAX_MISSING_LISTED],
                },
            )
        return poll.traces
