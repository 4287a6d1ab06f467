"""One completion's outcome and timings, reported to the metrics port once, however it ends.

A completion ends in one of three places: ``create`` returns a JSON answer or raises; a stream's
relay records the completion or answers a failure in-band; or the stream is abandoned (the client
went away, the server stopped it). ``CompletionObservation`` is told of each and reports the first.

Timings: the provider's share runs from the provider call to its answer (a stream: its last
chunk, so the relay's per-chunk work counts as the provider's); the gateway's overhead is the rest
of the completion's handling — checks, sanitizing, preparation before the call, recording after
it — and is reported for successful completions only, where it means the same thing every time.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

from proxy_core.errors import GatewayError
from proxy_core.services.metrics import SUCCESS, GatewayMetrics, outcome_of

logger = logging.getLogger("proxy_core.completions")


class CompletionObservation:
    __slots__ = ("_ended", "_metrics", "_provider_s", "_provider_started", "_started", "endpoint", "project")

    def __init__(self, metrics: GatewayMetrics, endpoint: str) -> None:
        self._metrics = metrics
        self.endpoint = endpoint
        self.project = ""  # known once the request is authorized; never a name the client made up
        self._started = time.perf_counter()
        self._provider_started: float | None = None
        self._provider_s: float | None = None
        self._ended = False

    def provider_called(self) -> None:
        self._provider_started = time.perf_counter()

    def provider_answered(self) -> None:
        """The provider's answer is complete (or failed); later calls change nothing."""
        if self._provider_started is not None and self._provider_s is None:
            self._provider_s = time.perf_counter() - self._provider_started

    def succeeded(self) -> None:
        self._end(SUCCESS)

    def failed(self, error: BaseException) -> None:
        self.provider_answered()
        self._end(outcome_of(error))

    def failed_in_band(self, error: GatewayError) -> None:
        """A stream's failure after its 200: the client reads it as an SSE event, the log says so."""
        logger.warning("stream ended with an in-band error: status=%d code=%s", error.status_code, error.code)
        self.failed(error)

    async def watch(self, frames: AsyncGenerator[bytes, None]) -> AsyncGenerator[bytes, None]:
        """``frames`` as they are; a stream closed before it ended counts as cancelled."""
        try:
            async for frame in frames:
                yield frame
        except BaseException as error:  # closed early (GeneratorExit, cancelled) or failed outright
            self.failed(error)
            raise
        finally:
            await frames.aclose()

    def _end(self, outcome: str) -> None:
        if self._ended:
            return
        self._ended = True
        metrics, project, endpoint = self._metrics, self.project, self.endpoint
        metrics.completion(project, endpoint, outcome)
        if self._provider_s is not None:
            metrics.provider_duration(project, endpoint, self._provider_s)
        if outcome == SUCCESS:
            elapsed = time.perf_counter() - self._started
            metrics.overhead(project, endpoint, elapsed - (self._provider_s or 0.0))
