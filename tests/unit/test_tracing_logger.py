"""The tracing logger starts quietly: LiteLLM's proxy-server wiring is not the gateway's."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy_core.adapters.litellm_tracing import ExportTuning, LangfuseTracing


def test_start_up_logs_no_proxy_server_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    LangfuseTracing()
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def _call_for(public_key: str) -> dict[str, object]:
    params = {"langfuse_public_key": public_key, "langfuse_secret_key": "sk", "langfuse_host": "http://127.0.0.1:9"}
    return {"standard_callback_dynamic_params": params}


def test_a_projects_tracer_is_made_once_and_renewed_with_its_provider() -> None:
    tracing = LangfuseTracing(ExportTuning(export_timeout_ms=200))  # its spans go nowhere: give up soon
    logger = tracing._logger
    logger._max_dynamic_tracer_providers = 1
    try:
        first = logger.get_tracer_to_use_for_request(_call_for("pk-a"))
        assert logger.get_tracer_to_use_for_request(_call_for("pk-a")) is logger.get_tracer_to_use_for_request(
            _call_for("pk-a")
        )
        kept = logger.get_tracer_to_use_for_request(_call_for("pk-a"))
        logger.get_tracer_to_use_for_request(_call_for("pk-b"))  # evicts, and shuts down, pk-a's provider
        logger.get_tracer_to_use_for_request(_call_for("pk-a"))  # a new provider for pk-a
        renewed = logger.get_tracer_to_use_for_request(_call_for("pk-a"))
        assert renewed is not kept
        (entry,) = logger._tracer_provider_cache.values()
        received = InMemorySpanExporter()
        entry.provider.add_span_processor(SimpleSpanProcessor(received))
        first.start_span("old").end()
        renewed.start_span("new").end()
        assert [span.name for span in received.get_finished_spans()] == ["new"]  # the live provider's
        assert len(logger._tracers) <= 1  # nothing kept for providers LiteLLM dropped
    finally:
        tracing._shutdown_providers()
