"""Concurrency across projects: every span lands in its own project, none is lost or duplicated."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import redis.asyncio
from pydantic import SecretStr

from proxy_core.config_files import LangfuseProject, SecretsFile
from proxy_core.services.store import rollout_key
from tests.fakes.langfuse_state import LangfuseState
from tests.fakes.server import ServerThread
from tests.integration.conftest import PROJECTS, Gateway, GatewayFactory, rollout_path

REQUESTS = 200


async def test_200_concurrent_requests_over_3_projects(
    gateway: Gateway, langfuse: LangfuseState, redis_client: redis.asyncio.Redis, key_prefix: str
) -> None:
    projects = sorted(PROJECTS)
    run = uuid.uuid4().hex[:8]
    before = {p: len(langfuse.spans(p)) for p in projects}

    async def one(http: httpx.AsyncClient, n: int) -> tuple[str, str, str]:
        project = projects[n % len(projects)]
        rollout = f"iso-{run}-{project}"
        stream = n % 4 == 0
        body = {"model": "fake", "messages": [{"role": "user", "content": f"n={n}"}], "stream": stream}
        path = f"/project_id/{project}/{rollout_path(rollout)}/chat/completions"
        response = await http.post(path, json=body)
        assert response.status_code == 200, response.text
        return project, rollout, response.headers["x-insertion-id"]

    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(
        base_url=gateway.url, timeout=60, limits=limits, headers={"authorization": "Bearer k"}
    ) as http:
        results = await asyncio.gather(*(one(http, n) for n in range(REQUESTS)))

    expected: dict[str, set[str]] = {p: set() for p in projects}
    for project, rollout, insertion_id in results:
        expected[project].add(insertion_id)
        assert insertion_id in await redis_client.smembers(rollout_key(key_prefix, project, rollout))
    assert sum(len(ids) for ids in expected.values()) == REQUESTS

    def generation_ids(project: str) -> list[str]:
        ids = []
        for span in langfuse.spans(project)[before[project] :]:
            tags = span.attributes.get("langfuse.trace.tags")
            if span.parent_span_id is None and isinstance(tags, str) and f"iso-{run}" in tags:
                ids.extend(t.removeprefix("insertion_id:") for t in eval_tags(tags) if t.startswith("insertion_id:"))
        return ids

    def all_arrived() -> bool:
        return all(len(generation_ids(p)) >= len(expected[p]) for p in projects)

    langfuse.wait_for(all_arrived, timeout=20)
    for project in projects:
        received = generation_ids(project)
        assert len(received) == len(set(received)), "a span was exported twice"
        assert set(received) == expected[project], f"spans of another project landed in {project}"


def eval_tags(raw: str) -> list[str]:
    import json

    tags = json.loads(raw)
    assert isinstance(tags, list)
    return [str(tag) for tag in tags]


async def test_a_project_named_default_shares_nothing_with_calls_that_name_no_project(
    gateway_factory: GatewayFactory, langfuse_server: tuple[ServerThread, LangfuseState]
) -> None:
    """Project-less calls were namespaced as 'default': a project of that name saw their rollouts."""
    public_key, secret_key = PROJECTS["proj-a"]
    project = LangfuseProject(public_key=public_key, secret_key=SecretStr(secret_key), host=langfuse_server[0].url)
    gateway = gateway_factory(secrets=SecretsFile(langfuse_keys={"default": project}, default_project_id=None))
    rollout = f"anon-{uuid.uuid4().hex[:8]}"
    body = {"model": "fake", "messages": [{"role": "user", "content": "no project named"}]}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        assert (await http.post(f"/{rollout_path(rollout)}/chat/completions", json=body)).status_code == 200
        anonymous = await http.get(f"/rollouts/{rollout}")
        assert anonymous.status_code == 200
        assert anonymous.json()["project_id"] is None
        assert anonymous.json()["expected_count"] == 1
        named = await http.get(f"/project_id/default/rollouts/{rollout}")
        assert named.status_code == 404, named.text
