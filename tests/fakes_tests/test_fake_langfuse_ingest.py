"""OTLP ingestion of the Langfuse emulator: transport rules and span → trace conversion."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import httpx
import pytest

from tests.fakes import FakeLangfuse
from tests.fakes.otlp_build import SpanSpec, export_json, export_protobuf, new_trace_id

OTLP = "/api/public/otel/v1/traces"
PROTOBUF = {"content-type": "application/x-protobuf", "x-langfuse-ingestion-version": "4"}


def _post(
    lf: FakeLangfuse,
    specs: list[SpanSpec],
    *,
    project: str = "proj-a",
    encoding: str = "protobuf",
    compress: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = export_protobuf(specs) if encoding == "protobuf" else export_json(specs)
    sent = {"content-type": f"application/{'x-protobuf' if encoding == 'protobuf' else 'json'}"}
    if compress:
        body = gzip.compress(body)
        sent["content-encoding"] = "gzip"
    sent.update(headers or {})
    return httpx.post(lf.url + OTLP, content=body, headers=sent, auth=lf.credentials(project))


def _get(lf: FakeLangfuse, path: str, project: str = "proj-a", **params: Any) -> httpx.Response:
    return httpx.get(lf.url + path, params=params, auth=lf.credentials(project))


def _litellm_like(trace_id: str, **extra: Any) -> SpanSpec:
    attributes = {
        "langfuse.observation.type": "generation",
        "langfuse.observation.input": json.dumps([{"role": "user", "content": "hi"}]),
        "langfuse.observation.output": json.dumps({"role": "assistant", "content": "hello"}),
        "langfuse.trace.tags": json.dumps(["rollout_id:r1", "insertion_id:i1", "rollout_id:r1"]),
        "openinference.span.kind": "LLM",
        "llm.model_name": "gpt-4o-mini",
        "llm.response.model": "gpt-4o-mini-2024",
        "llm.token_count.prompt": 5,
        "llm.token_count.completion": 3,
        "llm.token_count.total": 8,
        "llm.cost.total": 2.5e-06,
        "session.id": "s1",
        "user.id": "u1",
        **extra,
    }
    return SpanSpec(trace_id=trace_id, attributes=attributes)


@pytest.mark.parametrize(("encoding", "compress"), [("protobuf", False), ("json", False), ("protobuf", True)])
def test_accepts_protobuf_json_and_gzip(fake_langfuse: FakeLangfuse, encoding: str, compress: bool) -> None:
    spec = _litellm_like(new_trace_id(), **{"flag": True, "ratio": 0.5, "items": ["a", "b"]})
    response = _post(fake_langfuse, [spec], encoding=encoding, compress=compress)
    assert response.status_code == 200
    assert response.json() == {}
    (span,) = fake_langfuse.state.spans("proj-a")
    assert span.trace_id == spec.trace_id
    assert span.span_id == spec.span_id
    assert span.attributes["flag"] is True
    assert span.attributes["ratio"] == 0.5
    assert span.attributes["items"] == ["a", "b"]
    assert span.attributes["llm.token_count.total"] == 8
    assert span.resource_attributes["service.name"] == "litellm"


@pytest.mark.parametrize(
    ("headers", "body", "expected"),
    [
        ({"content-type": "text/plain"}, b"x", {"error": "Invalid content type"}),
        ({"content-type": "application/x-protobuf"}, b"\xff\xff\xff garbage", None),
        ({"content-type": "application/json"}, b"{not json", None),
        ({"content-type": "application/json", "x-langfuse-ingestion-version": "5"}, b"{}", None),
        ({"content-type": "application/json", "x-langfuse-ingestion-version": "abc"}, b"{}", None),
        ({"content-type": "application/json", "content-encoding": "gzip"}, b"not gzip", None),
    ],
)
def test_rejects_bad_requests_with_400(
    fake_langfuse: FakeLangfuse, headers: dict[str, str], body: bytes, expected: dict[str, str] | None
) -> None:
    response = httpx.post(fake_langfuse.url + OTLP, content=body, headers=headers, auth=("pk-lf-a", "sk-lf-a"))
    assert response.status_code == 400
    if expected is not None:
        assert response.json() == expected
    assert fake_langfuse.state.spans("proj-a") == []


def test_a_malformed_span_rejects_the_whole_batch(fake_langfuse: FakeLangfuse) -> None:
    good = json.loads(export_json([SpanSpec()]))
    bad_span = dict(good["resourceSpans"][0]["scopeSpans"][0]["spans"][0], traceId="1234")
    good["resourceSpans"][0]["scopeSpans"][0]["spans"].append(bad_span)
    response = httpx.post(
        fake_langfuse.url + OTLP, json=good, auth=("pk-lf-a", "sk-lf-a"), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert fake_langfuse.state.spans("proj-a") == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("application/json", b'{"resourceSpans": []}'), ("application/x-protobuf", b"")],
)
def test_empty_export_is_ok(fake_langfuse: FakeLangfuse, content_type: str, body: bytes) -> None:
    response = httpx.post(
        fake_langfuse.url + OTLP, content=body, auth=("pk-lf-a", "sk-lf-a"), headers={"content-type": content_type}
    )
    assert (response.status_code, response.json()) == (200, {})


@pytest.mark.parametrize(
    ("auth", "message"),
    [
        (None, "No authorization header"),
        (("pk-lf-a", "wrong"), "Invalid credentials. Confirm that you've configured the correct host."),
        (("pk-lf-a", "sk-lf-b"), "Invalid credentials. Confirm that you've configured the correct host."),
    ],
)
def test_ingestion_requires_the_project_key_pair(
    fake_langfuse: FakeLangfuse, auth: tuple[str, str] | None, message: str
) -> None:
    response = httpx.post(fake_langfuse.url + OTLP, content=export_protobuf([SpanSpec()]), headers=PROTOBUF, auth=auth)
    assert response.status_code == 401
    assert response.json() == {"message": message}
    assert fake_langfuse.state.request_log[-1].project_id is None


def test_litellm_span_becomes_trace_and_generation(fake_langfuse: FakeLangfuse) -> None:
    trace_id = new_trace_id()
    root = _litellm_like(
        trace_id,
        **{
            "langfuse.trace.name": "chat-completion",
            "langfuse.trace.metadata": json.dumps({"rollout_id": "r1"}),
            "langfuse.observation.completion_start_time": json.dumps("2026-01-02T03:04:05.678901+00:00"),
            "langfuse.release": "rel-1",
            "langfuse.version": "v7",
        },
    )
    child = SpanSpec(name="raw_gen_ai_request", trace_id=trace_id, parent_span_id=root.span_id)
    child.attributes = {"llm.openai.messages": "[{'role': 'user'}]"}
    assert _post(fake_langfuse, [root, child]).status_code == 200

    trace = _get(fake_langfuse, f"/api/public/traces/{trace_id}").json()
    assert trace["name"] == "chat-completion"
    assert trace["tags"] == ["insertion_id:i1", "rollout_id:r1"]
    assert (trace["userId"], trace["sessionId"]) == ("u1", "s1")
    assert (trace["release"], trace["version"]) == ("rel-1", "v7")
    assert trace["environment"] == "production"
    assert trace["input"] == [{"role": "user", "content": "hi"}]
    assert trace["output"] == {"role": "assistant", "content": "hello"}
    assert trace["metadata"]["rollout_id"] == "r1"
    assert trace["metadata"]["resourceAttributes"]["service.name"] == "litellm"
    assert trace["metadata"]["scope"]["name"] == "litellm"
    assert "langfuse.observation.input" not in trace["metadata"]["attributes"]
    assert trace["metadata"]["attributes"]["llm.token_count.total"] == "8"
    assert trace["timestamp"].endswith("Z")
    assert len(trace["timestamp"]) == len("2026-01-02T03:04:05.678Z")

    generation, raw = sorted(trace["observations"], key=lambda o: o["type"])
    assert generation["type"] == "GENERATION"
    assert generation["id"] == root.span_id
    assert generation["parentObservationId"] is None
    assert generation["model"] == "gpt-4o-mini-2024"
    assert generation["usageDetails"] == {"input": 5, "output": 3, "total": 8}
    assert generation["usage"] == {"unit": "TOKENS", "input": 5, "output": 3, "total": 8}
    assert generation["costDetails"] == {"total": 2.5e-06}
    assert generation["completionStartTime"] == "2026-01-02T03:04:05.678Z"
    assert generation["level"] == "DEFAULT"
    assert raw["type"] == "SPAN"
    assert raw["name"] == "raw_gen_ai_request"
    assert raw["parentObservationId"] == root.span_id


def test_error_span_has_error_level_and_status_message(fake_langfuse: FakeLangfuse) -> None:
    spec = _litellm_like(new_trace_id())
    spec.status_code, spec.status_message = 2, "litellm.InternalServerError: boom"
    _post(fake_langfuse, [spec])
    (obs,) = fake_langfuse.state.observations("proj-a")
    assert (obs.level, obs.status_message) == ("ERROR", "litellm.InternalServerError: boom")


def test_spans_of_one_trace_merge_across_batches(fake_langfuse: FakeLangfuse) -> None:
    trace_id = new_trace_id()
    root = _litellm_like(trace_id)
    child = SpanSpec(name="child", trace_id=trace_id, parent_span_id=root.span_id)
    _post(fake_langfuse, [child])
    shallow = fake_langfuse.state.trace("proj-a", trace_id)
    assert shallow is not None
    assert (shallow.name, shallow.tags) == (None, [])
    update = SpanSpec(
        name="late",
        trace_id=trace_id,
        parent_span_id=root.span_id,
        attributes={"langfuse.trace.tags": "extra,rollout_id:r1"},
    )
    _post(fake_langfuse, [update])
    _post(fake_langfuse, [root])
    traces = fake_langfuse.state.traces("proj-a")
    assert len(traces) == 1
    assert traces[0].name == "litellm_request"  # falls back to the root span name
    assert traces[0].tags == ["extra", "insertion_id:i1", "rollout_id:r1"]
    assert len(fake_langfuse.state.observations("proj-a", trace_id)) == 3


@pytest.mark.parametrize(
    ("span_attrs", "resource", "expected"),
    [
        ({"langfuse.environment": "Staging"}, {"deployment.environment": "production"}, "staging"),
        ({}, {"deployment.environment": "production"}, "production"),
        ({}, {}, "default"),
        ({"langfuse.environment": "langfuse-internal"}, {}, "default"),
    ],
)
def test_environment_rule(
    fake_langfuse: FakeLangfuse, span_attrs: dict[str, str], resource: dict[str, str], expected: str
) -> None:
    _post(fake_langfuse, [SpanSpec(attributes=span_attrs, resource=resource)])
    (trace,) = fake_langfuse.state.traces("proj-a")
    assert trace.environment == expected


@pytest.mark.parametrize(
    "tags",
    [json.dumps(["b", "a", "b"]), ["b", "a"], "b, a", "b,a,"],
)
def test_tag_encodings(fake_langfuse: FakeLangfuse, tags: Any) -> None:
    _post(fake_langfuse, [SpanSpec(attributes={"langfuse.trace.tags": tags})])
    (trace,) = fake_langfuse.state.traces("proj-a")
    assert trace.tags == ["a", "b"]


def test_ingestion_delay_hides_data_until_it_elapses(fake_langfuse: FakeLangfuse) -> None:
    fake_langfuse.state.ingestion_delay_s = 0.3
    _post(fake_langfuse, [_litellm_like(new_trace_id())])
    assert len(fake_langfuse.state.spans("proj-a")) == 1
    assert _get(fake_langfuse, "/api/public/traces").json()["data"] == []
    assert _get(fake_langfuse, "/api/public/v2/observations").json()["data"] == []
    assert fake_langfuse.state.pending_count("proj-a") == 2
    time.sleep(0.35)
    assert len(_get(fake_langfuse, "/api/public/traces").json()["data"]) == 1
    assert len(_get(fake_langfuse, "/api/public/v2/observations").json()["data"]) == 1


def test_dropped_spans_never_arrive(fake_langfuse: FakeLangfuse) -> None:
    state = fake_langfuse.state
    state.drop_next_spans(1, lambda span: span.name == "raw_gen_ai_request")
    trace_id = new_trace_id()
    root = _litellm_like(trace_id)
    child = SpanSpec(name="raw_gen_ai_request", trace_id=trace_id, parent_span_id=root.span_id)
    _post(fake_langfuse, [child, root])
    assert [s.name for s in state.spans("proj-a")] == ["litellm_request"]
    state.drop_next_spans(1)
    _post(fake_langfuse, [_litellm_like(new_trace_id())])
    assert len(state.traces("proj-a")) == 1
