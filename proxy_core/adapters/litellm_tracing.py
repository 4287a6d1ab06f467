"""Langfuse tracing through LiteLLM's ``langfuse_otel`` logger, owned by the application.

LiteLLM builds one OTLP exporter per set of per-request Langfuse credentials. This adapter
subclasses its logger to control those spans and exporters:

* spans of calls that carry no project credentials are discarded, never printed to stdout
  (LiteLLM's fallback is a console exporter that would write prompts into the gateway's logs);
* each span's attributes are written by the gateway (``langfuse_span_attributes``): the fields
  Langfuse reads, once, instead of LiteLLM's two overlapping mappings;
* each project's exporter is the gateway's OTLP/JSON exporter (``otlp_json``: a fifth of the
  protobuf encoder's CPU, the project's export-stage redaction applied while encoding), with an
  explicit queue size and batch delay, wrapped so the gateway counts what it handed to the
  exporter, what Langfuse accepted and what failed — trace loss becomes a number, not a silence;
* trace targets in the embedded trace store get ``embedded_export``'s exporter in place of the
  HTTP one (same encoding, redaction, queue and counts);
* shutdown force-flushes every project's queue within a bounded time, because uvicorn re-raises
  SIGTERM after a graceful stop and anything still queued would otherwise be lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import litellm
from litellm.integrations.langfuse.langfuse_otel import LangfuseOtelLogger
from litellm.integrations.opentelemetry import LITELLM_TRACER_NAME, OpenTelemetryConfig
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.trace import Status, StatusCode

from proxy_core.adapters.embedded_export import EmbeddedSink
from proxy_core.adapters.langfuse_span_attributes import generation_attributes
from proxy_core.adapters.otlp_json import OtlpJsonExporter, RedactorFactory
from proxy_core.adapters.span_redaction import SpanRedactor
from proxy_core.services.sanitizer import SpanRedaction

logger = logging.getLogger("proxy_core.tracing")
T = TypeVar("T")
# How long shutdown waits for the exporters to stop once their flush is over.
PROVIDER_SHUTDOWN_S = 1.0
# The longest a span waits for its batch when it goes to the embedded trace store.
EMBEDDED_BATCH_DELAY_MS = 100


@dataclass(frozen=True, slots=True)
class ExportTuning:
    queue_size: int = 8192
    batch_delay_ms: int = 1000
    export_timeout_ms: int = 10_000


class SpanCounters:
    """Thread-safe counts of spans by outcome; exporters run on their own threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # queued: handed to a project's exporter queue; each then ends exported, failed or dropped.
        self._counts: dict[str, int] = {"queued": 0, "exported": 0, "failed": 0, "dropped": 0, "discarded": 0}

    def add(self, outcome: str, count: int) -> None:
        with self._lock:
            self._counts[outcome] = self._counts.get(outcome, 0) + count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class _CountingExporter(SpanExporter):
    """Delegates to the OTLP exporter and counts the outcome of every batch."""

    def __init__(self, inner: SpanExporter, counters: SpanCounters) -> None:
        self._inner = inner
        self._counters = counters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            self._counters.add("failed", len(spans))
            logger.warning("trace export raised; %d spans lost", len(spans), exc_info=True)
            return SpanExportResult.FAILURE
        if result is SpanExportResult.SUCCESS:
            self._counters.add("exported", len(spans))
        else:
            self._counters.add("failed", len(spans))
            logger.warning("Langfuse rejected or did not answer a trace batch; %d spans lost", len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)


# The SDK's default; a smaller TRACING_QUEUE_SIZE lowers it too (the SDK refuses a batch larger
# than its queue, and LiteLLM would then fail every span with a traceback).
MAX_EXPORT_BATCH = 512


class _CountingBatchProcessor(BatchSpanProcessor):
    """A batch processor that counts the spans it drops because its queue is full.

    The SDK only logs "Queue full, dropping Span" and its own metrics go nowhere here; counted,
    the loss shows in ``/ready`` and in the shutdown line like every other outcome.
    """

    def __init__(self, exporter: SpanExporter, counters: SpanCounters, tuning: ExportTuning) -> None:
        super().__init__(
            exporter,
            max_queue_size=tuning.queue_size,
            max_export_batch_size=min(MAX_EXPORT_BATCH, tuning.queue_size),
            schedule_delay_millis=tuning.batch_delay_ms,
            export_timeout_millis=tuning.export_timeout_ms,
        )
        self._counters = counters
        self._capacity = tuning.queue_size

    def on_end(self, span: ReadableSpan) -> None:
        self._counters.add("queued", 1)
        if len(self._batch_processor._queue) >= self._capacity:  # the SDK's own test for a drop
            self._counters.add("dropped", 1)
        super().on_end(span)


