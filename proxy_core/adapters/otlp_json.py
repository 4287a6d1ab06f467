"""Spans as OTLP/JSON, redacted as they are encoded, one span per fragment.

Langfuse's intake (``/api/public/otel/v1/traces``) accepts OTLP/HTTP with protobuf or JSON
bodies. OpenTelemetry's Python protobuf encoder builds one message object per attribute, about
250 µs of CPU per LiteLLM span on a 2-core machine: after LiteLLM's own callback, the largest
cost of tracing a completion. The same span as OTLP/JSON through orjson takes about 50 µs, and a
project's export-stage redaction is applied to each value as it is written, instead of to a
copy of every span.

Encoding follows the OTLP/JSON mapping: ids are lowercase hex, enums integers, 64-bit integers
decimal strings, field names lowerCamelCase. Each span becomes one fragment (a ``ResourceSpans``
object of its own), which the trace delivery keeps, spools and joins into request bodies
(``OtlpJsonCodec``) without decoding it again; the exporter (``SpanHandoffExporter``) only
encodes and hands over, so no batch processor thread ever waits on the network.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from proxy_core.adapters.span_redaction import TAGS_ATTRIBUTE, SpanRedactor

logger = logging.getLogger("proxy_core.tracing")

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


def _resource_spans(resource: Any, scope: Any, spans: list[dict[str, Any]]) -> dict[str, Any]:
    scope_doc = {"name": scope.name, "version": scope.version or ""} if scope is not None else {}
    attributes = _attributes(resource.attributes if resource is not None else None, None)
    return {"resource": {"attributes": attributes}, "scopeSpans": [{"scope": scope_doc, "spans": spans}]}


def encode_fragment(span: ReadableSpan, redactor: SpanRedactor | None) -> bytes:
    """One span as one OTLP/JSON ``ResourceSpans`` object: the unit the delivery keeps and joins.

    Repeating the (few) resource attributes per span lets any set of fragments be joined into a
    valid request body without decoding them (``OtlpJsonCodec.body``).
    """
    return orjson.dumps(_resource_spans(span.resource, span.instrumentation_scope, [_span(span, redactor)]))


# A cut value keeps at least this many characters; a span whose values are all this short cannot shrink.
MIN_KEPT_CHARACTERS = 1024
# Room for the mark a cut leaves: a value no longer than the minimum plus this is never cut again.
CUT_MARK_ROOM = 128
# Never cut: /traces finds a rollout's traces by these tags.
UNCUT_ATTRIBUTES = frozenset({TAGS_ATTRIBUTE})


def _cut(text: str, limit: int) -> str:
    return f"{text[:limit]}... [cut by the gateway: {len(text) - limit} of {len(text)} characters removed]"


class OtlpJsonCodec:
    """Implements ``SpanCodec`` for fragments made by ``encode_fragment``."""

    def body(self, fragments: Sequence[bytes]) -> bytes:
        return b'{"resourceSpans":[' + b",".join(fragments) + b"]}"

    def shrink(self, fragment: bytes) -> bytes | None:
        """Cut every string longer than a quarter of the longest one (at least
        ``MIN_KEPT_CHARACTERS`` kept), marking each cut; None when no string is long enough."""
        document = orjson.loads(fragment)
        shortest_cut = MIN_KEPT_CHARACTERS + CUT_MARK_ROOM
        long = [(holder, key) for holder, key in _strings(document) if len(holder[key]) > shortest_cut]
        if not long:
            return None
        limit = max(MIN_KEPT_CHARACTERS, max(len(holder[key]) for holder, key in long) // 4)
        for holder, key in long:
            if len(holder[key]) > limit + CUT_MARK_ROOM:
                holder[key] = _cut(holder[key], limit)
        return orjson.dumps(document)


def _strings(document: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """Where a fragment's span holds strings: attribute values (its own and its events') and its
    status message, as (holder, key) pairs."""
    for scope_spans in document.get("scopeSpans", ()):
        for span in scope_spans.get("spans", ()):
            attributes = list(span.get("attributes", ()))
            for event in span.get("events", ()):
                attributes += event.get("attributes", ())
            for attribute in attributes:
                value = attribute.get("value") or {}
                if attribute.get("key") not in UNCUT_ATTRIBUTES and isinstance(value.get("stringValue"), str):
                    yield value, "stringValue"
            status = span.get("status") or {}
            if isinstance(status.get("message"), str):
                yield status, "message"


class SpanHandoffExporter(SpanExporter):
    """Encodes each span of a batch (redacted) and hands the fragments to the delivery at once.

    Runs on the batch processor's thread and never waits on the network: delivery, retries and
    the spool belong to the trace delivery on the event loop. A batch that cannot be redacted is
    dropped (never exported unredacted), and so is one the delivery can no longer take (the
    event loop has stopped); both are logged and counted by the caller.
    """

    def __init__(
        self, project_id: str, deliver: Callable[[str, list[bytes]], bool], new_redactor: RedactorFactory
    ) -> None:
        self._project_id = project_id
        self._deliver = deliver
        self._new_redactor = new_redactor

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            fragments = [encode_fragment(span, self._new_redactor()) for span in spans]
        except Exception:
            logger.error("span redaction or encoding failed; %d spans dropped", len(spans), exc_info=True)
            return SpanExportResult.FAILURE
        if not self._deliver(self._project_id, fragments):
            logger.error("%d spans of project %r arrived after trace delivery stopped", len(spans), self._project_id)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
