"""The metrics port on ``prometheus-client``: one registry per application, one scrape per gateway.

With one worker the metrics live in this process's registry. With ``WORKERS`` > 1 the parent
process points ``PROMETHEUS_MULTIPROC_DIR`` at a fresh directory before the workers start
(``proxy_core.serving``), prometheus-client then keeps every value in a file per worker there, and a
scrape answered by any worker reads and sums all of them: the page is the gateway's, not the
worker's that happened to take the connection. Counters and histograms are summed; the gauges
are summed over the workers alive (a worker removes its own files when it stops), but for the
spool depth, which every worker reads from the same Redis spool: its largest reading is shown.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from proxy_core.services.metrics import BREAKER_STATES

# Request and provider latencies of LLM calls: milliseconds for health checks, minutes for long generations.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
# The gateway's own share of a completion: fractions of a millisecond to a second.
OVERHEAD_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
# /traces waits: from an immediate answer to the longest deadline a caller may ask for (900 s).
WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"})


def multiprocess_mode() -> bool:
    """Whether prometheus-client keeps values in per-process files (it decided when imported)."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class _Family:
    """A labelled metric with its children cached: ``labels()`` takes a lock and builds a key each time."""

    __slots__ = ("_children", "_metric")

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def child(self, *labels: str) -> Any:
        found = self._children.get(labels)
        if found is None:
            found = self._children[labels] = self._metric.labels(*labels)
        return found


class PrometheusMetrics:
    """``GatewayMetrics`` and ``MetricsPage`` on prometheus-client."""

    def __init__(self) -> None:
        self._multiprocess = multiprocess_mode()
        self._registry = CollectorRegistry(auto_describe=True)
        registry = self._registry
        self._requests = _Family(
            Counter("gateway_requests", "HTTP requests answered.", ["route", "method", "code"], registry=registry)
        )
        self._request_duration = _Family(
            Histogram(
                "gateway_request_duration_seconds",
                "Time from a request's arrival to the end of its answer (a stream: its last event).",
                ["route", "method"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self._completions = _Family(
            Counter(
                "gateway_completions",
                "Completions by how they ended.",
                ["project", "endpoint", "outcome"],
                registry=registry,
            )
        )
        self._provider = _Family(
            Histogram(
                "gateway_provider_duration_seconds",
                "Time the provider took to answer a completion (a stream: until its last chunk).",
                ["project", "endpoint"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            )
        )
        self._overhead = _Family(
            Histogram(
                "gateway_overhead_seconds",
                "The gateway's own time on a successful completion: its handling minus the provider's.",
                ["project", "endpoint"],
                buckets=OVERHEAD_BUCKETS,
                registry=registry,
            )
        )
        self._store_errors = _Family(
            Counter("gateway_store_errors", "Rollout-store operations that failed.", ["operation"], registry=registry)
        )
        self._breaker = _Family(
            Gauge(
                "gateway_breaker_state",
                "Worker processes whose circuit breaker is in this state.",
                ["breaker", "state"],
                multiprocess_mode="livesum",
                registry=registry,
            )
        )
        self._traces_wait = _Family(
            Histogram(
                "gateway_traces_wait_seconds",
                "Time a /traces call waited for a rollout's traces, by how it ended.",
                ["project", "outcome"],
                buckets=WAIT_BUCKETS,
                registry=registry,
            )
        )
        self._spans = _Family(
            Counter(
                "gateway_trace_spans", "Trace spans by what became of them.", ["project", "state"], registry=registry
            )
        )
        self._spool = _Family(
            Gauge(
                "gateway_trace_spool_spans",
                "Trace spans in the spool, waiting for Langfuse to take them (shared by workers with Redis).",
                ["project"],
                multiprocess_mode="livemax",
                registry=registry,
            )
        )

    def request(self, route: str, method: str, code: int, duration_s: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self._requests.child(route, method, str(code)).inc()
        self._request_duration.child(route, method).observe(duration_s)

    def completion(self, project: str, endpoint: str, outcome: str) -> None:
        self._completions.child(project, endpoint, outcome).inc()

    def provider_duration(self, project: str, endpoint: str, seconds: float) -> None:
        self._provider.child(project, endpoint).observe(seconds)

    def overhead(self, project: str, endpoint: str, seconds: float) -> None:
        self._overhead.child(project, endpoint).observe(max(0.0, seconds))

    def store_error(self, operation: str) -> None:
        self._store_errors.child(operation).inc()

    def breaker_state(self, breaker: str, state: str) -> None:
        for known in {*BREAKER_STATES, state}:
            self._breaker.child(breaker, known).set(1 if known == state else 0)

    def traces_wait(self, project: str, outcome: str, seconds: float) -> None:
        self._traces_wait.child(project, outcome).observe(seconds)

    def spans(self, project: str, state: str, count: int) -> None:
        if count:
            self._spans.child(project, state).inc(count)

    def spool_depth(self, project: str, spans: int) -> None:
        self._spool.child(project).set(spans)

    def render(self) -> tuple[bytes, str]:
        """This process's registry, or with several workers the sum over all of their files."""
        if not self._multiprocess:
            return generate_latest(self._registry), CONTENT_TYPE_LATEST
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        return generate_latest(merged), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """A stopping worker takes its gauges out of the sum (its counters stay counted)."""
        if self._multiprocess:
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
