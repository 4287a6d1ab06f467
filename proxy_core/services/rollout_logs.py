"""Remote rollouts: the agent's log records in, the rollout's status and log entries out.

eval-protocol's ``RemoteRolloutProcessor`` starts a rollout on the user's agent, then polls
``/status`` about once a second until the code is no longer RUNNING, reads the terminal entry's
message and extras once from ``/logs``, and reads the trace from ``/traces/pointwise``. The agent
reports through a log handler that posts every record carrying a rollout id to ``/logs``. Records
are kept in the rollout store beside the rollout's insertion ids (same prefix, same TTL), so they
survive a restart and every replica sees them; their text is sanitized with the project's PII
rules before it is kept. ``/status`` is one store read: it is polled per in-flight rollout.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import orjson

from proxy_core.errors import AuthenticationError, PayloadTooLargeError, StoreUnavailableError
from proxy_core.services.auth import AuthProvider, bearer_token
from proxy_core.services.breaker import BreakerState, CircuitBreaker
from proxy_core.services.projects import ProjectDirectory, authorize
from proxy_core.services.rollout_log_records import (
    ID_TAG_PREFIXES,
    LogPost,
    parse_log_post,
    parse_logs_query,
    parse_status_query,
    record_severity,
    record_timestamp,
)
from proxy_core.services.sanitizer import RequestRedaction, Sanitizer

T = TypeVar("T")
ENTRY_FIELDS = ("timestamp", "message", "severity", "tags", "status", "extras")
NO_STATUS = {"status": None, "extras": None}


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """One record as kept: its entry (JSON) under each rollout it names, and, when it carries a
    status, the ``/status`` fields (JSON ``{"status", "extras"}``) that replace the rollouts' last."""

    rollout_ids: tuple[str, ...]
    entry: bytes
    status: bytes | None


class RolloutLogStore(Protocol):
    """Each rollout's log entries (newest first, bounded in count) and its latest status.

    Raises ``StoreUnavailableError`` when the store cannot be reached.
    """

    async def append(self, project_id: str, record: StoredRecord) -> str | None:
        """Keep ``record`` under every rollout it names, or under none: then return the rollout
        whose log is full. A record with a status is never refused; the oldest entry makes room."""
        ...

    async def entries(self, project_id: str, rollout_id: str) -> Sequence[str | bytes]:
        """The rollout's entries as stored (JSON text), newest first."""
        ...

    async def latest_status(self, project_id: str, rollout_id: str) -> str | bytes | None:
        """The ``/status`` fields of the rollout's latest record with a status, None before one."""
        ...


