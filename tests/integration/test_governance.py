"""Required metadata, generated sessions and environment profiles, as clients and Langfuse see them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from proxy_core.config_files import ModelCatalog
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory, catalog_for, rollout_path

BODY = {"model": "fake", "messages": [{"role": "user", "content": "hi"}]}


def catalog(upstream_url: str, **sections: Any) -> ModelCatalog:
    return ModelCatalog.model_validate({**catalog_for(upstream_url).model_dump(), **sections})


async def post(
    gateway: Gateway, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        return await http.post(path, json=body, headers={"authorization": "Bearer k", **(headers or {})})


def trace_with(langfuse: LangfuseState, project: str, insertion_id: str) -> Any:
    return langfuse.wait_for(
        lambda: next((t for t in langfuse.traces(project) if f"insertion_id:{insertion_id}" in t.tags), None),
        timeout=10,
    )


@pytest.fixture
def governed(gateway_factory: GatewayFactory, upstream: Any) -> Gateway:
    projects = {
        "proj-a": {"required_metadata": ["payer_id", "tenant"], "generate_session_id": True},
    }
    environments = {"staging": {"langfuse": {"enabled": True, "default_tags": ["staging"]}}}
    return gateway_factory(
        catalog=catalog(upstream[0].url, projects=projects, environments=environments), environment="staging"
    )


async def test_missing_required_metadata_is_400_naming_each_key(
    governed: Gateway, upstream_state: UpstreamState
) -> None:
    response = await post(governed, f"/{rollout_path('g1')}/chat/completions", BODY)
    assert response.status_code == 400
    assert response.json()["error"] == {
        "message": "Missing required metadata: payer_id, tenant (send them as x-metadata-<key> headers or in "
        "the body's metadata).",
        "type": "invalid_request_error",
        "param": "metadata",
        "code": "missing_required_metadata",
    }
    partial = await post(governed, f"/{rollout_path('g1')}/chat/completions", BODY, {"x-metadata-tenant": "t1"})
    assert "payer_id" in partial.json()["error"]["message"]
    assert "tenant" not in partial.json()["error"]["message"].split(":")[1].split("(")[0]
    assert upstream_state.completion_requests == []


async def test_required_metadata_becomes_tags_and_sessions_are_generated(
    governed: Gateway, langfuse: LangfuseState
) -> None:
    rollout = f"g-{uuid.uuid4().hex[:8]}"
    body = {**BODY, "metadata": {"payer_id": "P-123"}}
    response = await post(governed, f"/{rollout_path(rollout)}/chat/completions", body, {"x-metadata-tenant": "acme"})
    assert response.status_code == 200, response.text
    session = response.headers["x-session-id"]
    trace = trace_with(langfuse, "proj-a", response.headers["x-insertion-id"])
    assert {"payer_id:P-123", "tenant:acme", "staging"} <= set(trace.tags)
    assert trace.session_id == session
    assert trace.metadata["payer_id"] == "P-123"
    assert trace.environment == "staging"

    given = await post(
        governed,
        f"/{rollout_path(rollout)}/chat/completions",
        body,
        {"x-metadata-tenant": "acme", "x-session-id": "mine"},
    )
    assert "x-session-id" not in given.headers
    assert trace_with(langfuse, "proj-a", given.headers["x-insertion-id"]).session_id == "mine"


async def test_reserved_keys_cannot_be_overridden(governed: Gateway, langfuse: LangfuseState) -> None:
    rollout = f"g-{uuid.uuid4().hex[:8]}"
    body = {**BODY, "metadata": {"payer_id": "P", "tenant": "t", "rollout_id": "forged", "insertion_id": "forged"}}
    response = await post(governed, f"/{rollout_path(rollout)}/chat/completions", body)
    trace = trace_with(langfuse, "proj-a", response.headers["x-insertion-id"])
    assert trace.metadata["rollout_id"] == rollout
    assert trace.metadata["insertion_id"] == response.headers["x-insertion-id"]


async def test_development_profile_sends_no_traces(
    gateway_factory: GatewayFactory, upstream: Any, langfuse: LangfuseState, upstream_state: UpstreamState
) -> None:
    environments = {"development": {"langfuse": {"enabled": False}}}
    gateway = gateway_factory(catalog=catalog(upstream[0].url, environments=environments), environment="development")
    response = await post(gateway, f"/{rollout_path('dev')}/chat/completions", BODY)
    assert response.status_code == 200
    assert len(upstream_state.completion_requests) == 1
    gateway.server.stop()  # shutdown flushes: anything queued would be delivered now
    assert langfuse.spans("proj-a") == []