RedactionLookup = Callable[[str], SpanRedaction | None]


def _public_key(headers: dict[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "authorization" and value.startswith("Basic "):
            try:
                return base64.b64decode(value[6:]).decode("utf-8").partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                return ""
    return ""


class _DiscardingExporter(SpanExporter):
    """Receives spans of calls with no project; counts and drops them."""

    def __init__(self, counters: SpanCounters) -> None:
        self._counters = counters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._counters.add("discarded", len(spans))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


class _GatewayLangfuseLogger(LangfuseOtelLogger):  # type: ignore[misc]
    """LiteLLM's Langfuse logger with the exporters built by the gateway."""

    def __init__(
        self, tuning: ExportTuning, counters: SpanCounters, redaction: RedactionLookup, embedded: EmbeddedSink | None
    ) -> None:
        self._tuning = tuning
        self._embedded = embedded
        self._counters = counters
        self._redaction = redaction
        self._exporters: list[OtlpJsonExporter] = []
        self._exporters_lock = threading.Lock()
        self._tracers: dict[str, tuple[Any, Any]] = {}  # LiteLLM's cache key -> (provider, its tracer)
        # Calls whose details the gateway may need if they are abandoned: call id -> LiteLLM's
        # call details once its request is about to be sent (None before that).
        self._watched: dict[str, dict[str, Any] | None] = {}
        config = OpenTelemetryConfig(
            exporter=_DiscardingExporter(counters), service_name="proxy-core", skip_set_global=True
        )
        super().__init__(config=config, callback_name="langfuse_otel")

    def _get_span_processor(
        self, dynamic_headers: Any = None, config_override: OpenTelemetryConfig | None = None
    ) -> Any:
        if config_override is None or config_override.exporter != "otlp_http" or not config_override.endpoint:
            return SimpleSpanProcessor(_DiscardingExporter(self._counters))
        headers = self._get_headers_dictionary(headers=dynamic_headers or config_override.headers)
        endpoint = self._normalize_otel_endpoint(config_override.endpoint, "traces")
        public_key = _public_key(headers)
        redaction = self._redaction(public_key)
        new_redactor: RedactorFactory = (lambda: SpanRedactor(redaction)) if redaction is not None else (lambda: None)
        timeout_s = self._tuning.export_timeout_ms / 1000
        exporter: SpanExporter
        tuning = self._tuning
        if self._embedded is not None and self._embedded.serves(endpoint):
            exporter = self._embedded.exporter(public_key, timeout_s, new_redactor)
            # No network round trip to amortise: a short delay makes traces readable sooner.
            tuning = replace(tuning, batch_delay_ms=min(tuning.batch_delay_ms, EMBEDDED_BATCH_DELAY_MS))
        else:
            exporter = http_exporter = OtlpJsonExporter(endpoint, headers, timeout_s, new_redactor)
            with self._exporters_lock:
                self._exporters.append(http_exporter)
        return _CountingBatchProcessor(_CountingExporter(exporter, self._counters), self._counters, tuning)

    def _cached_dynamic_tracer(self, cache_key: str, build: Callable[[], Any], owns_exporter: bool) -> Any:
        """LiteLLM's cached provider for ``cache_key``, with its tracer made once.

        LiteLLM keeps each project's provider in a bounded LRU but asks it for a new tracer on
        every call; a tracer is kept here beside the provider it came from, and used only while
        that provider is still the one LiteLLM's cache holds (one it evicted is shut down).
        """
        with self._tracer_provider_cache_lock:
            entry = self._tracer_provider_cache.get(cache_key)
            if entry is not None:
                self._tracer_provider_cache.move_to_end(cache_key)
                kept = self._tracers.get(cache_key)
                if kept is None or kept[0] is not entry.provider:
                    kept = (entry.provider, entry.provider.get_tracer(LITELLM_TRACER_NAME))
                    self._tracers = {key: v for key, v in self._tracers.items() if key in self._tracer_provider_cache}
                    self._tracers[cache_key] = kept
                return kept[1]
        return super()._cached_dynamic_tracer(cache_key, build, owns_exporter)

    def set_attributes(self, span: Any, kwargs: dict[str, Any], response_obj: Any) -> None:
        """The gateway's own attribute mapping (``langfuse_span_attributes``) in place of
        LiteLLM's two, which write the same Langfuse fields at several times the cost.

        An abandoned call's span (``log_abandoned``) carries what was received before it ended
        as its output, level ``ERROR`` and the reason as its status.
        """
        reason = kwargs.get(ABANDONED_REASON)
        attributes = generation_attributes(kwargs, response_obj if response_obj is not None else kwargs.get(PARTIAL))
        if isinstance(reason, str):
            attributes["langfuse.observation.level"] = "ERROR"
            attributes["langfuse.observation.status_message"] = reason
            span.set_status(Status(StatusCode.ERROR, reason))
        span.set_attributes(attributes)

    def log_pre_api_call(self, model: Any, messages: Any, kwargs: dict[str, Any]) -> None:
        """LiteLLM is about to send a request: keep its call details if the gateway watches the call."""
        call_id = kwargs.get("litellm_call_id")
        if call_id in self._watched:
            self._watched[call_id] = kwargs

    def _init_otel_logger_on_litellm_proxy(self) -> None:
        """Nothing to wire: the gateway is not LiteLLM's proxy server, whose absence LiteLLM would
        otherwise announce with a misleading "Proxy Server is not installed" warning at start-up."""
        return None

    def _maybe_log_raw_request(self, *args: Any, **kwargs: Any) -> None:
        """No ``raw_gen_ai_request`` child span: it repeats the generation's input and output
        verbatim (doubling export cost) and LiteLLM's own masking options do not cover it."""
        return None

    def _record_metrics(self, *args: Any, **kwargs: Any) -> None:
        """No OpenTelemetry metrics: this logger has no meter, yet LiteLLM would still build (and
        JSON-dump) every metric attribute of every call before finding nothing to record them on."""
        return None

    def providers(self) -> list[Any]:
        with self._tracer_provider_cache_lock:
            return [entry.provider for entry in self._tracer_provider_cache.values()]

    def end_exports_by(self, deadline: float) -> None:
        """Make every project's exporter give up at ``deadline`` (``math.inf``: no limit)."""
        with self._exporters_lock:
            exporters = list(self._exporters)
        for exporter in exporters:
            exporter.end_exports_by(deadline)


class CallAbandonedError(Exception):
    """Recorded on the span of a call that ended before its answer was complete."""


# Keys the gateway adds to LiteLLM's call details of an abandoned call (read by ``set_attributes``).
ABANDONED_REASON = "gateway_abandoned_reason"
PARTIAL = "gateway_partial_response"


class LangfuseTracing:
    """The application's one tracing logger: registered at start-up, flushed at shutdown."""

    def __init__(
        self,
        tuning: ExportTuning | None = None,
        redaction: RedactionLookup | None = None,
        embedded: EmbeddedSink | None = None,
    ) -> None:
        """``redaction`` maps a project's public key to its export-stage redactors; ``embedded``
        takes the spans of trace targets in the embedded store instead of an HTTP exporter."""
        self.counters = SpanCounters()
        self._logger = _GatewayLangfuseLogger(
            tuning or ExportTuning(), self.counters, redaction or (lambda _key: None), embedded
        )
        self._registered = False

    def register(self) -> None:
        """Make LiteLLM send every call's callbacks to this logger (once, at start-up)."""
        litellm.logging_callback_manager.add_litellm_callback(self._logger)
        self._registered = True

    def watch_call(self, call_id: str) -> None:
        """Keep the details of call ``call_id`` when LiteLLM sends it, until ``forget_call``.

        A non-streamed call cancelled while LiteLLM awaits the provider ends with no LiteLLM
        callback at all, and its logging object is out of reach; these details are what its
        abandoned-call span is made from.
        """
        self._logger._watched[call_id] = None

    def forget_call(self, call_id: str) -> dict[str, Any] | None:
        """Stop watching ``call_id``; its details if its request was sent."""
        return self._logger._watched.pop(call_id, None)

    async def log_abandoned(self, details: dict[str, Any], partial: dict[str, Any] | None, reason: str) -> None:
        """One error span for a call that ended early, with ``partial`` (a completion dict) as output.

        The provider was called and may have charged for it; without this the call would leave
        no trace at all. ``details`` are LiteLLM's call details (``Logging.model_call_details``).
        """
        if details.get("litellm_params") is None:
            return  # LiteLLM never got far enough to know where the span would go
        details[ABANDONED_REASON] = reason
        details[PARTIAL] = partial
        details["exception"] = CallAbandonedError(reason)
        start = details.get("start_time") or datetime.datetime.now()
        await self._logger.async_log_failure_event(details, None, start, datetime.datetime.now())

    async def flush(self, timeout_s: float) -> bool:
        """Export every queued span, bounded by ``timeout_s`` overall; True when all were sent.

        LiteLLM builds spans in callbacks queued on its logging worker after a call returns, so
        that queue is drained first; then each project's exporter queue is flushed.
        """
        deadline = time.monotonic() + timeout_s
        try:
            await asyncio.wait_for(GLOBAL_LOGGING_WORKER.flush(), timeout=timeout_s)
        except TimeoutError:
            logger.warning("tracing callbacks still pending after %.1fs; their spans may be lost", timeout_s)
        flushed = await _within(max(0.0, deadline - time.monotonic()), self._flush_blocking, deadline)
        return bool(flushed)

    def _flush_blocking(self, deadline: float) -> bool:
        """Flush every provider by ``deadline``; True only when nothing failed or was left.

        The SDK's ``force_flush`` ignores its timeout and exports the whole queue batch after
        batch, so the exporters themselves are told when to give up: past the deadline a batch
        fails at once (and is counted), and shutdown takes ``SHUTDOWN_FLUSH_TIMEOUT_S`` at most.
        """
        failed_before = self.counters.snapshot()["failed"]
        complete = True
        self._logger.end_exports_by(deadline)
        try:
            for provider in self._logger.providers():
                remaining_ms = int((deadline - time.monotonic()) * 1000)
                if remaining_ms <= 0 or not provider.force_flush(remaining_ms):
                    complete = False
        finally:
            self._logger.end_exports_by(math.inf)
        return complete and time.monotonic() < deadline and self.counters.snapshot()["failed"] == failed_before

    async def aclose(self, timeout_s: float) -> None:
        """Flush, then stop the exporters and detach the logger from LiteLLM."""
        flushed = await self.flush(timeout_s)
        if self._registered:
            litellm.logging_callback_manager.remove_callback_from_all_lists(self._logger)
            self._registered = False
        self._logger.end_exports_by(time.monotonic())  # the flush is over: nothing may hold shutdown up
        if await _within(PROVIDER_SHUTDOWN_S, self._shutdown_providers) is None:
            logger.warning("an export still in flight was left behind at shutdown")
        counts = self.counters.snapshot()
        left = counts["queued"] - counts["exported"] - counts["failed"] - counts["dropped"]
        if left > 0:  # still queued, or in an export that outlived the flush: lost with the process
            logger.warning("%d spans were still queued or in flight when tracing stopped; they are lost", left)
            self.counters.add("failed", left)
            counts = self.counters.snapshot()
        logger.info(
            "tracing stopped: queued=%d exported=%d failed=%d dropped=%d discarded=%d flushed_all=%s",
            counts["queued"],
            counts["exported"],
            counts["failed"],
            counts["dropped"],
            counts["discarded"],
            flushed,
        )

    def _shutdown_providers(self) -> bool:
        for provider in self._logger.providers():
            provider.shutdown()
        return True


async def _within(timeout_s: float, blocking: Callable[..., T], *args: Any) -> T | None:
    """``blocking(*args)`` on a daemon thread; its result, or None if it is not done in time.

    An export already in flight cannot be interrupted (a blocking HTTP read runs to its own
    timeout), so shutdown waits for the flush no longer than it was given and leaves the rest to
    a daemon thread, which does not hold the process's exit (the default executor's would).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T | None] = loop.create_future()

    def settle(result: T | None) -> None:
        if not done.done():
            done.set_result(result)

    def run() -> None:
        result: T | None = None
        try:
            result = blocking(*args)
        except Exception:
            logger.warning("tracing shutdown step failed", exc_info=True)
        with contextlib.suppress(RuntimeError):  # the loop may be gone by then
            loop.call_soon_threadsafe(settle, result)

    threading.Thread(target=run, name="tracing-shutdown", daemon=True).start()
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout_s)
    except TimeoutError:
        return None
