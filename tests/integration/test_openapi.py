"""/openapi.json and /docs describe every route, the metadata routes dispatch parses included."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate

from proxy_core.api.dispatch import allowed_methods
from proxy_core.services.paths import TRACKED_ENDPOINTS, Endpoint, parse_metadata_path
from tests.integration.conftest import Gateway


@pytest.fixture
def schema(gateway: Gateway) -> dict[str, Any]:
    response = httpx.get(f"{gateway.url}/openapi.json", timeout=30)
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    validate(document)  # a valid OpenAPI 3.1 document, or this raises
    return document


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_every_route_is_listed_with_its_methods(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    for endpoint in Endpoint:
        tail = "/" + "/".join(endpoint.value)
        listed = {path: item for path, item in paths.items() if path.endswith(tail)}
        assert f"/project_id/{{project_id}}{tail}" in listed, endpoint
        for path, item in listed.items():
            assert sorted(item) == sorted(method.lower() for method in allowed_methods(endpoint)), path
    for fixed in ("/health", "/ready", "/v1/models", "/metrics"):
        assert "get" in paths[fixed]
    assert not [path for path in paths if "{path" in path], "the catch-all is not an API route"


def test_every_listed_metadata_path_is_one_dispatch_parses(schema: dict[str, Any]) -> None:
    """Filled in with sample ids, each path is parsed by dispatch to the endpoint it documents."""
    for path, item in schema["paths"].items():
        if path in ("/health", "/ready", "/v1/models", "/metrics"):
            continue
        concrete = re.sub(r"\{(\w+)\}", lambda m: "aHR0cDovL3g" if m[1] == "encoded_base_url" else f"{m[1]}-1", path)
        parsed = parse_metadata_path(concrete)
        assert parsed is not None, path
        assert item.keys() == {method.lower() for method in allowed_methods(parsed.endpoint)}
        assert (parsed.rollout is not None) == ("rollout_id" in path and parsed.endpoint in TRACKED_ENDPOINTS)


def test_parameters_bodies_headers_and_errors_are_described(schema: dict[str, Any]) -> None:
    paths = schema["paths"]
    tracked = paths[
        "/project_id/{project_id}/rollout_id/{rollout_id}/invocation_id/{invocation_id}/experiment_id/"
        "{experiment_id}/run_id/{run_id}/row_id/{row_id}/chat/completions"
    ]["post"]
    names = [p["name"] for p in tracked["parameters"] if p["in"] == "path"]
    assert names == ["project_id", "rollout_id", "invocation_id", "experiment_id", "run_id", "row_id"]
    assert tracked["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ChatCompletionRequest"
    }
    assert "x-insertion-id" in tracked["responses"]["200"]["headers"]
    assert "text/event-stream" in tracked["responses"]["200"]["content"]
    assert "x-insertion-id" not in paths["/v1/chat/completions"]["post"]["responses"]["200"].get("headers", {})
    for status in ("400", "401", "403", "404", "413", "429", "502", "503", "504"):
        assert tracked["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorResponse"
        }
    traces = paths["/traces"]["get"]
    tags = next(p for p in traces["parameters"] if p["name"] == "tags")
    assert (tags["in"], tags["required"]) == ("query", True)
    assert paths["/rollouts/{rollout_id}"]["get"]["parameters"][0]["name"] == "rollout_id"
    assert set(paths["/scores"]["post"]["responses"]) >= {"201", "400", "404"}
    components = schema["components"]["schemas"]
    assert set(components["ErrorDetail"]["required"]) == {"message", "type", "param", "code"}
    for ref in refs(schema):
        assert ref.removeprefix("#/components/schemas/") in components, ref
    operation_ids = [op["operationId"] for item in paths.values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_docs_page_serves_the_schema(gateway: Gateway) -> None:
    page = httpx.get(f"{gateway.url}/docs", timeout=30)
    assert page.status_code == 200
    assert "swagger-ui" in page.text
    assert "/openapi.json" in page.text
    refused = httpx.post(f"{gateway.url}/docs", timeout=30)
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"
