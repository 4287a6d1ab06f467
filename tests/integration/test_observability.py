"""``/metrics`` against the traffic sent, request ids on every answer, traceparent in the trace."""

from __future__ import annotations

import logging
import socket
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proxy_core.config_files import ApiKey
from proxy_core.log_format import RequestContextFilter
from tests.fakes.langfuse_state import LangfuseState
from tests.integration.conftest import Gateway, GatewayFactory, rollout_path

USER = [{"role": "user", "content": "hi"}]
ROLLOUT_ROUTE = (
    "/project_id/{project_id}/rollout_id/{rollout_id}/invocation_id/{invocation_id}/experiment_id/{experiment_id}"
    "/run_id/{run_id}/row_id/{row_id}/chat/completions"
)
UUID_SHAPE = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(gateway: Gateway, headers: dict[str, str] | None = None) -> tuple[str, Samples]:
    """The page and its samples, parsed by prometheus-client's own parser."""
    response = httpx.get(f"{gateway.url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return response.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def post(gateway: Gateway, path: str, content: str, **options: object) -> httpx.Response:
    body = {"model": "fake", "messages": [{"role": "user", "content": content}], **options}
    return httpx.post(f"{gateway.url}{path}", json=body, headers={"authorization": "Bearer sk-client"}, timeout=30)


def test_metrics_count_the_traffic_sent_and_name_no_id(gateway: Gateway, langfuse: LangfuseState) -> None:
    rollout = f"r-{uuid.uuid4().hex}"
    tracked = f"/project_id/proj-a/{rollout_path(rollout)}/chat/completions"
    seen: Counter[tuple[str, str, int]] = Counter()
    insertion_ids = []
    for content in ["one", "two", "three", "[[status=500]]", "[[status=500]]"]:
        answer = post(gateway, tracked, content)
        seen[(ROLLOUT_ROUTE, "POST", answer.status_code)] += 1
        insertion_ids.append(answer.headers.get("x-insertion-id"))
    streamed = post(gateway, tracked, "[[chunks=4]]", stream=True)
    cut = post(gateway, tracked, "[[chunks=6]] [[cut_after=2]]", stream=True)
    assert (streamed.status_code, cut.status_code) == (200, 200)
    assert b'"error"' in cut.content
    assert b'"error"' not in streamed.content
    seen[(ROLLOUT_ROUTE, "POST", 200)] += 2
    insertion_ids += [streamed.headers["x-insertion-id"], cut.headers["x-insertion-id"]]
    untracked = post(gateway, "/v1/chat/completions", "plain")
    seen[("/chat/completions", "POST", untracked.status_code)] += 1
    bad_id = httpx.post(
        f"{gateway.url}/rollout_id/a,b/invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions"
    )
    unknown = httpx.get(f"{gateway.url}/no/such/{rollout}")
    seen[("unmatched", "POST", bad_id.status_code)] += 1
    seen[("unmatched", "GET", unknown.status_code)] += 1
    assert (untracked.status_code, bad_id.status_code, unknown.status_code) == (200, 400, 404)
    assert httpx.get(f"{gateway.url}/health").status_code == 200
    seen[("/health", "GET", 200)] += 1

    text, samples = scrape(gateway)
    requests = {
        (dict(labels)["route"], dict(labels)["method"], int(dict(labels)["code"])): count
        for (name, labels), count in samples.items()
        if name == "gateway_requests_total"
    }
    assert requests == dict(seen)
    assert value(samples, "gateway_request_duration_seconds_count", route=ROLLOUT_ROUTE, method="POST") == 7
    completions = {"project": "proj-a", "endpoint": "chat_completions"}
    assert value(samples, "gateway_completions_total", outcome="success", **completions) == 5
    assert value(samples, "gateway_completions_total", outcome="provider_error", **completions) == 3
    assert value(samples, "gateway_provider_duration_seconds_count", **completions) == 8
    assert value(samples, "gateway_overhead_seconds_count", **completions) == 5
    assert value(samples, "gateway_breaker_state", breaker="rollout_store_writes", state="closed") == 1
    assert value(samples, "gateway_store_errors_total", operation="record") == 0
    for forbidden in [rollout, "inv-1", "exp-1", "run-1", "row-1", *filter(None, insertion_ids)]:
        assert forbidden not in text


def test_spans_are_counted_per_project(gateway: Gateway, langfuse: LangfuseState) -> None:
    for project in ("proj-a", "proj-b", "proj-b"):
        assert post(gateway, f"/project_id/{project}/chat/completions", "hi").status_code == 200

    def exported() -> Samples | None:
        _, samples = scrape(gateway)
        done = value(samples, "gateway_trace_spans_total", project="proj-b", state="exported") == 2
        return samples if done else None

    samples = langfuse.wait_for(exported, timeout=15, interval=0.1)
    assert value(samples, "gateway_trace_spans_total", project="proj-a", state="exported") == 1
    assert value(samples, "gateway_trace_spans_total", project="proj-b", state="queued") == 2
    assert value(samples, "gateway_trace_spans_total", project="proj-b", state="spooled") == 0
    assert len(langfuse.spans("proj-b")) == 2


def test_spans_langfuse_cannot_take_show_in_the_spool_until_replayed(gateway: Gateway, langfuse: LangfuseState) -> None:
    langfuse.inject("/api/public/otel", 503, count=1_000_000)
    for _ in range(3):
        assert post(gateway, "/project_id/proj-b/chat/completions", "hi").status_code == 200

    def spans(state: str) -> float:
        return value(scrape(gateway)[1], "gateway_trace_spans_total", project="proj-b", state=state)

    def spool() -> float:
        return value(scrape(gateway)[1], "gateway_trace_spool_spans", project="proj-b")

    langfuse.wait_for(lambda: spans("spooled") == 3 and spool() == 3, timeout=20, interval=0.1)
    assert spans("exported") == 0
    langfuse.clear_faults()
    langfuse.wait_for(lambda: spans("replayed") == 3 and spool() == 0, timeout=20, interval=0.1)
    assert len(langfuse.spans("proj-b")) == 3


def test_a_store_that_fails_counts_its_errors_and_opens_the_breaker(gateway_factory: GatewayFactory) -> None:
    """A tracked call proves the store writable first: each probe fails, the fifth opens the breaker,
    and the sixth call is refused without one. None of them reached the provider."""
    with socket_that_refuses() as port:
        gateway = gateway_factory(redis_url=f"redis://127.0.0.1:{port}/0")
        answers = [post(gateway, f"/{rollout_path('r-down')}/chat/completions", "hi") for _ in range(6)]
        _, samples = scrape(gateway)
    assert [answer.status_code for answer in answers] == [503] * 6
    assert {answer.json()["error"]["code"] for answer in answers} == {"store_unavailable"}
    assert value(samples, "gateway_store_errors_total", operation="probe") >= 5  # the background probe may add
    assert value(samples, "gateway_store_errors_total", operation="record") == 0
    writes = {"breaker": "rollout_store_writes"}
    assert value(samples, "gateway_breaker_state", state="open", **writes) == 1
    assert value(samples, "gateway_breaker_state", state="closed", **writes) == 0
    assert value(samples, "gateway_breaker_state", breaker="rollout_store_reads", state="closed") == 1
    outcome = {"project": "proj-a", "endpoint": "chat_completions", "outcome": "store_unavailable"}
    assert value(samples, "gateway_completions_total", **outcome) == 6
    assert value(samples, "gateway_provider_duration_seconds_count", project="proj-a", endpoint="chat_completions") == 0


def test_traces_waits_are_timed_by_outcome(gateway: Gateway, langfuse: LangfuseState) -> None:
    rollout = f"r-{uuid.uuid4().hex[:8]}"
    assert post(gateway, f"/{rollout_path(rollout)}/chat/completions", "hi").status_code == 200
    answer = httpx.get(
        f"{gateway.url}/v1/traces", params={"tags": f"rollout_id:{rollout}", "max_retries": 4}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    _, samples = scrape(gateway)
    assert value(samples, "gateway_traces_wait_seconds_count", project="proj-a", outcome="complete") == 1
    assert value(samples, "gateway_requests_total", route="/traces", method="GET", code="200") == 1


def test_metrics_need_a_key_for_every_project_when_keys_are_on(gateway_factory: GatewayFactory) -> None:
    keys = (
        ApiKey(name="a", key="gw-only-project-a-key", projects=("proj-a",)),
        ApiKey(name="ops", key="gw-operations-key-0001", projects=("*",)),
    )
    gateway = gateway_factory(api_keys=keys)
    assert httpx.get(f"{gateway.url}/metrics").json()["error"]["code"] == "missing_api_key"
    refused = httpx.get(f"{gateway.url}/metrics", headers={"authorization": "Bearer gw-only-project-a-key"})
    assert refused.status_code == 403
    assert refused.json() == {
        "error": {
            "message": "Reading /metrics needs a gateway key valid for every project ('*').",
            "type": "permission_error",
            "param": None,
            "code": "permission_denied",
        }
    }
    scrape(gateway, {"authorization": "Bearer gw-operations-key-0001"})


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/health", 200),
        ("GET", "/nowhere", 404),
        ("PUT", "/health", 405),
        ("POST", "/rollout_id/a,b/invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions", 400),
        ("POST", "/chat/completions", 400),  # no body
    ],
)
def test_every_answer_carries_a_request_id(gateway: Gateway, method: str, path: str, status: int) -> None:
    sent = str(uuid.uuid4())
    echoed = httpx.request(method, f"{gateway.url}{path}", headers={"x-request-id": sent})
    assert (echoed.status_code, echoed.headers["x-request-id"]) == (status, sent)
    made = httpx.request(method, f"{gateway.url}{path}")
    assert made.status_code == status
    assert made.headers["x-request-id"] != sent
    uuid.UUID(made.headers["x-request-id"])


