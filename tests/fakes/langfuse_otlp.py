"""Decode OTLP/HTTP trace exports (protobuf or JSON) into plain Python spans.

Langfuse's ``/api/public/otel/v1/traces`` accepts both encodings of
``ExportTraceServiceRequest``; LiteLLM's exporter sends protobuf.  Both paths
produce the same :class:`SpanRecord`, with every attribute value converted to
an ordinary Python value (``str``, ``bool``, ``int``, ``float``, ``bytes``,
``list`` or ``dict``), so tests can assert on exactly what was exported.

A batch with any malformed span is rejected as a whole, as Langfuse does.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = ["OtlpDecodeError", "SpanEvent", "SpanRecord", "decode_export"]

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class OtlpDecodeError(ValueError):
    """The request body is not a valid OTLP trace export."""


@dataclass(frozen=True)
class SpanEvent:
    name: str
    time_unix_nano: int
    attributes: dict[str, Any]


@dataclass(frozen=True)
class SpanRecord:
    """One received span plus its resource and instrumentation scope."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource_attributes: dict[str, Any]
    scope_name: str
    scope_version: str
    scope_attributes: dict[str, Any]
    events: list[SpanEvent] = field(default_factory=list)

    @property
    def is_error(self) -> bool:
        return self.status_code == STATUS_ERROR


def decode_export(body: bytes, content_type: str, content_encoding: str = "") -> list[SpanRecord]:
    """Decode one export request; raises :class:`OtlpDecodeError` when invalid."""
    body = _decompress(body, content_encoding)
    if "application/x-protobuf" in content_type:
        return _from_protobuf(body)
    if "application/json" in content_type:
        return _from_json(body)
    raise OtlpDecodeError("Invalid content type")


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.strip().lower()
    if not encoding or encoding == "identity":
        return body
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, EOFError, zlib.error) as exc:
        raise OtlpDecodeError(f"cannot decompress body: {exc}") from exc
    raise OtlpDecodeError(f"unsupported content-encoding {encoding!r}")


# --- protobuf ---------------------------------------------------------------


def _from_protobuf(body: bytes) -> list[SpanRecord]:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:  # protobuf's DecodeError
        raise OtlpDecodeError(f"invalid protobuf: {exc}") from exc
    spans: list[SpanRecord] = []
    for resource_spans in request.resource_spans:
        resource = _pb_attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            scope_attrs = _pb_attributes(scope.attributes)
            for span in scope_spans.spans:
                spans.append(
                    SpanRecord(
                        trace_id=_hex_id(span.trace_id, 16, "traceId"),
                        span_id=_hex_id(span.span_id, 8, "spanId"),
                        parent_span_id=_hex_id(span.parent_span_id, 8, "parentSpanId") if span.parent_span_id else None,
                        name=span.name,
                        kind=span.kind,
                        start_time_unix_nano=span.start_time_unix_nano,
                        end_time_unix_nano=span.end_time_unix_nano,
                        attributes=_pb_attributes(span.attributes),
                        status_code=span.status.code,
                        status_message=span.status.message,
                        resource_attributes=resource,
                        scope_name=scope.name,
                        scope_version=scope.version,
                        scope_attributes=scope_attrs,
                        events=[SpanEvent(e.name, e.time_unix_nano, _pb_attributes(e.attributes)) for e in span.events],
                    )
                )
    return spans


def _hex_id(raw: bytes, size: int, what: str) -> str:
    if len(raw) != size or not any(raw):
        raise OtlpDecodeError(f"invalid {what}")
    return raw.hex()


def _pb_attributes(items: Any) -> dict[str, Any]:
    return {kv.key: _pb_value(kv.value) for kv in items}


def _pb_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        entries: list[KeyValue] = list(value.kvlist_value.values)
        return {kv.key: _pb_value(kv.value) for kv in entries}
    return getattr(value, kind)


# --- JSON -------------------------------------------------------------------


def _from_json(body: bytes) -> list[SpanRecord]:
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise OtlpDecodeError("body must be a JSON object")
    spans: list[SpanRecord] = []
    for resource_spans in _json_list(doc, "resourceSpans"):
        resource = _json_attributes((resource_spans.get("resource") or {}).get("attributes"))
        for scope_spans in _json_list(resource_spans, "scopeSpans"):
            scope = scope_spans.get("scope") or {}
            scope_attrs = _json_attributes(scope.get("attributes"))
            for span in _json_list(scope_spans, "spans"):
                spans.append(_json_span(span, resource, scope, scope_attrs))
    return spans


def _json_list(doc: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise OtlpDecodeError(f"{key} must be an array of objects")
    return value


def _json_span(
    span: dict[str, Any], resource: dict[str, Any], scope: dict[str, Any], scope_attrs: dict[str, Any]
) -> SpanRecord:
    status = span.get("status") or {}
    parent = span.get("parentSpanId")
    events = span.get("events") or []
    if not isinstance(events, list):
        raise OtlpDecodeError("events must be an array")
    return SpanRecord(
        trace_id=_json_id(span.get("traceId"), 16, "traceId"),
        span_id=_json_id(span.get("spanId"), 8, "spanId"),
        parent_span_id=_json_id(parent, 8, "parentSpanId") if parent else None,
        name=str(span.get("name", "")),
        kind=_json_int(span.get("kind", 0)),
        start_time_unix_nano=_json_int(span.get("startTimeUnixNano", 0)),
        end_time_unix_nano=_json_int(span.get("endTimeUnixNano", 0)),
        attributes=_json_attributes(span.get("attributes")),
        status_code=_json_status(status.get("code", 0)),
        status_message=str(status.get("message", "")),
        resource_attributes=resource,
        scope_name=str(scope.get("name", "")),
        scope_version=str(scope.get("version", "")),
        scope_attributes=scope_attrs,
        events=[
            SpanEvent(
                str(e.get("name", "")),
                _json_int(e.get("timeUnixNano", 0)),
                _json_attributes(e.get("attributes")),
            )
            for e in events
        ],
    )


def _json_id(value: Any, size: int, what: str) -> str:
    """OTLP/JSON ids are hex strings; base64 (protobuf JSON mapping) is tolerated."""
    if not isinstance(value, str) or not value:
        raise OtlpDecodeError(f"invalid {what}")
    if len(value) == size * 2:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
        if raw:
            return _hex_id(raw, size, what)
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise OtlpDecodeError(f"invalid {what}") from exc
    return _hex_id(raw, size, what)


def _json_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise OtlpDecodeError(f"expected an integer, got {value!r}") from exc


def _json_status(value: Any) -> int:
    if isinstance(value, str) and value in _STATUS_NAMES:
        return _STATUS_NAMES[value]
    return _json_int(value)


def _json_attributes(items: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise OtlpDecodeError("attributes must be an array")
    result: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or "key" not in item:
            raise OtlpDecodeError("attribute entries need a key")
        result[str(item["key"])] = _json_value(item.get("value") or {})
    return result


def _json_value(value: dict[str, Any]) -> Any:
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return _json_int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [_json_value(v) for v in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return _json_attributes((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    return None
