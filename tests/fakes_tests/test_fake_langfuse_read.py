"""Read APIs of the Langfuse emulator: pagination, filters, fields, auth, switches, faults."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.fakes import FakeLangfuse

BASE = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def api(fake_langfuse: FakeLangfuse) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_langfuse.url, auth=fake_langfuse.credentials("proj-a")) as client:
        yield client


def _seed(lf: FakeLangfuse, count: int, project: str = "proj-a", **kwargs: Any) -> list[str]:
    return [lf.state.insert_trace(project, timestamp=BASE + timedelta(seconds=i), **kwargs) for i in range(count)]


def _v2_filter(*conditions: dict[str, Any]) -> str:
    return json.dumps(list(conditions))


# --- legacy traces -----------------------------------------------------------


def test_legacy_pagination_over_2500_traces(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    ids = _seed(fake_langfuse, 2500, tags=["rollout_id:big"])
    seen: list[str] = []
    for page in range(1, 26):
        body = api.get("/api/public/traces", params={"page": page, "limit": 100, "tags": "rollout_id:big"}).json()
        assert body["meta"] == {"page": page, "limit": 100, "totalItems": 2500, "totalPages": 25}
        seen.extend(trace["id"] for trace in body["data"])
    assert seen == list(reversed(ids))  # default order: timestamp desc
    assert api.get("/api/public/traces", params={"page": 26, "limit": 100}).json()["data"] == []
    default = api.get("/api/public/traces").json()
    assert default["meta"]["limit"] == 50
    assert len(default["data"]) == 50


@pytest.mark.parametrize(("param", "value"), [("limit", "101"), ("limit", "0"), ("page", "0"), ("limit", "x")])
def test_legacy_rejects_invalid_paging(api: httpx.Client, param: str, value: str) -> None:
    response = api.get("/api/public/traces", params={param: value})
    assert response.status_code == 400
    body = response.json()
    assert body["message"] == "Invalid request data"
    assert body["error"][0]["path"] == [param]


def test_legacy_tags_use_and_semantics(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    both = fake_langfuse.state.insert_trace("proj-a", tags=["a", "b"])
    fake_langfuse.state.insert_trace("proj-a", tags=["a"])
    fake_langfuse.state.insert_trace("proj-a", tags=["b", "c"])

    def ids(**params: Any) -> set[str]:
        return {t["id"] for t in api.get("/api/public/traces", params=params).json()["data"]}

    assert ids(tags=["a", "b"]) == {both}
    assert ids(tags="a,b") == {both}
    assert len(ids(tags="a")) == 2
    any_of = json.dumps([{"type": "arrayOptions", "column": "tags", "operator": "any of", "value": ["a", "c"]}])
    assert len(ids(tags=["a", "b"], filter=any_of)) == 3


def test_legacy_simple_filters(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    state = fake_langfuse.state
    target = state.insert_trace(
        "proj-a", name="chat", user_id="u1", session_id="s1", environment="staging", timestamp=BASE
    )
    state.insert_trace("proj-a", name="chat", user_id="u2", environment="production", timestamp=BASE)
    state.insert_trace("proj-a", name="other", user_id="u1", timestamp=BASE + timedelta(hours=1))

    def ids(**params: Any) -> list[str]:
        return [t["id"] for t in api.get("/api/public/traces", params=params).json()["data"]]

    assert ids(userId="u1", name="chat", sessionId="s1") == [target]
    assert len(ids(environment=["staging", "production"])) == 2
    assert len(ids(environment="staging,default")) == 2
    assert ids(fromTimestamp="2026-01-01T00:30:00Z") == ids(name="other")
    assert len(ids(toTimestamp="2026-01-01T00:30:00Z")) == 2
    assert api.get("/api/public/traces", params={"fromTimestamp": "yesterday"}).status_code == 400


def test_legacy_order_and_fields(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    first, second = _seed(fake_langfuse, 2)
    ordered = api.get("/api/public/traces", params={"orderBy": "timestamp.asc"}).json()["data"]
    assert [t["id"] for t in ordered] == [first, second]
    assert api.get("/api/public/traces", params={"orderBy": "nope.asc"}).status_code == 400

    full = api.get("/api/public/traces").json()["data"][0]
    assert {"input", "output", "metadata"} <= full.keys()
    assert len(full["observations"]) == 1
    assert full["latency"] >= 0
    assert full["htmlPath"] == f"/project/proj-a/traces/{second}"
    core = api.get("/api/public/traces", params={"fields": "core"}).json()["data"][0]
    assert not {"input", "output", "metadata"} & core.keys()
    assert (core["observations"], core["scores"], core["latency"], core["totalCost"]) == ([], [], -1, -1)


def test_legacy_get_trace_and_not_found(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    (trace_id,) = _seed(fake_langfuse, 1)
    trace = api.get(f"/api/public/traces/{trace_id}").json()
    assert trace["id"] == trace_id
    assert trace["observations"][0]["traceId"] == trace_id
    missing = api.get("/api/public/traces/nope")
    assert missing.status_code == 404
    assert missing.json() == {
        "message": "Trace nope not found within authorized project",
        "error": "LangfuseNotFoundError",
    }


def test_legacy_api_can_be_switched_off(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    fake_langfuse.state.legacy_traces_enabled = False
    for path in ("/api/public/traces", "/api/public/traces/x"):
        response = api.get(path)
        assert response.status_code == 404
        assert "events_only" in response.json()["message"]
    assert api.get("/api/public/v2/observations").status_code == 200


# --- v2 observations -------------------------------------------------------------


def test_v2_cursor_pagination_over_2500_observations(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    _seed(fake_langfuse, 2500)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 1000} | ({"cursor": cursor} if cursor else {})
        body = api.get("/api/public/v2/observations", params=params).json()
        pages += 1
        seen.extend(o["id"] for o in body["data"])
        cursor = body["meta"].get("cursor")
        if cursor is None:
            break
        json.loads(base64.b64decode(cursor))  # opaque but well-formed
    assert pages == 3
    assert len(seen) == len(set(seen)) == 2500
    newest_first = sorted(fake_langfuse.state.observations("proj-a"), key=lambda o: o.start_time, reverse=True)
    assert seen == [o.id for o in newest_first]
    assert api.get("/api/public/v2/observations", params={"limit": 1001}).status_code == 400
    assert api.get("/api/public/v2/observations", params={"cursor": "%%%"}).status_code == 400


def test_v2_fields_groups(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    fake_langfuse.state.insert_trace("proj-a", name="chat", tags=["t1"], user_id="u1")
    default = api.get("/api/public/v2/observations").json()["data"][0]
    assert {"id", "traceId", "startTime", "type", "name", "level", "userId", "isRootObservation"} <= default.keys()
    assert "input" not in default
    assert default["userId"] == "u1"
    rich = api.get("/api/public/v2/observations", params={"fields": "core,io,usage,trace_context"}).json()
    item = rich["data"][0]
    assert (item["tags"], item["traceName"]) == (["t1"], "chat")
    assert {"input", "output", "usageDetails", "costDetails"} <= item.keys()
    assert "name" not in item


def test_v2_tag_and_string_filters(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    state = fake_langfuse.state
    both = state.insert_trace("proj-a", name="chat", tags=["a", "b"])
    only_a = state.insert_trace("proj-a", name="embed", tags=["a"], observation_type="SPAN")
    state.insert_trace("proj-a", name="chat", tags=["c"])

    def trace_ids(**params: Any) -> set[str]:
        response = api.get("/api/public/v2/observations", params=params)
        assert response.status_code == 200, response.text
        return {o["traceId"] for o in response.json()["data"]}

    tags = {"type": "arrayOptions", "column": "tags"}
    assert trace_ids(filter=_v2_filter(tags | {"operator": "all of", "value": ["a", "b"]})) == {both}
    assert trace_ids(filter=_v2_filter(tags | {"operator": "any of", "value": ["b", "a"]})) == {both, only_a}
    assert len(trace_ids(filter=_v2_filter(tags | {"operator": "none of", "value": ["a"]}))) == 1
    trace_tags = {"type": "arrayOptions", "column": "traceTags", "operator": "all of", "value": ["a"]}
    name = {"type": "string", "column": "traceName", "operator": "=", "value": "chat"}
    assert trace_ids(filter=_v2_filter(trace_tags, name)) == {both}
    assert trace_ids(type="SPAN") == {only_a}
    assert trace_ids(traceId=both) == {both}
    assert trace_ids(name="observation", environment=["default"]) == trace_ids()


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        json.dumps([{"type": "string", "column": "nope", "operator": "=", "value": "x"}]),
        json.dumps([{"type": "arrayOptions", "column": "tags", "operator": "=", "value": ["x"]}]),
        json.dumps([{"type": "weird", "column": "tags", "operator": "any of", "value": ["x"]}]),
    ],
)
def test_v2_rejects_invalid_filters(api: httpx.Client, bad: str) -> None:
    response = api.get("/api/public/v2/observations", params={"filter": bad})
    assert response.status_code == 400
    assert "message" in response.json()


def test_v2_can_be_switched_off(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    fake_langfuse.state.v2_enabled = False
    response = api.get("/api/public/v2/observations")
    assert response.status_code == 404
    assert api.get("/api/public/traces").status_code == 200


# --- auth and isolation ----------------------------------------------------------


def test_projects_are_isolated(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    (other,) = _seed(fake_langfuse, 1, project="proj-b")
    assert api.get("/api/public/traces").json()["data"] == []
    assert api.get("/api/public/v2/observations").json()["data"] == []
    assert api.get(f"/api/public/traces/{other}").status_code == 404
    with httpx.Client(base_url=fake_langfuse.url, auth=fake_langfuse.credentials("proj-b")) as client_b:
        assert [t["id"] for t in client_b.get("/api/public/traces").json()["data"]] == [other]


@pytest.mark.parametrize(
    "path", ["/api/public/traces", "/api/public/v2/observations", "/api/public/v2/prompts/x", "/api/public/scores"]
)
def test_read_endpoints_need_valid_keys(fake_langfuse: FakeLangfuse, path: str) -> None:
    response = httpx.get(fake_langfuse.url + path, auth=("pk-lf-a", "bad"))
    assert response.status_code == 401
    assert "message" in response.json()
    assert httpx.get(fake_langfuse.url + "/api/public/health").json()["status"] == "OK"


# --- scores, prompts, faults, request log ---------------------------------------------


def test_scores_single_and_batch(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    (trace_id,) = _seed(fake_langfuse, 1)
    single = api.post("/api/public/scores", json={"traceId": trace_id, "name": "quality", "value": 0.5})
    assert single.status_code == 200
    assert set(single.json()) == {"id"}
    batch = api.post(
        "/api/public/scores",
        json=[
            {"traceId": "unknown-trace", "name": "done", "value": 1, "dataType": "BOOLEAN"},
            {"traceId": trace_id, "name": "label", "value": "good"},
        ],
    )
    assert (batch.status_code, batch.json()) == (202, {"message": "Accepted"})
    assert api.post("/api/public/scores", json={"name": "", "value": 1}).status_code == 400
    assert api.post("/api/public/scores", json={"name": "x", "value": True}).status_code == 400
    partial = api.post("/api/public/scores", json=[{"name": "ok", "value": 1}, {"value": 2}])
    assert partial.status_code == 207
    assert partial.json()["rejected"] == 1

    scores = fake_langfuse.state.scores("proj-a")
    assert [s["name"] for s in scores] == ["quality", "done", "label", "ok"]
    assert scores[1]["stringValue"] == "True"
    trace = api.get(f"/api/public/traces/{trace_id}").json()
    assert sorted(s["name"] for s in trace["scores"]) == ["label", "quality"]


def test_prompts_by_label_and_version(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    state = fake_langfuse.state
    state.add_prompt("proj-a", "folder/greeting", 1, "Hello {{name}}", labels=["production"])
    state.add_prompt("proj-a", "folder/greeting", 2, "Hi {{name}}", labels=["staging"], config={"t": 0})
    state.add_prompt("proj-a", "chatty", 1, [{"role": "system", "content": "x"}], type="chat", labels=["production"])

    production = api.get("/api/public/v2/prompts/folder/greeting").json()
    assert (production["version"], production["prompt"]) == (1, "Hello {{name}}")
    latest = api.get("/api/public/v2/prompts/folder%2Fgreeting", params={"label": "latest"}).json()
    assert (latest["version"], latest["config"], latest["labels"]) == (2, {"t": 0}, ["staging", "latest"])
    assert api.get("/api/public/v2/prompts/folder/greeting", params={"version": 1}).json()["version"] == 1
    assert api.get("/api/public/v2/prompts/chatty").json()["type"] == "chat"
    missing = api.get("/api/public/v2/prompts/folder/greeting", params={"label": "nope"})
    assert missing.status_code == 404
    assert missing.json()["error"] == "LangfuseNotFoundError"


def test_injected_rate_limit_then_recovery(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    fake_langfuse.state.inject("/api/public/traces", 429, count=2, retry_after=3)
    for _ in range(2):
        limited = api.get("/api/public/traces")
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "3"
        assert {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"} <= limited.headers.keys()
        assert limited.json()["code"] == "rate_limited"
        assert limited.json()["message"] == "Rate limit exceeded"
    assert api.get("/api/public/traces").status_code == 200

    fake_langfuse.state.inject("/api/public/otel", 503)
    response = api.post("/api/public/otel/v1/traces", content=b"", headers={"content-type": "application/json"})
    assert response.status_code == 503
    assert api.get("/api/public/v2/observations").status_code == 200


def test_request_log_counts_calls_per_endpoint(fake_langfuse: FakeLangfuse, api: httpx.Client) -> None:
    api.get("/api/public/traces", params=[("tags", "a"), ("tags", "b")])
    api.get("/api/public/v2/observations", params={"limit": 5})
    httpx.get(fake_langfuse.url + "/api/public/traces", auth=("x", "y"))
    log = fake_langfuse.state.request_log
    assert [(r.method, r.path, r.status, r.project_id) for r in log] == [
        ("GET", "/api/public/traces", 200, "proj-a"),
        ("GET", "/api/public/v2/observations", 200, "proj-a"),
        ("GET", "/api/public/traces", 401, None),
    ]
    assert log[0].param("tags") == ["a", "b"]
    assert len(fake_langfuse.state.requests_to("/api/public/traces")) == 2