@pytest.mark.parametrize("refused", ["has space", "x" * 129, 'quote"d', "-leading-dash", "ünicode"])
def test_an_inbound_request_id_that_is_not_an_id_is_replaced(gateway: Gateway, refused: str) -> None:
    answer = httpx.get(f"{gateway.url}/health", headers={"x-request-id": refused.encode()})
    assert answer.headers["x-request-id"] != refused
    uuid.UUID(answer.headers["x-request-id"])


def test_a_stream_carries_the_request_id_and_its_in_band_error_is_logged(gateway: Gateway) -> None:
    request_id = str(uuid.uuid4())
    with log_records("proxy_core.completions") as records:
        answer = httpx.post(
            f"{gateway.url}/{rollout_path('r-log')}/chat/completions",
            json={
                "model": "fake",
                "messages": [{"role": "user", "content": "[[chunks=6]] [[cut_after=2]]"}],
                "stream": True,
            },
            headers={"x-request-id": request_id, "authorization": "Bearer k"},
            timeout=30,
        )
        assert answer.headers["x-request-id"] == request_id
        assert b'"error"' in answer.content
    (record,) = records
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("stream ended with an in-band error: status=")
    assert (record.request_id, record.insertion_id, record.project) == (  # type: ignore[attr-defined]
        request_id,
        answer.headers["x-insertion-id"],
        "proj-a",
    )
    assert record.route == "/" + ROLLOUT_ROUTE.split("/", 3)[3]  # type: ignore[attr-defined]


