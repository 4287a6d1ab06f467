"""The optional response cache: hits skip the provider but keep their own insertion id and trace."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from proxy_core.config_files import ModelCatalog
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory, catalog_for, rollout_path


@pytest.fixture
def cached(gateway_factory: GatewayFactory, upstream: Any) -> Gateway:
    base = catalog_for(upstream[0].url).model_dump()
    return gateway_factory(catalog=ModelCatalog.model_validate({**base, "response_cache": {"enabled": True}}))


async def post(gateway: Gateway, project: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    path = f"/project_id/{project}/{rollout_path('cache-' + uuid.uuid4().hex[:6])}/chat/completions"
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        return await http.post(path, json=body, headers={"authorization": "Bearer k", **headers})


async def test_identical_requests_hit_the_cache(
    cached: Gateway, upstream_state: UpstreamState, langfuse: LangfuseState
) -> None:
    body = {"model": "fake", "messages": [{"role": "user", "content": f"q {uuid.uuid4()}"}], "temperature": 0}
    first = await post(cached, "proj-a", body)
    second = await post(cached, "proj-a", body)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("miss", "hit")
    assert first.json()["choices"] == second.json()["choices"]
    assert len(upstream_state.completion_requests) == 1
    ids = {first.headers["x-insertion-id"], second.headers["x-insertion-id"]}
    assert len(ids) == 2

    def both_traced() -> bool:
        tags = {tag for trace in langfuse.traces("proj-a") for tag in trace.tags}
        return {f"insertion_id:{i}" for i in ids} <= tags

    langfuse.wait_for(both_traced, timeout=10)

    other_project = await post(cached, "proj-b", body)
    assert other_project.headers["x-cache"] == "miss", "one project must never see another's answers"
    opted_out = await post(cached, "proj-a", body, **{"cache-control": "no-cache"})
    assert "x-cache" not in opted_out.headers
    changed = await post(cached, "proj-a", {**body, "temperature": 1})
    assert changed.headers["x-cache"] == "miss"
    streamed = await post(cached, "proj-a", {**body, "stream": True})
    assert "x-cache" not in streamed.headers
    assert len(upstream_state.completion_requests) == 5


async def test_a_callers_own_provider_key_is_part_of_the_cache_key(
    cached: Gateway, upstream_state: UpstreamState
) -> None:
    """'fake' uses the caller's bearer token as its provider key: another token must reach the provider."""
    body = {"model": "fake", "messages": [{"role": "user", "content": f"k {uuid.uuid4()}"}], "temperature": 0}
    first = await post(cached, "proj-a", body, authorization="Bearer key-one")
    again = await post(cached, "proj-a", body, authorization="Bearer key-one")
    other = await post(cached, "proj-a", body, authorization="Bearer key-two")
    assert [r.headers["x-cache"] for r in (first, again, other)] == ["miss", "hit", "miss"]
    assert len(upstream_state.completion_requests) == 2


async def test_cache_is_off_by_default(gateway: Gateway, upstream_state: UpstreamState) -> None:
    body = {"model": "fake", "messages": [{"role": "user", "content": "same"}]}
    for _ in range(2):
        assert "x-cache" not in (await post(gateway, "proj-a", body)).headers
    assert len(upstream_state.completion_requests) == 2
