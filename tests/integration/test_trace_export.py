"""Delivering span batches to the Langfuse emulator: retry what is transient, give up on the rest."""

from __future__ import annotations

import base64
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from proxy_core.adapters.otlp_json import OtlpJsonExporter
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.integration.conftest import PROJECTS

OTEL = "/api/public/otel"


class _Capture(SpanExporter):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: object) -> SpanExportResult:
        self.spans.extend(spans)  # type: ignore[arg-type]
        return SpanExportResult.SUCCESS


def make_spans(marker: str, count: int = 3) -> list[ReadableSpan]:
    capture = _Capture()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(capture))
    for n in range(count):
        provider.get_tracer("litellm").start_span(f"{marker}-{n}").end()
    provider.shutdown()
    return capture.spans


def basic(project: str) -> dict[str, str]:
    public, secret = PROJECTS[project]
    token = base64.b64encode(f"{public}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {token}", "x-langfuse-ingestion-version": "4"}


@pytest.fixture
def exporter(langfuse_server: tuple[ServerThread, LangfuseState]) -> Iterator[OtlpJsonExporter]:
    endpoint = f"{langfuse_server[0].url}{OTEL}/v1/traces"
    exporter = OtlpJsonExporter(endpoint, basic("proj-a"), 5.0, lambda: None)
    yield exporter
    exporter.shutdown()


def received(langfuse: LangfuseState, marker: str) -> list[str]:
    return sorted(span.name for span in langfuse.spans("proj-a") if span.name.startswith(marker))


def test_a_batch_lands_in_its_project(exporter: OtlpJsonExporter, langfuse: LangfuseState) -> None:
    marker = uuid.uuid4().hex
    assert exporter.export(make_spans(marker)) is SpanExportResult.SUCCESS
    assert received(langfuse, marker) == [f"{marker}-0", f"{marker}-1", f"{marker}-2"]
    assert langfuse.requests_to(OTEL)[-1].project_id == "proj-a"


def test_unavailable_and_rate_limited_answers_are_retried(exporter: OtlpJsonExporter, langfuse: LangfuseState) -> None:
    marker = uuid.uuid4().hex
    langfuse.inject(OTEL, 503, count=2)
    langfuse.inject(OTEL, 429, count=1, retry_after=0.5)
    started = time.monotonic()
    assert exporter.export(make_spans(marker)) is SpanExportResult.SUCCESS
    assert time.monotonic() - started >= 0.5, "Retry-After was not honoured"
    assert len(received(langfuse, marker)) == 3


def test_refused_credentials_fail_at_once(langfuse_server: tuple[ServerThread, LangfuseState]) -> None:
    langfuse = langfuse_server[1]
    before = len(langfuse.requests_to(OTEL))
    headers = {**basic("proj-a"), "Authorization": "Basic " + base64.b64encode(b"pk-lf-a:wrong").decode()}
    exporter = OtlpJsonExporter(f"{langfuse_server[0].url}{OTEL}/v1/traces", headers, 5.0, lambda: None)
    try:
        started = time.monotonic()
        assert exporter.export(make_spans("refused")) is SpanExportResult.FAILURE
        assert time.monotonic() - started < 1.0
        assert len(langfuse.requests_to(OTEL)) == before + 1
    finally:
        exporter.shutdown()


def test_an_unreachable_endpoint_fails_within_the_timeout() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exporter = OtlpJsonExporter(f"http://127.0.0.1:{port}{OTEL}/v1/traces", basic("proj-a"), 1.0, lambda: None)
    try:
        started = time.monotonic()
        assert exporter.export(make_spans("nowhere")) is SpanExportResult.FAILURE
        assert time.monotonic() - started < 2.5
    finally:
        exporter.shutdown()


def test_shutdown_cuts_a_backoff_short(exporter: OtlpJsonExporter, langfuse: LangfuseState) -> None:
    langfuse.inject(OTEL, 429, count=1, retry_after=30)
    results: list[SpanExportResult] = []
    worker = threading.Thread(target=lambda: results.append(exporter.export(make_spans("stopped"))))
    worker.start()
    time.sleep(0.3)
    started = time.monotonic()
    exporter.shutdown()
    worker.join(timeout=5)
    assert results == [SpanExportResult.FAILURE]
    assert time.monotonic() - started < 1.0


def test_an_export_ends_by_the_deadline_it_was_given(exporter: OtlpJsonExporter, langfuse: LangfuseState) -> None:
    """Shutdown's flush gives the exporter a deadline: retries stop there, later batches fail at once."""
    langfuse.inject(OTEL, 503, count=1000)
    exporter.end_exports_by(time.monotonic() + 0.8)
    started = time.monotonic()
    assert exporter.export(make_spans("late")) is SpanExportResult.FAILURE
    assert time.monotonic() - started < 1.5, "the export retried past its deadline"
    before = len(langfuse.requests_to(OTEL))
    assert exporter.export(make_spans("later")) is SpanExportResult.FAILURE
    assert len(langfuse.requests_to(OTEL)) == before, "a batch past the deadline must not be sent"