def test_traceparent_and_request_id_reach_the_trace_metadata(gateway: Gateway, langfuse: LangfuseState) -> None:
    traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    ids = []
    for header in (traceparent, "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"):
        request_id = str(uuid.uuid4())
        answer = httpx.post(
            f"{gateway.url}/{rollout_path(f'r-{uuid.uuid4().hex[:8]}')}/chat/completions",
            json={"model": "fake", "messages": USER},
            headers={"traceparent": header, "x-request-id": request_id, "authorization": "Bearer k"},
            timeout=30,
        )
        ids.append((answer.headers["x-insertion-id"], request_id))

    def trace_of(insertion_id: str) -> object:
        return next((t for t in langfuse.traces("proj-a") if f"insertion_id:{insertion_id}" in t.tags), None)

    valid = langfuse.wait_for(lambda: trace_of(ids[0][0]), timeout=10)
    assert valid.metadata["traceparent"] == traceparent  # type: ignore[attr-defined]
    assert valid.metadata["request_id"] == ids[0][1]  # type: ignore[attr-defined]
    assert valid.id != "4bf92f3577b34da6a3ce929d0e0e4736"  # type: ignore[attr-defined]  # not its parent
    uppercase = langfuse.wait_for(lambda: trace_of(ids[1][0]), timeout=10)
    assert "traceparent" not in uppercase.metadata  # type: ignore[attr-defined]
    assert uppercase.metadata["request_id"] == ids[1][1]  # type: ignore[attr-defined]


@contextmanager
def socket_that_refuses() -> Iterator[int]:
    """A loopback port nobody listens on, held bound (not listening) so no one else takes it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield int(held.getsockname()[1])


@contextmanager
def log_records(name: str) -> Iterator[list[logging.LogRecord]]:
    """Records of logger ``name`` (and below) as the gateway's handlers see them, context added."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    handler.addFilter(RequestContextFilter())
    logger = logging.getLogger(name)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