def _now_stamp() -> str:
    """The time of receipt in the handler's own format, for records that carry no time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def sanitized_record(post: LogPost, redaction: RequestRedaction, received_at: float) -> tuple[dict[str, Any], Any]:
    """The entry to keep (text redacted, evaluation-id tags and the record's own time verbatim)."""
    timestamp = record_timestamp(post.extras)
    message = redaction.text(post.message)
    status = None
    if post.status is not None:
        status_message = post.status["message"]
        status = {
            "code": post.status["code"],
            "message": redaction.text(status_message) if isinstance(status_message, str) else None,
            "details": redaction.value(post.status["details"]),
        }
    extras = {
        key: value if key == "timestamp" and timestamp is not None else redaction.value(value)
        for key, value in post.extras.items()
    }
    entry = {
        "timestamp": timestamp or _now_stamp(),
        "message": message,
        "severity": record_severity(post.extras),
        "tags": [tag if tag.startswith(ID_TAG_PREFIXES) else redaction.text(tag) for tag in post.tags],
        "status": status,
        "extras": extras,
        "program": redaction.text(post.program),
        "received_at": received_at,
    }
    return entry, status


class RolloutLogsService:
    def __init__(
        self,
        *,
        store: RolloutLogStore,
        auth: AuthProvider,
        projects: ProjectDirectory,
        sanitizer: Sanitizer,
        max_entry_bytes: int,
    ) -> None:
        self._store = store
        self._auth = auth
        self._projects = projects
        self._sanitizer = sanitizer
        self._max_entry_bytes = max_entry_bytes
        self._breaker = CircuitBreaker()

    async def _project(self, headers: Mapping[str, str], path_project: str | None) -> str:
        """The store namespace of the project the caller named (or the default): 401/403/404."""
        try:
            _, project = await authorize(self._auth, self._projects, headers, path_project)
        except AuthenticationError as exc:
            if bearer_token(headers) != "None":
                raise
            raise AuthenticationError(
                f"{exc.message} The client sent 'Bearer None', as eval-protocol does when FIREWORKS_API_KEY "
                "is unset: set it to a gateway key.",
                code=exc.code,
            ) from None
        return project.store_id

    async def post(self, headers: Mapping[str, str], path_project: str | None, raw: bytes) -> None:
        """Keep one posted record; 400 for a body the reader could not use, 413 past a bound."""
        project_id = await self._project(headers, path_project)
        self._check_size(len(raw))
        post = parse_log_post(raw)
        entry, status = sanitized_record(post, self._sanitizer.for_stored_text(project_id), time.time())
        encoded = orjson.dumps(entry)
        self._check_size(len(encoded))
        record = StoredRecord(
            post.rollout_ids,
            encoded,
            orjson.dumps({"status": status, "extras": entry["extras"]}) if status is not None else None,
        )
        full = await self._guarded(lambda: self._store.append(project_id, record))
        if full is not None:
            raise PayloadTooLargeError(
                f"The log of rollout {full!r} holds its maximum number of entries; records without a status "
                "are refused until it expires (a record with a status is still kept, in place of the oldest).",
                param="tags",
                code="rollout_log_full",
            )

    def _check_size(self, size: int) -> None:
        if size > self._max_entry_bytes:
            raise PayloadTooLargeError(
                f"A log record may be at most {self._max_entry_bytes} bytes (ROLLOUT_LOG_MAX_ENTRY_BYTES).",
                code="log_entry_too_large",
            )

    async def search(
        self, headers: Mapping[str, str], path_project: str | None, params: dict[str, list[str]]
    ) -> dict[str, Any]:
        """The rollout's entries that carry every tag asked for, newest first."""
        project_id = await self._project(headers, path_project)
        query = parse_logs_query(params)
        redaction = self._sanitizer.for_stored_text(project_id)  # free-text tags are kept redacted
        wanted = {tag if tag.startswith(ID_TAG_PREFIXES) else redaction.text(tag) for tag in query.tags}
        program = redaction.text(query.program) if query.program is not None else None
        stored = await self._guarded(lambda: self._store.entries(project_id, query.rollout_id))
        since = time.time() - query.hours_back * 3600
        entries: list[dict[str, Any]] = []
        for raw in stored:
            entry = orjson.loads(raw)
            if entry["received_at"] < since or (program is not None and entry["program"] != program):
                continue
            if wanted.issubset(entry["tags"]):
                entries.append({field: entry[field] for field in ENTRY_FIELDS})
                if len(entries) == query.limit:
                    break
        return {"entries": entries}

    async def status(
        self, headers: Mapping[str, str], path_project: str | None, params: dict[str, list[str]]
    ) -> dict[str, Any]:
        """The latest status logged for the rollout; ``status: null`` (not 404) before there is one."""
        project_id = await self._project(headers, path_project)
        rollout_id = parse_status_query(params)
        latest = await self._guarded(lambda: self._store.latest_status(project_id, rollout_id))
        fields = orjson.loads(latest) if latest is not None else NO_STATUS
        return {"rollout_id": rollout_id, **fields}

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """Fail fast while the store is known to be down: ``/status`` is polled every second."""
        if self._breaker.state is BreakerState.OPEN:
            raise StoreUnavailableError(
                "The rollout store is unavailable; nothing was read or kept.",
                retry_after_s=self._breaker.retry_after_s(),
            )
        try:
            result = await call()
        except StoreUnavailableError:
            self._breaker.failed()
            raise
        self._breaker.succeeded()
        return result
