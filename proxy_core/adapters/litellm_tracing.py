"""Langfuse tracing through LiteLLM's ``langfuse_otel`` logger, owned by the application.

LiteLLM builds one span processor per set of per-request Langfuse credentials. This adapter
subclasses its logger to control those spans and processors:

* spans of calls that carry no project credentials are discarded, never printed to stdout
  (LiteLLM's fallback is a console exporter that would write prompts into the gateway's logs);
* each span's attributes are written by the gateway (``langfuse_span_attributes``): the fields
  Langfuse reads, once, instead of LiteLLM's two overlapping mappings;
* each project's processor batches its spans and hands them, encoded as OTLP/JSON with the
  project's export-stage redaction applied (``otlp_json``), to the trace delivery
  (``services.trace_delivery``), which posts, spools and replays them: no span is dropped for
  an unavailable Langfuse, and every step is counted (``span_processing``);
* a call abandoned after the provider was called still gets a span (``log_abandoned``);
* shutdown drains LiteLLM's logging, flushes every project's processor into the delivery and
  closes the delivery within one deadline, because uvicorn re-raises SIGTERM after a graceful
  stop and anything left in memory would be lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import litellm
from litellm.integrations.langfuse.langfuse_otel import LangfuseOtelLogger
from litellm.integrations.opentelemetry import LITELLM_TRACER_NAME, OpenTelemetryConfig
from litellm.litellm_core_utils.logging_worker import GLOBAL_LOGGING_WORKER
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import Status, StatusCode

from proxy_core.adapters.langfuse_span_attributes import generation_attributes
from proxy_core.adapters.otlp_json import SpanHandoffExporter
from proxy_core.adapters.span_processing import CountingBatchProcessor, DiscardingExporter, SpanCounters
from proxy_core.adapters.span_redaction import SpanRedactor
from proxy_core.services.sanitizer import SpanRedaction
from proxy_core.services.trace_delivery import TraceDelivery

logger = logging.getLogger("proxy_core.tracing")
T = TypeVar("T")
# How long shutdown waits for the span processors to stop once their flush is over.
PROVIDER_SHUTDOWN_S = 1.0
OTLP_SUFFIX = "/api/public/otel/v1/traces"


@dataclass(frozen=True, slots=True)
class ExportTuning:
    queue_size: int = 8192
    batch_delay_ms: int = 1000


# Which configured project a Langfuse destination (host, public key) belongs to.
DestinationLookup = Callable[[str, str], str | None]
RedactionLookup = Callable[[str], SpanRedaction | None]


def _public_key(headers: dict[str, str]) -> str:
    for name, value in headers.items():
        if name.lower() == "authorization" and value.startswith("Basic "):
            try:
                return base64.b64decode(value[6:]).decode("utf-8").partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                return ""
    return ""


class _GatewayLangfuseLogger(LangfuseOtelLogger):  # type: ignore[misc]
    """LiteLLM's Langfuse logger with the exporters built by the gateway."""

    def __init__(
        self,
        tuning: ExportTuning,
        counters: SpanCounters,
        destination: DestinationLookup,
        redaction: RedactionLookup,
        delivery: TraceDelivery,
    ) -> None:
        self._tuning = tuning
        self._counters = counters
        self._destination = destination
        self._redaction = redaction
        self._delivery = delivery
        self._tracers: dict[str, tuple[Any, Any]] = {}  # LiteLLM's cache key -> (provider, its tracer)
        # Calls whose details the gateway may need if they are abandoned: call id -> LiteLLM's
        # call details once its request is about to be sent (None before that).
        self._watched: dict[str, dict[str, Any] | None] = {}
        config = OpenTelemetryConfig(
            exporter=DiscardingExporter(counters), service_name="proxy-core", skip_set_global=True
        )
        super().__init__(config=config, callback_name="langfuse_otel")

    def _get_span_processor(
        self, dynamic_headers: Any = None, config_override: OpenTelemetryConfig | None = None
    ) -> Any:
        """One project's processor: its spans, redacted by its own rules, go to the delivery."""
        project_id = None
        if config_override is not None and config_override.exporter == "otlp_http" and config_override.endpoint:
            headers = self._get_headers_dictionary(headers=dynamic_headers or config_override.headers)
            endpoint = self._normalize_otel_endpoint(config_override.endpoint, "traces")
            project_id = self._destination(endpoint.removesuffix(OTLP_SUFFIX), _public_key(headers))
        if project_id is None:
            return SimpleSpanProcessor(DiscardingExporter(self._counters))
        redaction = self._redaction(project_id)
        exporter = SpanHandoffExporter(
            project_id,
            self._delivery.submit_threadsafe,
            (lambda: SpanRedactor(redaction)) if redaction is not None else (lambda: None),
        )
        return CountingBatchProcessor(
            exporter, self._counters, queue_size=self._tuning.queue_size, batch_delay_ms=self._tuning.batch_delay_ms
        )

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


