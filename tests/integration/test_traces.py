"""/traces: complete answers only, bounded waits, few Langfuse reads, and no reads across projects."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio

from proxy_core.config_files import ApiKey
from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_state import LangfuseState
from tests.integration.conftest import Gateway, GatewayFactory, rollout_path

V2 = "/api/public/v2/observations"
LEGACY = "/api/public/traces"


async def complete(gateway: Gateway, rollout: str, count: int, project: str = "proj-a") -> list[str]:
    """Run ``count`` tracked completions through the gateway; return their insertion ids."""
    path = f"/project_id/{project}/{rollout_path(rollout)}/chat/completions"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, headers={"authorization": "Bearer k"}) as http:

        async def one(n: int) -> str:
            body = {"model": "fake", "messages": [{"role": "user", "content": f"turn {n}"}]}
            response = await http.post(path, json=body)
            assert response.status_code == 200, response.text
            return response.headers["x-insertion-id"]

        ids = []
        for start in range(0, count, 20):
            ids += await asyncio.gather(*(one(n) for n in range(start, min(count, start + 20))))
    return ids


async def get(gateway: Gateway, path: str, params: Any = None, key: str = "k") -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, headers={"authorization": f"Bearer {key}"}) as http:
        return await http.get(path, params=params)


def new_rollout() -> str:
    return f"tr-{uuid.uuid4().hex[:10]}"


@pytest.mark.parametrize("count", [1, 100])
async def test_complete_rollout_through_the_real_pipeline(
    gateway: Gateway, langfuse: LangfuseState, count: int
) -> None:
    rollout = new_rollout()
    ids = await complete(gateway, rollout, count)
    response = await get(gateway, "/v1/traces", {"tags": f"rollout_id:{rollout}", "limit": 1000, "timeout_s": 30})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["project_id"] == "proj-a"
    assert body["total_traces"] == count
    found = {t for trace in body["traces"] for t in trace["tags"] if t.startswith("insertion_id:")}
    assert found == {f"insertion_id:{i}" for i in ids}
    trace = body["traces"][0]
    assert set(trace) == {"id", "name", "user_id", "session_id", "tags", "timestamp", "input", "output",
                          "metadata", "observations"}  # fmt: skip
    assert trace["name"] == "chat-completion"
    assert trace["output"]["content"].startswith("echo: turn ")
    assert trace["input"][0]["role"] == "user"
    kinds = {obs["type"] for obs in trace["observations"]}
    assert "GENERATION" in kinds
    assert set(trace["observations"][0]) == {"id", "type", "name", "start_time", "end_time", "input", "output",
                                             "parent_observation_id"}  # fmt: skip


async def seed(
    langfuse: LangfuseState, redis_client: redis.asyncio.Redis, prefix: str, project: str, rollout: str, count: int
) -> list[str]:
    """Record ``count`` insertion ids and put their traces straight into the emulator."""
    ids = sorted(str(uuid.uuid4()) for _ in range(count))
    await redis_client.sadd(rollout_key(prefix, project, rollout), *ids)
    for insertion_id in ids:
        langfuse.insert_trace(project, tags=[f"rollout_id:{rollout}", f"insertion_id:{insertion_id}"])
    return ids


async def test_only_the_recorded_ids_traces_are_returned(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    """Traces of calls that were traced but never recorded (answered 503, abandoned) are no steps."""
    rollout = new_rollout()
    ids = await seed(langfuse, redis_client, key_prefix, "proj-a", rollout, 1)
    for _ in range(12):
        langfuse.insert_trace("proj-a", tags=[f"rollout_id:{rollout}", f"insertion_id:{uuid.uuid4()}"])
    langfuse.insert_trace("proj-a", tags=[f"rollout_id:{rollout}"])
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}"})
    assert response.status_code == 200, response.text
    traces = response.json()["traces"]
    assert [t for trace in traces for t in trace["tags"] if t.startswith("insertion_id:")] == [f"insertion_id:{ids[0]}"]
    assert response.json()["total_traces"] == 1
    pointwise = await get(gateway, "/traces/pointwise", {"tags": f"rollout_id:{rollout}"})
    assert [trace["id"] for trace in pointwise.json()["traces"]] == [traces[0]["id"]]


async def test_2500_traces_are_read_in_a_few_pages(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = new_rollout()
    await seed(langfuse, redis_client, key_prefix, "proj-a", rollout, 2500)
    started = time.monotonic()
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "limit": 5000})
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert response.json()["total_traces"] == 2500
    reads = langfuse.requests_to(V2)
    assert len(reads) == math.ceil(2500 / 1000)
    assert elapsed < 10


async def test_legacy_only_server(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    langfuse.v2_enabled = False
    rollout = new_rollout()
    ids = await seed(langfuse, redis_client, key_prefix, "proj-a", rollout, 250)
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "limit": 1000})
    assert response.status_code == 200, response.text
    assert response.json()["total_traces"] == len(ids)
    assert len(langfuse.requests_to(LEGACY)) == 3
    second = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "limit": 1000})
    assert second.status_code == 200
    assert len(langfuse.requests_to(V2)) == 1, "the legacy answer is remembered per project"


async def test_late_ingestion_within_the_deadline(gateway: Gateway, langfuse: LangfuseState) -> None:
    langfuse.ingestion_delay_s = 1.5
    rollout = new_rollout()
    ids = await complete(gateway, rollout, 3)
    started = time.monotonic()
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "max_retries": 10, "timeout_s": 20})
    assert response.status_code == 200, response.text
    assert response.json()["total_traces"] == len(ids)
    assert time.monotonic() - started < 8


async def test_late_ingestion_beyond_the_deadline_is_incomplete(gateway: Gateway, langfuse: LangfuseState) -> None:
    langfuse.ingestion_delay_s = 30
    rollout = new_rollout()
    ids = await complete(gateway, rollout, 2)
    started = time.monotonic()
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "max_retries": 50, "timeout_s": 1.5})
    assert time.monotonic() - started < 4
    assert response.status_code == 404
    error = response.json()["error"]
    assert (error["code"], error["expected"], error["found"]) == ("traces_incomplete", 2, 0)
    assert sorted(error["missing"]) == sorted(ids)


async def test_a_trace_that_never_arrives_is_named(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = new_rollout()
    ids = await seed(langfuse, redis_client, key_prefix, "proj-a", rollout, 5)
    lost = str(uuid.uuid4())
    await redis_client.sadd(rollout_key(key_prefix, "proj-a", rollout), lost)
    started = time.monotonic()
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "max_retries": 2, "timeout_s": 30})
    assert 3 <= time.monotonic() - started < 5, "max_retries=2 keeps the original 1 s + 2 s waiting budget"
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["missing"] == [lost]
    assert (error["expected"], error["found"]) == (len(ids) + 1, len(ids))
    assert error["message"].startswith(f"Incomplete traces for rollout_id '{rollout}'")
    assert 3 <= len(langfuse.requests_to(V2)) <= 8


async def test_429_storm_is_ridden_out_with_retry_after(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = new_rollout()
    await seed(langfuse, redis_client, key_prefix, "proj-a", rollout, 3)
    langfuse.inject(V2, 429, count=3, retry_after=0.2)
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "max_retries": 5, "timeout_s": 10})
    assert response.status_code == 200, response.text
    statuses = [r.status for r in langfuse.requests_to(V2)]
    assert statuses == [429, 429, 429, 200]
    times = [r.time for r in langfuse.requests_to(V2)]
    assert all(b - a >= 0.19 for a, b in itertools.pairwise(times)), "Retry-After was not honoured"


async def test_persistent_429_ends_in_a_429_with_retry_after(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = new_rollout()
    await seed(langfuse, redis_client, key_prefix, "proj-a", rollout, 1)
    langfuse.inject(V2, 429, count=100, retry_after=5)
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "timeout_s": 1})
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "langfuse_rate_limited"


async def test_pointwise_returns_the_newest_insertion(gateway: Gateway, langfuse: LangfuseState) -> None:
    rollout = new_rollout()
    ids = await complete(gateway, rollout, 4)
    # The eval-protocol client's exact request.
    query = f"limit=100&tags=rollout_id:{rollout}&sleep_between_gets=0.1&max_retries=5"
    response = await get(gateway, f"/v1/traces/pointwise?{query}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total_traces"] == 1
    assert f"insertion_id:{max(ids)}" in body["traces"][0]["tags"]
    for unmatched in (("user_id", "nobody"), ("tags", "other:x"), ("from_timestamp", "9999-12-31T23:59:59+00:00")):
        params = [("tags", f"rollout_id:{rollout}"), ("max_retries", "1"), unmatched]
        filtered = await get(gateway, "/v1/traces/pointwise", params)
        assert (filtered.status_code, filtered.json()["total_traces"]) == (200, 0), (unmatched, filtered.text)


async def test_project_scoped_paths_and_sampling(gateway: Gateway, langfuse: LangfuseState) -> None:
    rollout = new_rollout()
    await complete(gateway, rollout, 6, project="proj-b")
    for path in ("/project_id/proj-b/v1/traces", "/v1/project_id/proj-b/traces", "/project_id/proj-b/traces"):
        response = await get(gateway, path, {"tags": f"rollout_id:{rollout}", "sample_size": 2})
        assert response.status_code == 200, response.text
        assert response.json()["total_traces"] == 2
    limited = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "project_id": "proj-b", "limit": 4})
    assert limited.json()["total_traces"] == 4
    unknown = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}"})  # default project: proj-a
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "rollout_not_found"


async def test_filters_apply_after_the_completeness_check(gateway: Gateway, langfuse: LangfuseState) -> None:
    rollout = new_rollout()
    await complete(gateway, rollout, 2)
    response = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "user_id": "nobody"})
    assert (response.status_code, response.json()["total_traces"]) == (200, 0)
    trimmed = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", "fields": "core"})
    assert all(t["input"] is None and t["observations"] == [] for t in trimmed.json()["traces"])


async def test_api_key_for_a_cannot_read_b(
    gateway_factory: GatewayFactory, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    key_a = "gw-key-a-" + uuid.uuid4().hex
    gateway = gateway_factory(api_keys=(ApiKey(key=key_a, projects=("proj-a",)),))  # type: ignore[arg-type]
    rollout = new_rollout()
    await seed(langfuse, redis_client, key_prefix, "proj-b", rollout, 2)
    denied = await get(gateway, "/project_id/proj-b/traces", {"tags": f"rollout_id:{rollout}"}, key=key_a)
    assert denied.status_code == 403
    assert langfuse.requests_to(V2) == []
    status = await get(gateway, f"/project_id/proj-b/rollouts/{rollout}", key=key_a)
    assert status.status_code == 403


async def test_rollout_status_needs_no_langfuse(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = new_rollout()
    ids = await complete(gateway, rollout, 3)
    response = await get(gateway, f"/v1/rollouts/{rollout}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["expected_count"] == 3
    assert (body["first_insertion_id"], body["last_insertion_id"]) == (min(ids), max(ids))
    assert 0 < body["ttl_s"] <= 86_400
    assert langfuse.requests_to(V2) == []
    missing = await get(gateway, "/rollouts/never-seen")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "rollout_not_found")


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({}, "tags"),
        ({"tags": "other:1"}, "tags"),
        ({"tags": ["rollout_id:a", "rollout_id:b"]}, "tags"),
        ({"tags": "rollout_id:a", "limit": "0"}, "limit"),
        ({"tags": "rollout_id:a", "limit": "many"}, "limit"),
        ({"tags": "rollout_id:a", "max_retries": "-1"}, "max_retries"),
        ({"tags": "rollout_id:a", "timeout_s": "10000"}, "timeout_s"),
        ({"tags": "rollout_id:a", "from_timestamp": "yesterday"}, "from_timestamp"),
        ({"tags": "rollout_id:a", "fields": "core,secrets"}, "fields"),
        ({"tags": "rollout_id:a", "sleep_between_gets": "-1"}, "sleep_between_gets"),
    ],
)
async def test_bad_query_parameters_are_named(gateway: Gateway, params: dict[str, Any], param: str) -> None:
    response = await get(gateway, "/traces", params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["param"], error["type"]) == (param, "invalid_request_error")


async def test_concurrent_calls_for_one_rollout_share_reads(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    rollout = new_rollout()
    await seed(langfuse, redis_client, key_prefix, "proj-a", rollout, 50)
    responses = await asyncio.gather(*(get(gateway, "/traces", {"tags": f"rollout_id:{rollout}"}) for _ in range(20)))
    assert all(r.status_code == 200 for r in responses)
    assert len(langfuse.requests_to(V2)) <= 2  # one shared read (two if a call arrives after it ended)
