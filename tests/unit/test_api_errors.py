"""Errors Starlette and FastAPI raise themselves get the OpenAI shape and stable codes."""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.testclient import TestClient

from proxy_core.api.errors import register_error_handlers


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    app = FastAPI()
    register_error_handlers(app)

    @app.get("/only-get")
    async def only_get() -> dict[str, str]:
        return {}

    @app.api_route("/several", methods=["PUT", "POST", "DELETE", "PATCH"])
    async def several() -> dict[str, str]:
        return {}

    @app.get("/raise/{status}")
    async def raise_status(status: int) -> dict[str, str]:
        raise HTTPException(status, headers={"X-Kept": "1"})

    with TestClient(app) as test_client:
        yield test_client


def _error(message: str, code: str, type_: str = "invalid_request_error") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "POST", "DELETE"])
def test_a_method_the_route_does_not_take_is_405_method_not_allowed(client: TestClient, method: str) -> None:
    response = client.request(method, "/only-get")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"
    assert response.json() == _error(f"{method} is not allowed here; use GET.", "method_not_allowed")


def test_allow_lists_the_routes_methods_in_a_stable_order(client: TestClient) -> None:
    response = client.get("/several")
    assert response.status_code == 405
    assert response.headers["allow"] == "DELETE, PATCH, POST, PUT"
    assert response.json() == _error("GET is not allowed here; use DELETE, PATCH, POST, PUT.", "method_not_allowed")


def test_a_head_request_gets_the_status_and_allow_without_a_body(client: TestClient) -> None:
    response = client.head("/only-get")
    assert (response.status_code, response.headers["allow"], response.content) == (405, "GET", b"")


def test_an_unknown_route_is_404_unknown_route(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == _error("Unknown route: GET /nowhere", "unknown_route")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, _error("Bad Request", "invalid_request")),
        (404, _error("Unknown route: GET /raise/404", "unknown_route")),
        (405, _error("GET is not allowed here.", "method_not_allowed")),
        (413, _error(HTTPStatus(413).phrase, "request_too_large")),  # the phrase changed in Python 3.13
        (415, _error("Unsupported Media Type", "unsupported_media_type")),
        (418, _error(HTTPStatus(418).phrase, "http_418")),
        (501, _error("Not Implemented", "http_501", "api_error")),
    ],
)
def test_http_exceptions_have_stable_codes_and_keep_their_headers(
    client: TestClient, status: int, error: dict[str, Any]
) -> None:
    response = client.get(f"/raise/{status}")
    assert (response.status_code, response.json()) == (status, error)
    assert response.headers["x-kept"] == "1"
    assert "allow" not in response.headers
