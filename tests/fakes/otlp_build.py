"""Build OTLP trace export bodies by hand, for feeding the Langfuse emulator.

Exporters from real SDKs are asynchronous and batch on their own schedule;
tests of ingestion rules want a precise span with precise attributes, sent
now.  :func:`export_protobuf` and :func:`export_json` encode the same
:class:`SpanSpec` list in the two OTLP/HTTP encodings.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

__all__ = ["SpanSpec", "export_json", "export_protobuf", "new_span_id", "new_trace_id"]

DEFAULT_RESOURCE: dict[str, Any] = {"service.name": "litellm", "deployment.environment": "production"}


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


@dataclass
class SpanSpec:
    """A span to encode; times default to "now" with a 10 ms duration."""

    name: str = "litellm_request"
    trace_id: str = field(default_factory=new_trace_id)
    span_id: str = field(default_factory=new_span_id)
    parent_span_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    start_ns: int = field(default_factory=time.time_ns)
    duration_ns: int = 10_000_000
    status_code: int = 1
    status_message: str = ""
    resource: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_RESOURCE))
    scope_name: str = "litellm"


def _any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    if isinstance(value, list | tuple):
        result = AnyValue()
        result.array_value.values.extend(_any_value(v) for v in value)
        return result
    return AnyValue(string_value=str(value))


def _key_values(attrs: dict[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_any_value(v)) for k, v in attrs.items()]


def export_protobuf(specs: Sequence[SpanSpec]) -> bytes:
    """An ``ExportTraceServiceRequest`` (one resource per span) as protobuf bytes."""
    request = ExportTraceServiceRequest()
    for spec in specs:
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(_key_values(spec.resource))
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = spec.scope_name
        scope_spans.spans.append(
            Span(
                trace_id=bytes.fromhex(spec.trace_id),
                span_id=bytes.fromhex(spec.span_id),
                parent_span_id=bytes.fromhex(spec.parent_span_id) if spec.parent_span_id else b"",
                name=spec.name,
                kind=Span.SPAN_KIND_INTERNAL,
                start_time_unix_nano=spec.start_ns,
                end_time_unix_nano=spec.start_ns + spec.duration_ns,
                attributes=_key_values(spec.attributes),
                status=Status(code=spec.status_code, message=spec.status_message),  # type: ignore[arg-type]
            )
        )
    data: bytes = request.SerializeToString()
    return data


def _json_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"boolValue": value}
    if isinstance(value, int):
        return {"intValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [_json_value(v) for v in value]}}
    return {"stringValue": str(value)}


def _json_attrs(attrs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"key": k, "value": _json_value(v)} for k, v in attrs.items()]


def export_json(specs: Sequence[SpanSpec]) -> bytes:
    """The same export in the OTLP/JSON encoding (hex ids, string int64s)."""
    resource_spans = []
    for spec in specs:
        span: dict[str, Any] = {
            "traceId": spec.trace_id,
            "spanId": spec.span_id,
            "name": spec.name,
            "kind": 1,
            "startTimeUnixNano": str(spec.start_ns),
            "endTimeUnixNano": str(spec.start_ns + spec.duration_ns),
            "attributes": _json_attrs(spec.attributes),
            "status": {"code": spec.status_code, "message": spec.status_message},
        }
        if spec.parent_span_id:
            span["parentSpanId"] = spec.parent_span_id
        resource_spans.append(
            {
                "resource": {"attributes": _json_attrs(spec.resource)},
                "scopeSpans": [{"scope": {"name": spec.scope_name}, "spans": [span]}],
            }
        )
    return orjson.dumps({"resourceSpans": resource_spans})
