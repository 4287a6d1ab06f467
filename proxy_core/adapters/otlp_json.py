"""OTLP/HTTP trace export with JSON bodies, redacting values as they are encoded.

Langfuse's intake (``/api/public/otel/v1/traces``) accepts OTLP/HTTP with protobuf or JSON
bodies. OpenTelemetry's Python protobuf encoder builds one message object per attribute, about
250 µs of CPU per LiteLLM span on a 2-core machine: after LiteLLM's own callback, the largest
cost of tracing a completion. The same span as OTLP/JSON through orjson takes about 50 µs, and a
project's export-stage redaction is applied to each value as it is written, instead of to a
copy of every span.

Encoding follows the OTLP/JSON mapping: ids are lowercase hex, enums integers, 64-bit integers
decimal strings, field names lowerCamelCase. Delivery follows the OTLP/HTTP exporter
specification: a 2xx is success; 429, 502, 503, 504 and transport errors are retried with
jittered exponential backoff (``Retry-After`` honoured) until the export timeout; any other
answer fails the batch at once. Shutdown cuts a pending backoff short.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import httpx
import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from proxy_core.adapters.span_redaction import SpanRedactor
from proxy_core.retry import RetryableError, retrying_blocking

logger = logging.getLogger("proxy_core.tracing")

RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
RedactorFactory = Callable[[], SpanRedactor | None]


def _value(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, bytes):
        return {"stringValue": value.decode("utf-8", "replace")}
    if isinstance(value, Sequence):
        return {"arrayValue": {"values": [_value(item) for item in value]}}
    return {"stringValue": str(value)}


def _attributes(items: Mapping[str, Any] | None, transform: Callable[[str, Any], Any] | None) -> list[dict[str, Any]]:
    if not items:
        return []
    if transform is None:
        return [{"key": key, "value": _value(value)} for key, value in items.items()]
    return [{"key": key, "value": _value(transform(key, value))} for key, value in items.items()]


def _span(span: ReadableSpan, redactor: SpanRedactor | None) -> dict[str, Any]:
    context = span.context
    assert context is not None  # every span the SDK ends has one
    event_transform = (lambda _key, value: redactor.event_attribute(value)) if redactor is not None else None
    encoded: dict[str, Any] = {
        "traceId": format(context.trace_id, "032x"),
        "spanId": format(context.span_id, "016x"),
        "name": span.name,
        "kind": span.kind.value + 1,  # the SDK's INTERNAL is 0; OTLP's SPAN_KIND_INTERNAL is 1
        "startTimeUnixNano": str(span.start_time or 0),
        "endTimeUnixNano": str(span.end_time or 0),
        "attributes": _attributes(span.attributes, redactor.attribute if redactor is not None else None),
    }
    if span.parent is not None:
        encoded["parentSpanId"] = format(span.parent.span_id, "016x")
    if context.trace_state:
        encoded["traceState"] = context.trace_state.to_header()
    if span.events:
        encoded["events"] = [
            {
                "timeUnixNano": str(event.timestamp),
                "name": event.name,
                "attributes": _attributes(event.attributes, event_transform),
            }
            for event in span.events
        ]
    if span.links:
        encoded["links"] = [
            {
                "traceId": format(link.context.trace_id, "032x"),
                "spanId": format(link.context.span_id, "016x"),
                "attributes": _attributes(link.attributes, None),
            }
            for link in span.links
        ]
    status: dict[str, Any] = {"code": span.status.status_code.value}
    if span.status.description:
        description = span.status.description
        status["message"] = redactor.text(description) if redactor is not None else description
    encoded["status"] = status
    return encoded


def encode_spans(spans: Iterable[ReadableSpan], new_redactor: RedactorFactory = lambda: None) -> bytes:
    """One ``ExportTraceServiceRequest`` as OTLP/JSON, spans grouped by resource and scope."""
    resources: dict[int, tuple[Any, dict[int, tuple[Any, list[dict[str, Any]]]]]] = {}
    for span in spans:
        _resource, scopes = resources.setdefault(id(span.resource), (span.resource, {}))
        _scope, encoded = scopes.setdefault(id(span.instrumentation_scope), (span.instrumentation_scope, []))
        encoded.append(_span(span, new_redactor()))
    resource_spans = []
    for resource, scopes in resources.values():
        scope_spans = []
        for scope, encoded in scopes.values():
            scope_doc = {"name": scope.name, "version": scope.version or ""} if scope is not None else {}
            scope_spans.append({"scope": scope_doc, "spans": encoded})
        attributes = _attributes(resource.attributes if resource is not None else None, None)
        resource_spans.append({"resource": {"attributes": attributes}, "scopeSpans": scope_spans})
    return orjson.dumps({"resourceSpans": resource_spans})


class _RejectedError(Exception):
    """An answer that retrying will not change (bad credentials, malformed batch) or a shutdown."""


def _retry_after_s(response: httpx.Response) -> float | None:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


class OtlpJsonExporter(SpanExporter):
    """Posts span batches to one OTLP/HTTP endpoint as JSON (module docstring)."""

    def __init__(
        self, endpoint: str, headers: Mapping[str, str], timeout_s: float, new_redactor: RedactorFactory
    ) -> None:
        self._endpoint = endpoint
        self._timeout_s = timeout_s
        self._new_redactor = new_redactor
        self._stopping = threading.Event()
        self._end_by = math.inf
        self._client = httpx.Client(headers={**headers, "content-type": "application/json"}, timeout=timeout_s)

    def end_exports_by(self, deadline: float) -> None:
        """From now on every export, retries included, ends by ``deadline`` (``time.monotonic``).

        Shutdown sets it: the SDK's flush exports its whole queue with no regard for time, so a
        slow or dead Langfuse would otherwise hold the process for one export timeout per batch.
        """
        self._end_by = deadline

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        deadline = min(time.monotonic() + self._timeout_s, self._end_by)
        if self._stopping.is_set() or deadline <= time.monotonic():
            return SpanExportResult.FAILURE
        try:
            body = encode_spans(spans, self._new_redactor)
        except Exception:
            # Never export unredacted: a batch that cannot be redacted (or encoded) is dropped.
            logger.error("span redaction or encoding failed; %d spans dropped", len(spans), exc_info=True)
            return SpanExportResult.FAILURE
        try:
            for attempt in retrying_blocking(deadline=deadline, sleep=self._pause):
                with attempt:
                    self._post(body, deadline)
        except RetryableError as exc:
            logger.warning("trace export gave up after retries: %s", exc)
            return SpanExportResult.FAILURE
        except _RejectedError as exc:
            logger.warning("trace export rejected: %s", exc)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def _post(self, body: bytes, deadline: float) -> None:
        timeout = max(0.1, min(self._timeout_s, deadline - time.monotonic()))
        try:
            response = self._client.post(self._endpoint, content=body, timeout=timeout)
        except httpx.TransportError as exc:
            raise RetryableError(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return
        if response.status_code in RETRYABLE_STATUSES:
            raise RetryableError(f"HTTP {response.status_code}", retry_after_s=_retry_after_s(response))
        raise _RejectedError(f"HTTP {response.status_code}: {response.text[:200]}")

    def _pause(self, seconds: float) -> None:
        if self._stopping.wait(seconds):
            raise _RejectedError("the exporter is shutting down")

    def shutdown(self) -> None:
        self._stopping.set()
        self._client.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
