"""With no Langfuse project, traces go to the embedded store and read back as from Langfuse."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
import redis.asyncio

from proxy_core.config_files import ApiKey, ModelCatalog, SecretsFile
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory, catalog_for, rollout_path
from tests.redis_keys import data_keys

KEY_A, KEY_B, KEY_ALL = "gw-key-for-team-a-only", "gw-key-for-team-b-only", "gw-key-for-every-project"
KEYS = (
    ApiKey(name="a", key=KEY_A, projects=("team-a",)),  # type: ignore[arg-type]
    ApiKey(name="b", key=KEY_B, projects=("team-b",)),  # type: ignore[arg-type]
    ApiKey(name="all", key=KEY_ALL, projects=("*",)),  # type: ignore[arg-type]
)
READ = {"limit": 1000, "timeout_s": 30, "max_retries": 5}


def embedded(gateway_factory: GatewayFactory, *, with_redis: bool, **overrides: Any) -> Gateway:
    """A gateway with no Langfuse project: in-process stores, or Redis for both."""
    values: dict[str, Any] = {"secrets": SecretsFile()}
    if not with_redis:
        values["redis_url"] = None
    return gateway_factory(**{**values, **overrides})


async def call(
    gateway: Gateway, rollout: str, content: str, *, project: str | None = None, key: str = "sk-client", **extra: Any
) -> httpx.Response:
    prefix = f"/project_id/{project}" if project else ""
    model = "fake" if key == "sk-client" else "fake-keyed"  # with gateway keys, the server holds provider keys
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    headers = {"authorization": f"Bearer {key}", "x-session-id": "s-1", "x-user-id": "u-1"}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=headers) as http:
        response = await http.post(f"{prefix}/{rollout_path(rollout)}/chat/completions", json=body)
        await response.aread()
    return response


async def get(gateway: Gateway, path: str, params: Any = None, key: str = "sk-client") -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60, headers={"authorization": f"Bearer {key}"}) as http:
        return await http.get(path, params=params)


async def post(gateway: Gateway, path: str, body: Any, key: str = "sk-client") -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": f"Bearer {key}"}) as http:
        return await http.post(path, json=body)


def comparable(trace: dict[str, Any]) -> dict[str, Any]:
    """A trace without what differs between two runs of the same calls (ids, times, run ids)."""
    attributes = trace["metadata"]["attributes"]
    return {
        "name": trace["name"],
        "user_id": trace["user_id"],
        "session_id": trace["session_id"],
        "tags": sorted(tag for tag in trace["tags"] if not tag.startswith(("insertion_id:", "rollout_id:"))),
        "input": trace["input"],
        "output": trace["output"],
        "metadata": sorted(trace["metadata"]),
        "attributes": sorted(attributes),
        "streaming": attributes["llm.is_streaming"],
        "observations": [
            (obs["type"], obs["name"], obs["input"], obs["output"], obs["parent_observation_id"])
            for obs in trace["observations"]
        ],
    }


async def run_rollout(gateway: Gateway, project: str | None) -> tuple[list[str], dict[str, Any]]:
    rollout = f"emb-{uuid.uuid4().hex[:8]}"
    ids = []
    for n, stream in enumerate((False, True, False)):
        response = await call(gateway, rollout, f"turn {n}", project=project, stream=stream)
        assert response.status_code == 200, response.text
        ids.append(response.headers["x-insertion-id"])
    prefix = f"/project_id/{project}" if project else ""
    read = await get(gateway, f"{prefix}/v1/traces", {"tags": f"rollout_id:{rollout}", **READ})
    assert read.status_code == 200, read.text
    return ids, read.json()


@pytest.mark.parametrize("with_redis", [False, True])
async def test_traces_read_back_as_they_do_from_langfuse(
    gateway_factory: GatewayFactory, langfuse: LangfuseState, with_redis: bool
) -> None:
    ours_gateway = embedded(gateway_factory, with_redis=with_redis)
    ids, body = await run_rollout(ours_gateway, None)
    # LiteLLM keeps one logger of a class per process: the first gateway's, until it stops.
    ours_gateway.server.stop()
    assert body["project_id"] is None
    assert body["total_traces"] == 3
    assert {tag for trace in body["traces"] for tag in trace["tags"] if tag.startswith("insertion_id:")} == {
        f"insertion_id:{i}" for i in ids
    }
    _, reference = await run_rollout(gateway_factory(default_project=None), "proj-a")
    ours = sorted((comparable(trace) for trace in body["traces"]), key=lambda t: str(t["input"]))
    theirs = sorted((comparable(trace) for trace in reference["traces"]), key=lambda t: str(t["input"]))
    assert ours == theirs
    assert ours[0]["output"] == {"role": "assistant", "content": "echo: turn 0"}


@pytest.mark.parametrize("with_redis", [False, True])
async def test_pointwise_and_scores(gateway_factory: GatewayFactory, with_redis: bool) -> None:
    gateway = embedded(gateway_factory, with_redis=with_redis)
    rollout = f"emb-{uuid.uuid4().hex[:8]}"
    first = (await call(gateway, rollout, "one")).headers["x-insertion-id"]
    last = (await call(gateway, rollout, "two")).headers["x-insertion-id"]
    read = await get(gateway, "/traces/pointwise", {"tags": f"rollout_id:{rollout}", **READ})
    assert read.status_code == 200, read.text
    (trace,) = read.json()["traces"]
    assert f"insertion_id:{last}" in trace["tags"]
    assert trace["input"] == [{"role": "user", "content": "two"}]

    by_insertion = await post(gateway, "/v1/scores", {"insertion_id": first, "name": "correct", "value": True})
    assert by_insertion.status_code == 201, by_insertion.text
    assert by_insertion.json()["project_id"] is None
    by_trace = await post(gateway, "/scores", {"trace_id": trace["id"], "name": "quality", "value": 0.5})
    assert by_trace.status_code == 201, by_trace.text
    assert by_trace.json()["trace_id"] == trace["id"]
    missing = await post(gateway, "/scores", {"trace_id": "0" * 32, "name": "quality", "value": 0.5})
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": f"Trace {'0' * 32!r} does not exist in this project.",
            "type": "invalid_request_error",
            "param": "trace_id",
            "code": "trace_not_found",
        }
    }


async def test_projects_are_the_configured_ones_and_keys_keep_them_apart(
    gateway_factory: GatewayFactory, upstream: Any
) -> None:
    catalog = ModelCatalog.model_validate({**catalog_for(upstream[0].url).model_dump(), "projects": {"team-c": {}}})
    gateway = embedded(gateway_factory, with_redis=True, secrets=SecretsFile(api_keys=KEYS), catalog=catalog)
    rollout = f"emb-{uuid.uuid4().hex[:8]}"
    own = {}
    for project, key in (("team-a", KEY_A), ("team-b", KEY_B), ("team-c", KEY_ALL)):
        response = await call(gateway, rollout, f"for {project}", project=project, key=key)
        assert response.status_code == 200, response.text
        own[project] = response.headers["x-insertion-id"]

    read = await get(gateway, "/project_id/team-b/traces", {"tags": f"rollout_id:{rollout}", **READ}, key=KEY_B)
    assert read.status_code == 200, read.text
    assert [t for trace in read.json()["traces"] for t in trace["tags"] if t.startswith("insertion_id:")] == [
        f"insertion_id:{own['team-b']}"
    ]
    refused = await get(gateway, "/project_id/team-a/traces", {"tags": f"rollout_id:{rollout}"}, key=KEY_B)
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "permission_denied"
    score = await post(
        gateway, "/project_id/team-a/scores", {"insertion_id": own["team-b"], "name": "n", "value": 1}, KEY_B
    )
    assert score.status_code == 403

    unknown = await call(gateway, rollout, "x", project="team-z", key=KEY_ALL)
    assert unknown.status_code == 404
    assert unknown.json()["error"] == {
        "message": "Project 'team-z' is not configured on this gateway.",
        "type": "invalid_request_error",
        "param": "project_id",
        "code": "project_not_found",
    }
    unnamed = await call(gateway, rollout, "x", key=KEY_A)  # a key bound to projects names one
    assert unnamed.status_code == 403


async def test_workers_share_the_redis_store_and_every_key_expires(
    gateway_factory: GatewayFactory, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    writer = embedded(gateway_factory, with_redis=True)
    reader = embedded(gateway_factory, with_redis=True)
    rollout = f"emb-{uuid.uuid4().hex[:8]}"
    insertion_id = (await call(writer, rollout, "hello")).headers["x-insertion-id"]
    read = await get(reader, "/traces/pointwise", {"tags": f"rollout_id:{rollout}", **READ})
    assert read.status_code == 200, read.text
    assert f"insertion_id:{insertion_id}" in read.json()["traces"][0]["tags"]
    keys = await data_keys(redis_client, key_prefix)
    assert any(":trace:" in key for key in keys)
    assert any(":trace-tag:" in key for key in keys)
    ttls = await asyncio.gather(*(redis_client.ttl(key) for key in keys))
    assert all(0 < ttl <= 86_400 for ttl in ttls), dict(zip(keys, ttls, strict=True))


async def test_traces_are_redacted_before_they_are_kept(
    gateway_factory: GatewayFactory, upstream: Any, upstream_state: UpstreamState
) -> None:
    catalog = ModelCatalog.model_validate(
        {**catalog_for(upstream[0].url).model_dump(), "pii_defaults": {"mode": "trace_only"}}
    )
    gateway = embedded(gateway_factory, with_redis=False, catalog=catalog)
    rollout = f"emb-{uuid.uuid4().hex[:8]}"
    assert (await call(gateway, rollout, "mail jane.doe@example.com")).status_code == 200
    assert "jane.doe@example.com" in str(upstream_state.completion_requests[-1].body)
    read = await get(gateway, "/traces", {"tags": f"rollout_id:{rollout}", **READ})
    (trace,) = read.json()["traces"]
    assert "jane.doe@example.com" not in read.text
    assert trace["input"] == [{"role": "user", "content": "mail <REDACTED_EMAIL_1>"}]
    assert trace["output"] == {"role": "assistant", "content": "echo: mail <REDACTED_EMAIL_1>"}


async def test_managed_prompts_need_langfuse_and_spans_are_counted(gateway_factory: GatewayFactory) -> None:
    gateway = embedded(gateway_factory, with_redis=False)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        response = await http.post(
            "/chat/completions",
            json={"model": "fake", "messages": [{"role": "user", "content": "hi"}]},
            headers={"x-prompt-name": "triage"},
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "prompt_not_found"
        assert (await call(gateway, f"emb-{uuid.uuid4().hex[:8]}", "hi")).status_code == 200
        for _ in range(100):
            spans = (await http.get("/ready")).json()["spans"]
            if spans["exported"] >= 1:
                break
            await asyncio.sleep(0.05)
    assert (spans["exported"], spans["dropped"], spans["rejected"], spans["discarded"]) == (1, 0, 0, 0)
