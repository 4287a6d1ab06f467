"""OTLP/JSON encoding says exactly what OpenTelemetry's protobuf encoding says, and redacts as told."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as encode_protobuf
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, set_span_in_context

from proxy_core.adapters.otlp_json import MIN_KEPT_CHARACTERS, OtlpJsonCodec, encode_fragment
from proxy_core.adapters.span_redaction import SpanRedactor
from proxy_core.services.sanitizer import SpanRedaction
from tests.fakes.langfuse_otlp import SpanRecord, decode_export


class _Capture(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


@pytest.fixture
def spans() -> list[ReadableSpan]:
    capture = _Capture()
    provider = TracerProvider(resource=Resource.create({"service.name": "proxy-core", "pid": 42}))
    provider.add_span_processor(SimpleSpanProcessor(capture))
    tracer = provider.get_tracer("litellm", "1.2.3")
    parent = tracer.start_span("litellm_request", kind=SpanKind.CLIENT)
    parent.set_attributes(
        {
            "gen_ai.prompt": '[{"role": "user", "content": "call 312-555-0147"}]',
            "gen_ai.completion": "mail jane.doe@example.org",
            "llm.token_count.prompt": 40,
            "gen_ai.request.temperature": 0.2,
            "llm.is_streaming": True,
            "langfuse.trace.tags": json.dumps(["team:jane.doe@example.org", "rollout_id:r-1", "insertion_id:i-1"]),
            "stops": ("a", "b"),
            "ids": (1, 2, 3),
        }
    )
    parent.add_event("exception", {"exception.message": "boom for jane.doe@example.org", "attempt": 2})
    parent.set_status(Status(StatusCode.ERROR, "provider quoted jane.doe@example.org"))
    child = tracer.start_span(
        "child", context=set_span_in_context(parent), links=[Link(parent.get_span_context(), {"why": "retry"})]
    )
    child.end()
    parent.end()
    provider.shutdown()
    return capture.spans


def encode_spans(spans: Sequence[ReadableSpan], new_redactor: object = lambda: None) -> bytes:
    """The spans as one request body, joined from one fragment each, as the delivery sends them."""
    return OtlpJsonCodec().body([encode_fragment(span, new_redactor()) for span in spans])  # type: ignore[operator]


def test_json_and_protobuf_decode_to_the_same_spans(spans: list[ReadableSpan]) -> None:
    from_json = decode_export(encode_spans(spans), "application/json")
    from_protobuf = decode_export(encode_protobuf(spans).SerializeToString(), "application/x-protobuf")
    assert len(from_json) == 2
    assert from_json == from_protobuf


def _by_name(records: list[SpanRecord], name: str) -> SpanRecord:
    return next(record for record in records if record.name == name)


def test_ids_kinds_and_nesting_follow_the_otlp_json_mapping(spans: list[ReadableSpan]) -> None:
    document = json.loads(encode_spans(spans))
    assert len(document["resourceSpans"]) == 2, "one fragment per span"
    encoded = {}
    for resource_spans in document["resourceSpans"]:
        assert {"key": "service.name", "value": {"stringValue": "proxy-core"}} in resource_spans["resource"][
            "attributes"
        ]
        (scope_spans,) = resource_spans["scopeSpans"]
        assert scope_spans["scope"] == {"name": "litellm", "version": "1.2.3"}
        encoded.update({span["name"]: span for span in scope_spans["spans"]})
    parent, child = encoded["litellm_request"], encoded["child"]
    assert len(parent["traceId"]) == 32
    assert len(parent["spanId"]) == 16
    assert child["parentSpanId"] == parent["spanId"]
    assert "parentSpanId" not in parent
    assert parent["kind"] == 3  # SPAN_KIND_CLIENT
    assert child["kind"] == 1  # SPAN_KIND_INTERNAL
    assert parent["status"]["code"] == 2  # STATUS_CODE_ERROR
    assert {"key": "llm.token_count.prompt", "value": {"intValue": "40"}} in parent["attributes"]
    assert isinstance(parent["startTimeUnixNano"], str)


def _masking(outputs_only: bool) -> SpanRedaction:
    def new_redactor() -> object:
        return lambda text: text.replace("jane.doe@example.org", "<EMAIL>").replace("312-555-0147", "<PHONE>")

    return SpanRedaction(new_redactor=new_redactor, outputs_only=outputs_only)  # type: ignore[arg-type]


def test_outputs_only_redaction_leaves_inputs_and_the_gateways_tags(spans: list[ReadableSpan]) -> None:
    redaction = _masking(outputs_only=True)
    records = decode_export(encode_spans(spans, lambda: SpanRedactor(redaction)), "application/json")
    span = _by_name(records, "litellm_request")
    assert span.attributes["gen_ai.completion"] == "mail <EMAIL>"
    assert "312-555-0147" in span.attributes["gen_ai.prompt"], "inputs were redacted before the provider saw them"
    assert json.loads(span.attributes["langfuse.trace.tags"]) == ["team:<EMAIL>", "rollout_id:r-1", "insertion_id:i-1"]
    assert span.events[0].attributes == {"exception.message": "boom for <EMAIL>", "attempt": 2}
    assert span.status_message == "provider quoted <EMAIL>"


def test_full_redaction_covers_every_string(spans: list[ReadableSpan]) -> None:
    redaction = _masking(outputs_only=False)
    records = decode_export(encode_spans(spans, lambda: SpanRedactor(redaction)), "application/json")
    exported = json.dumps([record.attributes for record in records])
    assert "jane.doe@example.org" not in exported
    assert "312-555-0147" not in exported
    assert _by_name(records, "litellm_request").attributes["ids"] == [1, 2, 3]


def test_shrinking_cuts_the_longest_values_visibly_and_never_the_tags(spans: list[ReadableSpan]) -> None:
    codec = OtlpJsonCodec()
    capture = _Capture()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(capture))
    span = provider.get_tracer("litellm").start_span("big")
    huge_tags = json.dumps(["rollout_id:r-1", "insertion_id:i-1", "x" * 50_000])
    span.set_attributes(
        {"langfuse.observation.input": "a" * 400_000, "small": "kept", "langfuse.trace.tags": huge_tags}
    )
    span.set_status(Status(StatusCode.ERROR, "e" * 150_000))
    span.end()
    fragment = encode_fragment(capture.spans[0], None)
    shrunk = codec.shrink(fragment)
    assert shrunk is not None
    assert len(shrunk) < len(fragment) / 2
    (record,) = decode_export(codec.body([shrunk]), "application/json")
    assert record.attributes["small"] == "kept"
    assert record.attributes["langfuse.trace.tags"] == huge_tags, "/traces finds traces by their tags"
    cut = record.attributes["langfuse.observation.input"]
    assert cut.startswith("a" * 100_000)
    assert cut.endswith("[cut by the gateway: 300000 of 400000 characters removed]")
    assert record.status_message.endswith("characters removed]")
    while shrunk is not None:
        last, shrunk = shrunk, codec.shrink(shrunk)
    (small,) = decode_export(codec.body([last]), "application/json")
    assert len(small.attributes["langfuse.observation.input"]) < MIN_KEPT_CHARACTERS + 100


def test_a_span_with_nothing_long_cannot_shrink(spans: list[ReadableSpan]) -> None:
    assert all(OtlpJsonCodec().shrink(encode_fragment(span, None)) is None for span in spans)
