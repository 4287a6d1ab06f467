"""The OpenTelemetry SDK pieces between LiteLLM's spans and the trace delivery, with counts.

Each project's spans wait in a batch processor (an explicit queue size and batch delay) and are
then encoded and handed to the delivery (``otlp_json.SpanHandoffExporter``). What happens on the
way is counted, thread-safely (the processors run on threads of their own), so that trace loss
is a number in ``/ready`` and in the shutdown line, never a silence:

* ``ended``: spans that reached a project's processor;
* ``handed``: spans encoded and handed to the delivery, which counts what happens next;
* ``dropped``: spans the processor dropped because its queue was full;
* ``unexported``: spans the exporter could not hand over (unredactable, or delivery stopped);
* ``discarded``: spans of calls with no project, which have nowhere to go.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

COUNTERS = ("ended", "handed", "dropped", "unexported", "discarded")
# The SDK's default; a smaller queue lowers it too (the SDK refuses a batch larger than its
# queue, and LiteLLM would then fail every span with a traceback).
MAX_EXPORT_BATCH = 512


class SpanCounters:
    """Thread-safe counts of spans by step (module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)

    def add(self, outcome: str, count: int) -> None:
        with self._lock:
            self._counts[outcome] += count

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


class CountingExporter(SpanExporter):
    """Counts what ``inner`` handed over and what it could not."""

    def __init__(self, inner: SpanExporter, counters: SpanCounters) -> None:
        self._inner = inner
        self._counters = counters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            result = SpanExportResult.FAILURE
        self._counters.add("handed" if result is SpanExportResult.SUCCESS else "unexported", len(spans))
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()


class CountingBatchProcessor(BatchSpanProcessor):
    """A batch processor that counts the spans it receives and those it drops (queue full).

    The SDK only logs "Queue full, dropping Span"; counted, the loss shows like every other.
    """

    def __init__(self, exporter: SpanExporter, counters: SpanCounters, *, queue_size: int, batch_delay_ms: int) -> None:
        super().__init__(
            CountingExporter(exporter, counters),
            max_queue_size=queue_size,
            max_export_batch_size=min(MAX_EXPORT_BATCH, queue_size),
            schedule_delay_millis=batch_delay_ms,
        )
        self._counters = counters
        self._capacity = queue_size

    def on_end(self, span: ReadableSpan) -> None:
        self._counters.add("ended", 1)
        if len(self._batch_processor._queue) >= self._capacity:  # the SDK's own test for a drop
            self._counters.add("dropped", 1)
        super().on_end(span)


class DiscardingExporter(SpanExporter):
    """Receives spans of calls with no project; counts and drops them (never printed)."""

    def __init__(self, counters: SpanCounters) -> None:
        self._counters = counters

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._counters.add("discarded", len(spans))
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None
