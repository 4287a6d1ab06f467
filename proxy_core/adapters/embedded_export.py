"""The span exporter that hands a project's spans to the embedded trace store.

This is the one place the export pipeline meets the embedded store, and it is meant to be
re-wired: it takes the place of the HTTP exporter for trace targets at ``EMBEDDED_HOST``, encodes
a batch exactly as that exporter would (``encode_spans``, with the project's export-stage
redaction), and passes the body to the store's OTLP intake, ``ingest(project_id, otlp_json)``.

Exporters run on the span processor's thread; the store is asynchronous and lives on the event
loop, so each batch is run there and waited for, within the export timeout. An export called on
the event loop's own thread would wait for itself: it is refused (and counted as failed) instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Awaitable, Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from proxy_core.adapters.embedded_traces import EMBEDDED_HOST, project_of
from proxy_core.adapters.otlp_json import RedactorFactory, encode_spans

logger = logging.getLogger("proxy_core.tracing")

Ingest = Callable[[str, bytes], Awaitable[None]]


class EmbeddedSink:
    """Where spans of embedded trace targets go: the store's intake, on the loop it runs on."""

    def __init__(self, ingest: Ingest, loop: asyncio.AbstractEventLoop) -> None:
        self._ingest = ingest
        self._loop = loop

    @staticmethod
    def serves(endpoint: str) -> bool:
        return endpoint.startswith(EMBEDDED_HOST + "/")

    def exporter(self, public_key: str, timeout_s: float, new_redactor: RedactorFactory) -> SpanExporter:
        """The exporter for the project ``public_key`` names (an unknown key exports nothing)."""
        return EmbeddedExporter(self._ingest, self._loop, project_of(public_key), timeout_s, new_redactor)


class EmbeddedExporter(SpanExporter):
    def __init__(
        self,
        ingest: Ingest,
        loop: asyncio.AbstractEventLoop,
        project_id: str | None,
        timeout_s: float,
        new_redactor: RedactorFactory,
    ) -> None:
        self._ingest = ingest
        self._loop = loop
        self._project_id = project_id
        self._timeout_s = timeout_s
        self._new_redactor = new_redactor
        self._stopped = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopped or self._project_id is None or self._loop.is_closed():
            return SpanExportResult.FAILURE
        if _running_loop() is self._loop:
            logger.error("embedded trace export called on the event loop; %d spans dropped", len(spans))
            return SpanExportResult.FAILURE
        try:
            body = encode_spans(spans, self._new_redactor)
        except Exception:
            # Never keep unredacted spans: a batch that cannot be redacted (or encoded) is dropped.
            logger.error("span redaction or encoding failed; %d spans dropped", len(spans), exc_info=True)
            return SpanExportResult.FAILURE
        try:
            future = asyncio.run_coroutine_threadsafe(_call(self._ingest, self._project_id, body), self._loop)
        except RuntimeError:  # the loop closed meanwhile
            return SpanExportResult.FAILURE
        try:
            future.result(timeout=self._timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            logger.warning("the embedded trace store did not take a batch in time; %d spans lost", len(spans))
            return SpanExportResult.FAILURE
        except Exception:
            logger.warning("the embedded trace store refused a batch; %d spans lost", len(spans), exc_info=True)
            return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._stopped = True

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


async def _call(ingest: Ingest, project_id: str, body: bytes) -> None:
    await ingest(project_id, body)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
