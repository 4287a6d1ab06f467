"""Route labels, the outermost request layer, outcomes, and the Prometheus page."""

from __future__ import annotations

import asyncio
import uuid
from itertools import product
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from proxy_core.adapters.prometheus_metrics import PrometheusMetrics
from proxy_core.api.errors import register_error_handlers
from proxy_core.api.observability import ObservedFastAPI, metadata_route_template, route_label
from proxy_core.errors import (
    InvalidRequestError,
    RateLimitError,
    ShuttingDownError,
    StoreUnavailableError,
    UpstreamError,
    UpstreamTimeoutError,
)
from proxy_core.services.metrics import outcome_of
from proxy_core.services.paths import Endpoint, parse_metadata_path

IDS = ("proj-x9", "roll-x9", "inv-x9", "exp-x9", "run-x9", "row-x9", "aHR0cDovL2V4YW1wbGU")


class RecordingMetrics:
    """Only what the HTTP layer reports; every other port method is unused here."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, int]] = []

    def request(self, route: str, method: str, code: int, duration_s: float) -> None:
        assert duration_s >= 0
        self.requests.append((route, method, code))


def _paths() -> list[str]:
    project, rollout, invocation, experiment, run, row, base = IDS
    paths = []
    for endpoint, v1, with_project, with_rollout in product(Endpoint, ("", "/v1"), (False, True), (False, True)):
        if with_rollout and endpoint is not Endpoint.CHAT_COMPLETIONS:
            continue
        tail = "/".join(part.replace("{rollout_id}", rollout) for part in endpoint.value)
        path = v1 + (f"/project_id/{project}" if with_project else "")
        if with_rollout:
            path += (
                f"/rollout_id/{rollout}/invocation_id/{invocation}/experiment_id/{experiment}/run_id/{run}/row_id/{row}"
            )
            paths.append(f"{path}/encoded_base_url/{base}/{tail}")
        paths.append(f"{path}/{tail}")
    return paths


def test_every_metadata_route_is_a_template_without_its_ids() -> None:
    templates = set()
    for path in _paths():
        target = parse_metadata_path(path)
        assert target is not None, path
        template = metadata_route_template(target)
        assert not any(value in template for value in IDS), template
        assert parse_metadata_path(template.replace("{", "").replace("}", "")) is not None
        templates.add(template)
    # /v1 spellings share their template: one series per route shape, not per alias.
    assert len(templates) == len(_paths()) // 2
    assert "/project_id/{project_id}/traces" in templates
    assert "/rollouts/{rollout_id}" in templates


def test_a_route_nobody_serves_is_one_label() -> None:
    assert route_label({"route": None}) == "unmatched"
    assert route_label({"route": type("Route", (), {"path": "/{path:path}"})()}) == "unmatched"
    assert route_label({"route": type("Route", (), {"path": "/health"})()}) == "/health"


def _observed_app(metrics: RecordingMetrics) -> ObservedFastAPI:
    app = ObservedFastAPI(metrics=metrics)  # type: ignore[arg-type]
    register_error_handlers(app)
    router = APIRouter()

    @router.get("/fails/{item}")
    async def fails(item: str) -> dict[str, str]:
        raise RuntimeError(f"broken {item}")

    @router.get("/ok")
    async def ok() -> dict[str, str]:
        return {}

    app.include_router(router)
    return app


def test_an_unexpected_failure_is_answered_with_the_request_id_and_counted() -> None:
    metrics = RecordingMetrics()
    with TestClient(_observed_app(metrics), raise_server_exceptions=False) as client:
        request_id = str(uuid.uuid4())
        answer = client.get("/fails/secret-1", headers={"x-request-id": request_id})
        assert answer.status_code == 500
        assert answer.headers["x-request-id"] == request_id
        assert answer.json()["error"]["code"] == "internal_error"
        assert client.get("/ok").status_code == 200
    assert metrics.requests == [("/fails/{item}", "GET", 500), ("/ok", "GET", 200)]


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (InvalidRequestError("bad"), "invalid_request"),
        (RateLimitError("slow down"), "rate_limited"),
        (UpstreamError("provider", status_code=500), "provider_error"),
        (UpstreamTimeoutError("late"), "provider_error"),
        (StoreUnavailableError("down"), "store_unavailable"),
        (ShuttingDownError("stop"), "cancelled"),
        (asyncio.CancelledError(), "cancelled"),
        (RuntimeError("bug"), "error"),
    ],
)
def test_every_failure_has_an_outcome_other_than_success(error: BaseException, outcome: str) -> None:
    assert outcome_of(error) == outcome


def _parsed(metrics: PrometheusMetrics) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    page, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page.decode())
        for sample in family.samples
    }


def test_the_page_holds_what_was_reported() -> None:
    metrics = PrometheusMetrics()
    for _ in range(3):
        metrics.request("/health", "GET", 200, 0.001)
    metrics.request("/health", "BREW", 405, 0.001)  # a method nobody defined is not a new label value
    metrics.completion("proj-a", "chat_completions", "success")
    metrics.provider_duration("proj-a", "chat_completions", 0.2)
    metrics.overhead("proj-a", "chat_completions", -0.0001)  # a clock's rounding never makes a negative sample
    metrics.spans("proj-a", "exported", 4)
    metrics.spool_depth("proj-a", 2)
    metrics.breaker_state("rollout_store_writes", "half_open")
    samples = _parsed(metrics)

    def at(name: str, **labels: Any) -> float:
        return samples[(name, frozenset(labels.items()))]

    assert at("gateway_requests_total", route="/health", method="GET", code="200") == 3
    assert at("gateway_requests_total", route="/health", method="OTHER", code="405") == 1
    assert at("gateway_request_duration_seconds_bucket", route="/health", method="GET", le="0.005") == 3
    assert at("gateway_completions_total", project="proj-a", endpoint="chat_completions", outcome="success") == 1
    assert at("gateway_provider_duration_seconds_bucket", project="proj-a", endpoint="chat_completions", le="0.1") == 0
    assert at("gateway_overhead_seconds_bucket", project="proj-a", endpoint="chat_completions", le="0.0005") == 1
    assert at("gateway_trace_spans_total", project="proj-a", state="exported") == 4
    assert at("gateway_trace_spool_spans", project="proj-a") == 2
    breaker = {"breaker": "rollout_store_writes"}
    assert at("gateway_breaker_state", state="half_open", **breaker) == 1
    assert (
        at("gateway_breaker_state", state="open", **breaker)
        == at("gateway_breaker_state", state="closed", **breaker)
        == 0
    )


def test_each_application_has_a_registry_of_its_own() -> None:
    first, second = PrometheusMetrics(), PrometheusMetrics()
    first.completion("proj-a", "chat_completions", "success")
    assert ("gateway_completions_total", frozenset()) not in _parsed(second)
    assert not any(name == "gateway_completions_total" for name, _ in _parsed(second))
