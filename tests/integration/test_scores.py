"""POST /scores: by trace id or insertion id, to the completion's own Langfuse project."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.fakes.langfuse_state import LangfuseState
from tests.integration.conftest import Gateway, rollout_path


async def post(gateway: Gateway, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers={"authorization": "Bearer k"}) as http:
        return await http.post(path, json=body)


async def completion(gateway: Gateway, project: str) -> str:
    path = f"/project_id/{project}/{rollout_path(f's-{uuid.uuid4().hex[:6]}')}/chat/completions"
    response = await post(gateway, path, {"model": "fake", "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 200
    return response.headers["x-insertion-id"]


async def test_score_by_insertion_id_lands_on_its_trace(gateway: Gateway, langfuse: LangfuseState) -> None:
    insertion_id = await completion(gateway, "proj-b")
    langfuse.wait_for(lambda: any(f"insertion_id:{insertion_id}" in t.tags for t in langfuse.traces("proj-b")))
    response = await post(
        gateway, "/v1/project_id/proj-b/scores", {"insertion_id": insertion_id, "name": "correct", "value": True}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["name"], body["value"], body["dataType"], body["project_id"]) == ("correct", 1, "BOOLEAN", "proj-b")
    [stored] = langfuse.scores("proj-b")
    trace = next(t for t in langfuse.traces("proj-b") if f"insertion_id:{insertion_id}" in t.tags)
    assert stored["traceId"] == trace.id == body["trace_id"]
    assert langfuse.scores("proj-a") == []


async def test_score_by_trace_id(gateway: Gateway, langfuse: LangfuseState) -> None:
    trace_id = langfuse.insert_trace("proj-a", tags=["x"])
    response = await post(gateway, "/scores", {"trace_id": trace_id, "name": "quality", "value": 0.75, "comment": "ok"})
    assert response.status_code == 201, response.text
    assert langfuse.scores("proj-a")[0]["comment"] == "ok"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"trace_id": "0" * 32, "name": "n", "value": 1}, 404, "trace_not_found"),
        ({"insertion_id": str(uuid.uuid4()), "name": "n", "value": 1}, 404, "trace_not_found"),
        ({"name": "n", "value": 1}, 400, "invalid_value"),
        ({"trace_id": "t", "insertion_id": "i", "name": "n", "value": 1}, 400, "invalid_value"),
        ({"trace_id": "t", "name": "", "value": 1}, 400, "invalid_value"),
        ({"trace_id": "t", "name": "n", "value": "good", "data_type": "NUMERIC"}, 400, "invalid_value"),
        ({"trace_id": "t", "name": "n", "value": 3, "data_type": "BOOLEAN"}, 400, "invalid_value"),
        ({"trace_id": "t", "name": "n", "value": 1, "extra": 1}, 400, "invalid_value"),
        ({"trace_id": "t", "name": "n", "value": 1, "data_type": ["NUMERIC"]}, 400, "invalid_value"),
        ({"trace_id": "t", "name": "n", "value": 1, "data_type": {"a": 1}}, 400, "invalid_value"),
    ],
)
async def test_score_errors(
    gateway: Gateway, langfuse: LangfuseState, body: dict[str, Any], status: int, code: str
) -> None:
    response = await post(gateway, "/scores", body)
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)
    assert langfuse.scores("proj-a") == []
