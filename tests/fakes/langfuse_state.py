"""In-memory storage and test controls of the Langfuse emulator.

Tests run in one thread while the emulator's uvicorn loop runs in another, so
every access goes through one re-entrant lock.  Besides storage (raw spans,
merged traces, observations, scores, prompts per project) the state carries
the knobs tests use to reproduce production behaviour: ingestion lag
(``ingestion_delay_s``), spans that never arrive (``drop_next_spans``),
injected HTTP failures (``inject``), and API generations that lack an
endpoint (``legacy_traces_enabled`` / ``v2_enabled``).
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from .langfuse_model import (
    ObservationRecord,
    TraceRecord,
    TraceUpdate,
    span_to_observation,
    span_to_trace_update,
)
from .langfuse_otlp import SpanRecord

__all__ = ["Fault", "LangfuseState", "LoggedRequest", "ProjectData"]

T = TypeVar("T")


@dataclass
class Fault:
    """An injected failure for requests whose path starts with ``prefix``."""

    prefix: str
    status: int
    remaining: int
    retry_after: float | None = None


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    project_id: str | None
    status: int
    time: float

    def param(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]


@dataclass
class ProjectData:
    """Everything one project owns; visible data excludes pending ingestion."""

    public_key: str
    secret_key: str
    spans: list[SpanRecord] = field(default_factory=list)
    traces: dict[str, TraceRecord] = field(default_factory=dict)
    observations: dict[str, ObservationRecord] = field(default_factory=dict)
    observations_by_trace: dict[str, list[ObservationRecord]] = field(default_factory=dict)
    pending: list[tuple[float, TraceUpdate | ObservationRecord]] = field(default_factory=list)
    scores: list[dict[str, Any]] = field(default_factory=list)
    prompts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class LangfuseState:
    """Projects, stored data and fault controls of one emulator instance."""

    def __init__(
        self,
        projects: Mapping[str, tuple[str, str]] | None = None,
        *,
        ingestion_delay_s: float = 0.0,
        server_version: str = "3.120.0",
    ) -> None:
        self.lock = threading.RLock()
        self._initial_delay_s = ingestion_delay_s
        self.ingestion_delay_s = ingestion_delay_s
        self.legacy_traces_enabled = True
        self.v2_enabled = True
        # The OTLP intake's body limit, as an ingress in front of Langfuse sets it (None: no limit).
        self.max_ingest_bytes: int | None = None
        self.server_version = server_version
        self._projects: dict[str, ProjectData] = {}
        self._faults: list[Fault] = []
        self._drops: list[tuple[int, Callable[[SpanRecord], bool]]] = []
        self._log: list[LoggedRequest] = []
        for project_id, (public_key, secret_key) in (projects or {}).items():
            self.add_project(project_id, public_key, secret_key)

    # --- projects and auth ---------------------------------------------------

    def add_project(self, project_id: str, public_key: str, secret_key: str) -> None:
        with self.lock:
            self._projects[project_id] = ProjectData(public_key, secret_key)

    def authenticate(self, public_key: str, secret_key: str) -> str | None:
        """The project owning this key pair, or ``None``."""
        with self.lock:
            for project_id, project in self._projects.items():
                if _same(project.public_key, public_key) and _same(project.secret_key, secret_key):
                    return project_id
        return None

    def project(self, project_id: str) -> ProjectData:
        """Raw access for the HTTP layer (caller holds :attr:`lock`)."""
        try:
            return self._projects[project_id]
        except KeyError:
            raise KeyError(f"unknown project {project_id!r}") from None

    # --- ingestion -------------------------------------------------------------

    def ingest(self, project_id: str, spans: Iterable[SpanRecord]) -> int:
        """Store spans received over OTLP; returns how many were kept."""
        now_dt = datetime.now(UTC)
        visible_at = time.monotonic() + max(self.ingestion_delay_s, 0.0)
        kept = 0
        with self.lock:
            project = self.project(project_id)
            for span in spans:
                if self._should_drop(span):
                    continue
                kept += 1
                project.spans.append(span)
                project.pending.append((visible_at, span_to_trace_update(span, now_dt)))
                project.pending.append((visible_at, span_to_observation(span, project_id, now_dt)))
            self._promote(project_id, project)
        return kept

    def drop_next_spans(self, count: int, predicate: Callable[[SpanRecord], bool] | None = None) -> None:
        """Silently discard the next ``count`` received spans (matching ``predicate``)."""
        with self.lock:
            self._drops.append((count, predicate or (lambda _span: True)))

    def _should_drop(self, span: SpanRecord) -> bool:
        for index, (count, predicate) in enumerate(self._drops):
            if predicate(span):
                if count <= 1:
                    del self._drops[index]
                else:
                    self._drops[index] = (count - 1, predicate)
                return True
        return False

    def refresh(self, project_id: str) -> ProjectData:
        """Apply ingestion whose delay has elapsed; returns the project."""
        with self.lock:
            project = self.project(project_id)
            self._promote(project_id, project)
            return project

    def _promote(self, project_id: str, project: ProjectData) -> None:
        if not project.pending:
            return
        now = time.monotonic()
        waiting: list[tuple[float, TraceUpdate | ObservationRecord]] = []
        for visible_at, item in project.pending:
            if visible_at > now:
                waiting.append((visible_at, item))
            elif isinstance(item, TraceUpdate):
                self._apply_trace(project_id, project, item)
            else:
                self._apply_observation(project, item)
        project.pending = waiting

    @staticmethod
    def _apply_trace(project_id: str, project: ProjectData, update: TraceUpdate) -> None:
        now = datetime.now(UTC)
        trace = project.traces.get(update.trace_id)
        if trace is None:
            trace = TraceRecord(
                id=update.trace_id,
                project_id=project_id,
                timestamp=update.timestamp,
                environment=update.environment,
                created_at=now,
                updated_at=now,
            )
            project.traces[update.trace_id] = trace
        trace.apply(update, now)

    @staticmethod
    def _apply_observation(project: ProjectData, obs: ObservationRecord) -> None:
        previous = project.observations.get(obs.id)
        if previous is not None:
            for name, value in vars(obs).items():
                if value not in (None, {}, []) and name != "created_at":
                    setattr(previous, name, value)
            return
        project.observations[obs.id] = obs
        project.observations_by_trace.setdefault(obs.trace_id, []).append(obs)

    def insert_trace(
        self,
        project_id: str,
        *,
        trace_id: str | None = None,
        name: str | None = "trace",
        tags: Iterable[str] = (),
        user_id: str | None = None,
        session_id: str | None = None,
        timestamp: datetime | None = None,
        environment: str = "default",
        observation_type: str = "GENERATION",
        observations: int = 1,
    ) -> str:
        """Add a visible trace (with simple observations) without going through OTLP."""
        now = datetime.now(UTC)
        ts = timestamp or now
        trace_id = trace_id or uuid.uuid4().hex
        update = TraceUpdate(trace_id, ts, True, environment)
        update.fields = {k: v for k, v in (("name", name), ("user_id", user_id), ("session_id", session_id)) if v}
        update.tags = list(tags)
        with self.lock:
            project = self.project(project_id)
            self._apply_trace(project_id, project, update)
            for index in range(observations):
                start = ts + timedelta(milliseconds=index)
                obs = _simple_observation(project_id, trace_id, start, observation_type, environment)
                self._apply_observation(project, obs)
        return trace_id

    # --- reads for tests ---------------------------------------------------------

    def spans(self, project_id: str) -> list[SpanRecord]:
        """Every span received for the project, as decoded (no delay applied)."""
        with self.lock:
            return list(self.project(project_id).spans)

    def traces(self, project_id: str) -> list[TraceRecord]:
        """Traces currently visible through the read APIs.

        Records are live: later spans of the same trace update them in place.
        """
        with self.lock:
            return list(self.refresh(project_id).traces.values())

    def trace(self, project_id: str, trace_id: str) -> TraceRecord | None:
        with self.lock:
            return self.refresh(project_id).traces.get(trace_id)

    def observations(self, project_id: str, trace_id: str | None = None) -> list[ObservationRecord]:
        with self.lock:
            project = self.refresh(project_id)
            if trace_id is not None:
                return list(project.observations_by_trace.get(trace_id, []))
            return list(project.observations.values())

    def pending_count(self, project_id: str) -> int:
        with self.lock:
            return len(self.refresh(project_id).pending)

    def scores(self, project_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(score) for score in self.project(project_id).scores]

    def wait_for(self, predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.02) -> T:
        """Poll ``predicate`` until it returns a truthy value (or raise TimeoutError)."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(interval)

    # --- scores and prompts ----------------------------------------------------------

    def add_score(self, project_id: str, score: dict[str, Any]) -> None:
        with self.lock:
            self.project(project_id).scores.append(score)

    def add_prompt(
        self,
        project_id: str,
        name: str,
        version: int,
        prompt: str | list[dict[str, Any]],
        *,
        type: str = "text",
        labels: Iterable[str] = (),
        config: dict[str, Any] | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        """Seed a prompt version; its labels move away from other versions."""
        now = datetime.now(UTC)
        labels = list(labels)
        with self.lock:
            versions = self.project(project_id).prompts.setdefault(name, [])
            versions[:] = [v for v in versions if v["version"] != version]
            for other in versions:
                other["labels"] = [label for label in other["labels"] if label not in labels]
            versions.append(
                {
                    "id": uuid.uuid4().hex,
                    "projectId": project_id,
                    "createdAt": now,
                    "updatedAt": now,
                    "createdBy": "API",
                    "name": name,
                    "version": version,
                    "type": type,
                    "prompt": prompt,
                    "config": config or {},
                    "labels": labels,
                    "tags": list(tags),
                    "commitMessage": None,
                }
            )
            versions.sort(key=lambda v: v["version"])
            for entry in versions:
                entry["labels"] = [label for label in entry["labels"] if label != "latest"]
            versions[-1]["labels"].append("latest")

    def find_prompt(self, project_id: str, name: str, version: int | None, label: str | None) -> dict[str, Any] | None:
        with self.lock:
            versions = self.project(project_id).prompts.get(name, [])
            for entry in versions:
                if version is not None and entry["version"] == version:
                    return dict(entry)
                if version is None and (label or "production") in entry["labels"]:
                    return dict(entry)
        return None

    # --- faults and the request log ------------------------------------------------------

    def inject(self, path_prefix: str, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """Answer the next ``count`` requests under ``path_prefix`` with ``status``."""
        with self.lock:
            self._faults.append(Fault(path_prefix, status, count, retry_after))

    def clear_faults(self) -> None:
        """End every injected fault (an outage is over)."""
        with self.lock:
            self._faults.clear()

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            for fault in self._faults:
                if path.startswith(fault.prefix) and fault.remaining > 0:
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def log_request(self, entry: LoggedRequest) -> None:
        with self.lock:
            self._log.append(entry)

    @property
    def request_log(self) -> list[LoggedRequest]:
        with self.lock:
            return list(self._log)

    def requests_to(self, path_prefix: str, method: str | None = None) -> list[LoggedRequest]:
        """Logged requests whose path starts with ``path_prefix``."""
        return [
            r for r in self.request_log if r.path.startswith(path_prefix) and (method is None or r.method == method)
        ]

    def reset(self) -> None:
        """Drop all data, faults and logs; restore delay and API switches; keep projects."""
        with self.lock:
            self.ingestion_delay_s = self._initial_delay_s
            self.legacy_traces_enabled = True
            self.v2_enabled = True
            self.max_ingest_bytes = None
            for project_id, project in self._projects.items():
                self._projects[project_id] = ProjectData(project.public_key, project.secret_key)
            self._faults.clear()
            self._drops.clear()
            self._log.clear()


def _same(expected: str, given: str) -> bool:
    return secrets.compare_digest(expected.encode(), given.encode())


def _simple_observation(
    project_id: str, trace_id: str, start: datetime, kind: str, environment: str
) -> ObservationRecord:
    return ObservationRecord(
        id=secrets.token_hex(8),
        trace_id=trace_id,
        project_id=project_id,
        parent_observation_id=None,
        type=kind,
        name="observation",
        start_time=start,
        end_time=start + timedelta(milliseconds=5),
        completion_start_time=None,
        model=None,
        model_parameters=None,
        usage_details={},
        cost_details={},
        level="DEFAULT",
        status_message=None,
        version=None,
        environment=environment,
        input=None,
        output=None,
        metadata={},
        prompt_name=None,
        prompt_version=None,
        user_id=None,
        session_id=None,
        created_at=start,
        updated_at=start,
    )
