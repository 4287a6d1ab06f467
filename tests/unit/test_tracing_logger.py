"""The tracing logger starts quietly: LiteLLM's proxy-server wiring is not the gateway's."""

from __future__ import annotations

import logging

import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from proxy_core.adapters.litellm_tracing import LangfuseTracing
from proxy_core.adapters.memory_spool import MemorySpanSpool
from proxy_core.adapters.otlp_intake import LangfuseOtlpIntake
from proxy_core.adapters.otlp_json import OtlpJsonCodec
from proxy_core.services.trace_delivery import TraceDelivery


def unstarted_tracing() -> LangfuseTracing:
    """Tracing whose delivery never runs: what it is handed is refused (and counted)."""
    delivery = TraceDelivery(
        targets=dict, intake=LangfuseOtlpIntake(), spool=MemorySpanSpool(max_bytes=1 << 20), codec=OtlpJsonCodec()
    )
    return LangfuseTracing(delivery, destination=lambda host, key: key)


def test_start_up_logs_no_proxy_server_warning(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    unstarted_tracing()
    assert not [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def _call_for(public_key: str) -> dict[str, object]:
    params = {"langfuse_public_key": public_key, "langfuse_secret_key": "sk", "langfuse_host": "http://127.0.0.1:9"}
    return {"standard_callback_dynamic_params": params}


def test_a_projects_tracer_is_made_once_and_renewed_with_its_provider() -> None:
    tracing = unstarted_tracing()
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
