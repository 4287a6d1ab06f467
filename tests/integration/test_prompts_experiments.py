"""Managed prompts from Langfuse (cached, compiled, stale-on-error) and experiments end to end."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from proxy_core.config_files import ModelCatalog
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import Gateway, GatewayFactory, catalog_for, rollout_path

PROMPTS = "/api/public/v2/prompts"


async def post(
    gateway: Gateway, body: dict[str, Any], headers: dict[str, str | bytes], path: str = "/v1/chat/completions"
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        return await http.post(path, json=body, headers={"authorization": "Bearer k", **headers})


def ask(**extra: Any) -> dict[str, Any]:
    return {"model": "fake", "messages": [{"role": "user", "content": "hi"}], **extra}


@pytest.fixture
def prompts(langfuse: LangfuseState) -> LangfuseState:
    langfuse.add_prompt("proj-a", "triage", 1, "You triage {{topic}} cases.", labels=["production"])
    langfuse.add_prompt("proj-a", "triage", 2, "V2: you triage {{topic}} cases briefly.", labels=["latest"])
    langfuse.add_prompt(
        "proj-a",
        "folder/chatty",
        1,
        [{"role": "system", "content": "Be {{tone}}."}],
        type="chat",
        labels=["production"],
    )
    return langfuse


async def test_prompt_is_fetched_compiled_prepended_and_cached(
    gateway: Gateway, prompts: LangfuseState, upstream_state: UpstreamState
) -> None:
    for _ in range(3):
        response = await post(gateway, ask(prompt_variables={"topic": "billing"}), {"x-prompt-name": "triage"})
        assert response.status_code == 200, response.text
    sent = upstream_state.completion_requests[-1].body
    assert sent["messages"][0] == {"role": "system", "content": "You triage billing cases."}
    assert "prompt_variables" not in sent
    assert len(prompts.requests_to(PROMPTS)) == 1, "prompts are cached, not fetched per request"

    await post(gateway, ask(prompt_variables={"topic": "x"}), {"x-prompt-name": "triage", "x-prompt-version": "2"})
    assert upstream_state.completion_requests[-1].body["messages"][0]["content"].startswith("V2")
    await post(gateway, ask(prompt_variables={"tone": "kind"}), {"x-prompt-name": "folder/chatty"})
    assert upstream_state.completion_requests[-1].body["messages"][0] == {"role": "system", "content": "Be kind."}


async def test_prompt_errors(gateway: Gateway, prompts: LangfuseState, upstream_state: UpstreamState) -> None:
    missing = await post(gateway, ask(), {"x-prompt-name": "nope"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "prompt_not_found")
    unfilled = await post(gateway, ask(), {"x-prompt-name": "triage"})
    assert (unfilled.status_code, unfilled.json()["error"]["code"]) == (400, "prompt_variable_missing")
    assert "topic" in unfilled.json()["error"]["message"]
    for version in ("0", "²", "-1", "1.5"):  # '²'.isdigit() is True, and int('²') raised: a 500
        bad = await post(
            gateway,
            ask(prompt_variables={"topic": "x"}),
            {"x-prompt-name": "triage", "x-prompt-version": version.encode("latin-1")},
        )
        error = bad.json()["error"]
        assert (bad.status_code, error["param"], error["code"]) == (400, "x-prompt-version", "invalid_header"), version
    for variables, headers, param in (
        (["topic"], {"x-prompt-name": "triage"}, "prompt_variables"),
        ({"topic": None}, {"x-prompt-name": "triage"}, "prompt_variables.topic"),
        ({"topic": "x"}, {}, "prompt_variables"),
    ):
        bad = await post(gateway, ask(prompt_variables=variables), headers)
        error = bad.json()["error"]
        assert (bad.status_code, error["param"], error["code"]) == (400, param, "invalid_value"), variables
    assert upstream_state.completion_requests == []


async def test_last_good_prompt_serves_while_langfuse_is_down(
    gateway_factory: GatewayFactory, prompts: LangfuseState, upstream_state: UpstreamState
) -> None:
    gateway = gateway_factory(prompt_cache_ttl_s=0.1)
    assert (await post(gateway, ask(prompt_variables={"topic": "a"}), {"x-prompt-name": "triage"})).status_code == 200
    prompts.inject(PROMPTS, 503, count=50)
    import asyncio

    await asyncio.sleep(0.2)
    response = await post(gateway, ask(prompt_variables={"topic": "b"}), {"x-prompt-name": "triage"})
    assert response.status_code == 200, response.text
    assert upstream_state.completion_requests[-1].body["messages"][0]["content"] == "You triage b cases."


async def test_prompt_link_and_experiment_tags_reach_the_trace(
    gateway_factory: GatewayFactory, upstream: Any, prompts: LangfuseState, upstream_state: UpstreamState
) -> None:
    experiments = [
        {
            "id": "tone-test",
            "variants": [
                {"name": "control", "weight": 1, "prompt_version": 1},
                {"name": "v2", "weight": 1, "prompt_version": 2, "model": "demo"},
            ],
        }
    ]
    base = catalog_for(upstream[0].url).model_dump()
    gateway = gateway_factory(
        catalog=ModelCatalog.model_validate({**base, "projects": {"proj-a": {"experiments": experiments}}})
    )
    seen: dict[str, str] = {}
    for n in range(40):
        session = f"sess-{n % 10}"
        rollout = f"x-{uuid.uuid4().hex[:6]}"
        response = await post(
            gateway,
            ask(prompt_variables={"topic": "t"}),
            {"x-prompt-name": "triage", "x-session-id": session},
            f"/{rollout_path(rollout)}/chat/completions",
        )
        assert response.status_code == 200, response.text
        variant = response.headers["x-experiment-variant"]
        assert seen.setdefault(session, variant) == variant, "a session changed arms"
    assert set(seen.values()) == {"tone-test=control", "tone-test=v2"}
    insertion = response.headers["x-insertion-id"]
    trace = prompts.wait_for(
        lambda: next((t for t in prompts.traces("proj-a") if f"insertion_id:{insertion}" in t.tags), None)
    )
    arm = seen["sess-9"].split("=")[1]
    assert {"experiment:tone-test", f"variant:{arm}"} <= set(trace.tags)
    assert any(tag.startswith("prompt:triage:") for tag in trace.tags)
    assert trace.metadata["prompt_name"] == "triage"
