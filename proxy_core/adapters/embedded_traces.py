"""The embedded trace store: traces kept inside the gateway's deployment when no Langfuse is set.

Without it, a gateway with no Langfuse project traced nothing, and ``/traces`` — the second half
of an evaluation's loop — could not be tried without first standing Langfuse up. The store has
two sides:

* the write side is an OTLP intake, ``ingest(project_id, otlp_json)``: it takes the very body the
  export pipeline would post to Langfuse and maps its spans as Langfuse does (``trace_mapping``);
* the read side implements ``TraceSource``, so ``/traces``, ``/traces/pointwise`` and ``/scores``
  read it exactly as they read Langfuse (there are no managed prompts in it).

Where the spans live is a ``TraceBackend``: in process (``MemoryTraceBackend``, bounded in bytes
and by the rollout TTL) or in Redis (``redis_traces.RedisTraceBackend``, shared by workers). Each
project's traces are kept apart, keyed by the project id the export's credentials name.

Projects reach the store through ordinary trace targets (``LangfuseTarget``) whose host is
``EMBEDDED_HOST``, a name that can never resolve, and whose public key carries the project id.
The trace delivery posts their span batches to ``EmbeddedOrLangfuseIntake`` and the services read
through ``EmbeddedOrLangfuseSource``: each sends a target to the embedded store or to Langfuse by
its host, so Langfuse projects a refresh of the secrets brings take over without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from proxy_core.adapters.memory_tables import Shrinking
from proxy_core.adapters.otlp_spans import OtlpDecodeError, decode_spans
from proxy_core.adapters.trace_mapping import entry_tags, span_entry, trace_record
from proxy_core.retry import RetryableError
from proxy_core.services.llm import LangfuseTarget
from proxy_core.services.prompts import PromptRef
from proxy_core.services.trace_ports import IntakeRejectedError, IntakeUnavailableError, TraceIntake
from proxy_core.services.trace_source import INSERTION_TAG, TraceRecord, TraceSource, TracingBackendError

logger = logging.getLogger("proxy_core.tracing")

EMBEDDED_HOST = "http://embedded-trace-store.invalid"
PUBLIC_KEY_PREFIX = "pk-embedded-"
# The credentials never leave the process (the exporter for EMBEDDED_HOST is in-process); LiteLLM
# only builds a project's exporter when a secret key is present.
EMBEDDED_SECRET_KEY = "sk-embedded"


def embedded_public_key(project_id: str) -> str:
    """The public key naming ``project_id`` (base64url: ids may hold ``:``, Basic auth's separator)."""
    return PUBLIC_KEY_PREFIX + base64.urlsafe_b64encode(project_id.encode()).decode().rstrip("=")


def embedded_target(project_id: str) -> LangfuseTarget:
    """The trace target that sends ``project_id``'s spans to the embedded store."""
    return LangfuseTarget(project_id, embedded_public_key(project_id), EMBEDDED_SECRET_KEY, EMBEDDED_HOST)


def project_of(public_key: str) -> str | None:
    """The project id an embedded public key names; None for any other key."""
    if not public_key.startswith(PUBLIC_KEY_PREFIX):
        return None
    encoded = public_key.removeprefix(PUBLIC_KEY_PREFIX)
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class SpanWrite:
    """One span to keep: its trace, its id, the trace tags it carries and its encoded entry."""

    trace_id: str
    span_id: str
    tags: tuple[str, ...]
    entry: bytes


class TraceBackend(Protocol):
    """Where the embedded store keeps spans; every call is scoped to one project."""

    async def write(self, project_id: str, spans: list[SpanWrite]) -> None: ...

    async def traces_tagged(self, project_id: str, tag: str) -> dict[str, list[bytes]]:
        """Every live trace carrying ``tag``: trace id → its spans' entries."""
        ...

    async def has_trace(self, project_id: str, trace_id: str) -> bool: ...

    async def add_score(self, project_id: str, trace_id: str, score_id: str, score: bytes) -> None: ...

    async def aclose(self) -> None: ...


class EmbeddedTraceStore:
    """The OTLP intake and the ``TraceSource`` over one backend (module docstring)."""

    def __init__(self, backend: TraceBackend) -> None:
        self._backend = backend

    @property
    def backend(self) -> TraceBackend:
        """Where the spans live (in process, it is also swept for expired traces)."""
        return self._backend

    async def ingest(self, project_id: str, otlp_json: bytes) -> None:
        """Keep every span of one OTLP/JSON export for ``project_id``; a malformed one keeps none."""
        try:
            spans = decode_spans(otlp_json)
        except OtlpDecodeError as exc:
            raise TracingBackendError(f"The trace export is not valid OTLP/JSON: {exc}", status_code=400) from exc
        writes = []
        for span in spans:
            entry = span_entry(span)
            writes.append(SpanWrite(span.trace_id, span.span_id, tuple(entry_tags(entry)), orjson.dumps(entry)))
        if writes:
            await self._backend.write(project_id, writes)

    async def rollout_traces(
        self, target: LangfuseTarget, tags: tuple[str, ...], *, deadline: float
    ) -> list[TraceRecord]:
        if not tags:
            return []
        # One tag's index narrows the search (an insertion id names one trace); the others filter.
        index_tag = next((tag for tag in tags if tag.startswith(INSERTION_TAG)), tags[0])
        found = await self._bounded(self._backend.traces_tagged(target.project_id, index_tag), deadline)
        traces = []
        for trace_id, entries in found.items():
            trace = trace_record(trace_id, [orjson.loads(entry) for entry in entries])
            if trace is not None and set(tags) <= set(trace.tags):
                traces.append(trace)
        return traces

    async def trace_exists(self, target: LangfuseTarget, trace_id: str, *, deadline: float) -> bool:
        return bool(await self._bounded(self._backend.has_trace(target.project_id, trace_id.lower()), deadline))

    async def create_score(self, target: LangfuseTarget, score: dict[str, Any], *, deadline: float) -> str | None:
        """Keep the score beside its trace (with the trace's lifetime), as Langfuse keeps it."""
        score_id = str(uuid.uuid4())
        document = orjson.dumps({"id": score_id, **score, "timestamp": time.time()})
        trace_id = str(score["traceId"]).lower()
        await self._bounded(self._backend.add_score(target.project_id, trace_id, score_id, document), deadline)
        return score_id

    async def fetch_prompt(self, target: LangfuseTarget, ref: PromptRef, *, deadline: float) -> dict[str, Any] | None:
        """Managed prompts live in Langfuse; the embedded store has none."""
        return None

    async def aclose(self) -> None:
        await self._backend.aclose()

    @staticmethod
    async def _bounded(call: Any, deadline: float) -> Any:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await call
        except TimeoutError as exc:
            raise RetryableError("the embedded trace store did not answer in time") from exc


@dataclass(slots=True)
class _Trace:
    spans: dict[str, bytes] = field(default_factory=dict)
    scores: dict[str, bytes] = field(default_factory=dict)
    tags: set[str] = field(default_factory=set)
    size: int = 0
    expires: float = 0.0


class MemoryTraceBackend:
    """Spans in this process: bounded in bytes (oldest trace out first) and by the TTL.

    Traces are kept in the order they were last written; as every write renews the TTL, that is
    also the order in which they expire, so expired traces are always at the front. They expire
    when the store is next used and in the background (``sweep_expired``).
    """

    def __init__(self, *, ttl_s: float, max_bytes: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._traces: OrderedDict[tuple[str, str], _Trace] = OrderedDict()
        self._tagged: dict[tuple[str, str], dict[str, None]] = {}
        self._bytes = 0
        self._peak = Shrinking()
        self._tagged_peak = Shrinking()

    async def write(self, project_id: str, spans: list[SpanWrite]) -> None:
        now = self._clock()
        self._expire(now)
        for span in spans:
            key = (project_id, span.trace_id)
            trace = self._traces.pop(key, None) or _Trace()
            self._traces[key] = trace
            self._peak.grew(len(self._traces))
            grown = len(span.entry) - len(trace.spans.get(span.span_id, b""))
            trace.size += grown
            self._bytes += grown
            trace.spans[span.span_id] = span.entry
            trace.expires = now + self._ttl_s
            for tag in span.tags:
                trace.tags.add(tag)
                self._tagged.setdefault((project_id, tag), {})[span.trace_id] = None
            self._tagged_peak.grew(len(self._tagged))
        while self._bytes > self._max_bytes and len(self._traces) > 1:
            self._drop(next(iter(self._traces)))

    async def traces_tagged(self, project_id: str, tag: str) -> dict[str, list[bytes]]:
        self._expire(self._clock())
        found = {}
        for trace_id in self._tagged.get((project_id, tag), {}):
            trace = self._traces.get((project_id, trace_id))
            if trace is not None:
                found[trace_id] = list(trace.spans.values())
        return found

    async def has_trace(self, project_id: str, trace_id: str) -> bool:
        self._expire(self._clock())
        return (project_id, trace_id) in self._traces

    async def add_score(self, project_id: str, trace_id: str, score_id: str, score: bytes) -> None:
        trace = self._traces.get((project_id, trace_id))
        if trace is not None:  # a trace that expired since it was checked takes its scores with it
            trace.scores[score_id] = score
            trace.size += len(score)
            self._bytes += len(score)

    def index_size(self) -> int:
        """How many (project, tag) index entries are held (each names at least one live trace)."""
        return len(self._tagged)

    async def aclose(self) -> None:
        self._traces.clear()
        self._tagged.clear()
        self._bytes = 0

    def sweep_expired(self, limit: int) -> int:
        """Drop up to ``limit`` expired traces (``Expiring``)."""
        dropped = self._expire(self._clock(), limit)
        self._traces = self._peak.shrunk(self._traces, limit)
        self._tagged = self._tagged_peak.shrunk(self._tagged, limit)
        return dropped

    def held(self) -> int:
        """How many traces are held."""
        return len(self._traces)

    def _expire(self, now: float, limit: int | None = None) -> int:
        dropped = 0
        while self._traces and (limit is None or dropped < limit):
            key, trace = next(iter(self._traces.items()))
            if trace.expires > now:
                break
            self._drop(key)
            dropped += 1
        return dropped

    def _drop(self, key: tuple[str, str]) -> None:
        trace = self._traces.pop(key)
        self._bytes -= trace.size
        project_id, trace_id = key
        for tag in trace.tags:
            index = self._tagged.get((project_id, tag))
            if index is not None:
                index.pop(trace_id, None)
                if not index:
                    del self._tagged[(project_id, tag)]


def _embedded(target: LangfuseTarget) -> bool:
    return target.host == EMBEDDED_HOST


class EmbeddedOrLangfuseIntake:
    """Implements ``TraceIntake``: embedded-store targets to its ``ingest``, others to Langfuse."""

    def __init__(self, store: EmbeddedTraceStore, langfuse: TraceIntake) -> None:
        self._store = store
        self._langfuse = langfuse

    async def post(self, target: LangfuseTarget, body: bytes, *, timeout_s: float) -> None:
        if not _embedded(target):
            return await self._langfuse.post(target, body, timeout_s=timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                await self._store.ingest(target.project_id, body)
        except TracingBackendError as exc:  # a malformed batch: resending it changes nothing
            raise IntakeRejectedError(str(exc)) from exc
        except (RetryableError, TimeoutError) as exc:  # Redis away or slow: spooled, replayed later
            raise IntakeUnavailableError(f"the embedded trace store: {exc or type(exc).__name__}") from exc
        return None

    async def aclose(self) -> None:
        await self._langfuse.aclose()  # the store is closed with the trace source that reads it


class EmbeddedOrLangfuseSource:
    """Implements ``TraceSource``: embedded-store targets read the store, others Langfuse."""

    def __init__(self, store: EmbeddedTraceStore, langfuse: TraceSource) -> None:
        self._store = store
        self._langfuse = langfuse

    def _for(self, target: LangfuseTarget) -> TraceSource:
        return self._store if _embedded(target) else self._langfuse

    async def rollout_traces(
        self, target: LangfuseTarget, tags: tuple[str, ...], *, deadline: float
    ) -> list[TraceRecord]:
        return await self._for(target).rollout_traces(target, tags, deadline=deadline)

    async def trace_exists(self, target: LangfuseTarget, trace_id: str, *, deadline: float) -> bool:
        return await self._for(target).trace_exists(target, trace_id, deadline=deadline)

    async def create_score(self, target: LangfuseTarget, score: dict[str, Any], *, deadline: float) -> str | None:
        return await self._for(target).create_score(target, score, deadline=deadline)

    async def fetch_prompt(self, target: LangfuseTarget, ref: PromptRef, *, deadline: float) -> dict[str, Any] | None:
        return await self._for(target).fetch_prompt(target, ref, deadline=deadline)

    async def aclose(self) -> None:
        await self._langfuse.aclose()
        await self._store.aclose()
