"""Reading an OTLP/JSON trace export (``ExportTraceServiceRequest``) back into plain spans.

The embedded trace store takes what an OTLP/HTTP intake takes, so that the gateway's export
pipeline can hand it the same body it would post to Langfuse. Values follow the OTLP/JSON
mapping that ``otlp_json`` writes: ids as lowercase hex (base64, the protobuf JSON mapping, is
tolerated), 64-bit integers as decimal strings, status codes as integers or their enum names.
A malformed span rejects the whole export, as an OTLP intake does.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import orjson

_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


class OtlpDecodeError(ValueError):
    """The body is not a valid OTLP/JSON trace export."""


@dataclass(frozen=True, slots=True)
class Span:
    """One exported span with its resource and instrumentation scope, values as Python values."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_time_unix_nano: int
    end_time_unix_nano: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource_attributes: dict[str, Any]
    scope_name: str
    scope_version: str
    scope_attributes: dict[str, Any]


def decode_spans(body: bytes) -> list[Span]:
    """Every span of one OTLP/JSON export; ``OtlpDecodeError`` when any part is malformed."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OtlpDecodeError(f"invalid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise OtlpDecodeError("the export must be a JSON object")
    spans: list[Span] = []
    for resource_spans in _objects(document, "resourceSpans"):
        resource = _attributes((resource_spans.get("resource") or {}).get("attributes"))
        for scope_spans in _objects(resource_spans, "scopeSpans"):
            scope = scope_spans.get("scope") or {}
            scope_attributes = _attributes(scope.get("attributes"))
            for span in _objects(scope_spans, "spans"):
                status = span.get("status") or {}
                parent = span.get("parentSpanId")
                spans.append(
                    Span(
                        trace_id=_id(span.get("traceId"), 16, "traceId"),
                        span_id=_id(span.get("spanId"), 8, "spanId"),
                        parent_span_id=_id(parent, 8, "parentSpanId") if parent else None,
                        name=str(span.get("name", "")),
                        start_time_unix_nano=_integer(span.get("startTimeUnixNano", 0)),
                        end_time_unix_nano=_integer(span.get("endTimeUnixNano", 0)),
                        attributes=_attributes(span.get("attributes")),
                        status_code=_status(status.get("code", 0)),
                        status_message=str(status.get("message", "")),
                        resource_attributes=resource,
                        scope_name=str(scope.get("name", "")),
                        scope_version=str(scope.get("version", "")),
                        scope_attributes=scope_attributes,
                    )
                )
    return spans


def _objects(document: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = document.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise OtlpDecodeError(f"{key} must be an array of objects")
    return value


def _id(value: Any, size: int, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise OtlpDecodeError(f"invalid {what}")
    raw = b""
    if len(value) == size * 2:
        try:
            raw = bytes.fromhex(value)
        except ValueError:
            raw = b""
    if not raw:
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise OtlpDecodeError(f"invalid {what}") from exc
    if len(raw) != size or not any(raw):
        raise OtlpDecodeError(f"invalid {what}")
    return raw.hex()


def _integer(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise OtlpDecodeError(f"expected an integer, got {type(value).__name__}") from exc


def _status(value: Any) -> int:
    if isinstance(value, str) and value in _STATUS_NAMES:
        return _STATUS_NAMES[value]
    return _integer(value)


def _attributes(items: Any) -> dict[str, Any]:
    if items is None:
        return {}
    if not isinstance(items, list):
        raise OtlpDecodeError("attributes must be an array")
    result: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, dict) or "key" not in item:
            raise OtlpDecodeError("every attribute needs a key")
        result[str(item["key"])] = _value(item.get("value") or {})
    return result


def _value(value: Any) -> Any:
    if not isinstance(value, dict):
        raise OtlpDecodeError("an attribute value must be an object")
    if "stringValue" in value:
        return str(value["stringValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "intValue" in value:
        return _integer(value["intValue"])
    if "doubleValue" in value:
        try:
            return float(value["doubleValue"])
        except (TypeError, ValueError) as exc:
            raise OtlpDecodeError("invalid doubleValue") from exc
    if "arrayValue" in value:
        return [_value(item) for item in (value["arrayValue"] or {}).get("values") or []]
    if "kvlistValue" in value:
        return _attributes((value["kvlistValue"] or {}).get("values"))
    if "bytesValue" in value:
        try:
            return base64.b64decode(value["bytesValue"]).decode("utf-8", "replace")
        except (binascii.Error, ValueError, TypeError) as exc:
            raise OtlpDecodeError("invalid bytesValue") from exc
    return None