class CallAbandonedError(Exception):
    """Recorded on the span of a call that ended before its answer was complete."""


# Keys the gateway adds to LiteLLM's call details of an abandoned call (read by ``set_attributes``).
ABANDONED_REASON = "gateway_abandoned_reason"
PARTIAL = "gateway_partial_response"


class LangfuseTracing:
    """The application's one tracing logger: registered at start-up, flushed at shutdown."""

    def __init__(
        self,
        delivery: TraceDelivery,
        *,
        destination: DestinationLookup,
        redaction: RedactionLookup | None = None,
        tuning: ExportTuning | None = None,
    ) -> None:
        """``destination`` names the project a Langfuse host and public key belong to;
        ``redaction`` gives a project's export-stage redaction (None: PII is off for it)."""
        self.counters = SpanCounters()
        self.delivery = delivery
        self._logger = _GatewayLangfuseLogger(
            tuning or ExportTuning(), self.counters, destination, redaction or (lambda _project: None), delivery
        )
        self._registered = False

    def span_counts(self) -> dict[str, int]:
        """What happened to spans since start-up: the processors' steps, then the delivery's
        (``dropped`` counts both a full processor queue and a full spool)."""
        processed = self.counters.snapshot()
        delivered = self.delivery.totals()
        return {**processed, **delivered, "dropped": processed["dropped"] + delivered["dropped"]}

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

    async def flush(self, deadline: float) -> bool:
        """Hand every span still in memory to the delivery by ``deadline``; True when all were.

        LiteLLM builds spans in callbacks queued on its logging worker after a call returns, so
        that queue is drained first; then each project's processor is flushed into the delivery
        (its exporter only encodes, so this takes milliseconds, not network round trips).
        """
        try:
            await asyncio.wait_for(GLOBAL_LOGGING_WORKER.flush(), timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            logger.warning("tracing callbacks were still pending at the shutdown deadline; their spans are lost")
        return bool(await _within(max(0.0, deadline - time.monotonic()), self._flush_blocking, deadline))

    def _flush_blocking(self, deadline: float) -> bool:
        complete = True
        for provider in self._logger.providers():
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0 or not provider.force_flush(remaining_ms):
                complete = False
        return complete

    async def aclose(self, deadline: float) -> None:
        """Flush into the delivery, close it (spooling what it could not deliver), stop the
        processors and detach the logger from LiteLLM; all by ``deadline`` (``time.monotonic``)."""
        flushed = await self.flush(deadline)
        await self.delivery.close(deadline)
        if self._registered:
            litellm.logging_callback_manager.remove_callback_from_all_lists(self._logger)
            self._registered = False
        if await _within(PROVIDER_SHUTDOWN_S, self._shutdown_providers) is None:
            logger.warning("a span processor did not stop in time at shutdown")
        counts = self.counters.snapshot()
        left = counts["ended"] - counts["handed"] - counts["unexported"] - counts["dropped"]
        if left > 0:  # still in a processor's queue: lost with the process
            logger.warning("%d spans were still queued when tracing stopped; they are lost", left)
            self.counters.add("unexported", left)
        logger.info(
            "tracing stopped: %s flushed_all=%s",
            " ".join(f"{name}={count}" for name, count in self.span_counts().items()),
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
