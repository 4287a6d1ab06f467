"""Every bad input and failure gets an exact OpenAI-style error, and nothing is forwarded or recorded."""

from __future__ import annotations

import gzip
import socket
import uuid
from typing import Any

import httpx
import openai
import pytest
import redis.asyncio

from proxy_core.config_files import ApiKey
from tests.fakes.server import ServerThread
from tests.fakes.upstream import UpstreamState
from tests.integration.conftest import SERVER_PROVIDER_KEY, Gateway, GatewayFactory, encode_url, rollout_path
from tests.redis_keys import data_keys

USER = [{"role": "user", "content": "hi"}]
BODY = {"model": "fake", "messages": USER}


async def post(gateway: Gateway, path: str, **kwargs: Any) -> httpx.Response:
    kwargs.setdefault("headers", {}).setdefault("authorization", "Bearer sk-client")
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        return await http.post(path, **kwargs)


async def no_keys(redis_client: redis.asyncio.Redis, prefix: str) -> bool:
    return await data_keys(redis_client, prefix) == []


BAD_ROLLOUT_ID = {
    "message": "Invalid rollout_id: must not contain '/', ',', whitespace or control characters.",
    "type": "invalid_request_error",
    "param": "rollout_id",
    "code": "invalid_identifier",
}


@pytest.mark.parametrize(
    ("path", "kwargs", "status", "error"),
    [
        (
            "/rollout_id/a,b/invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions",
            {"json": BODY},
            400,
            BAD_ROLLOUT_ID,
        ),
        (  # a decoded newline: Starlette's path pattern matches no route, yet the id is what is wrong
            "/rollout_id/a%0a/invocation_id/i/experiment_id/e/run_id/r/row_id/w/chat/completions",
            {"json": BODY},
            400,
            BAD_ROLLOUT_ID,
        ),
        (
            "/project_id/secret-project/chat/completions",
            {"json": BODY},
            404,
            {
                "message": "Project 'secret-project' is not configured on this gateway.",
                "type": "invalid_request_error",
                "param": "project_id",
                "code": "project_not_found",
            },
        ),
        (
            f"/{rollout_path('r1')}/chat/completions",
            {"content": b'{"model": "fake", "messages": [', "headers": {"content-type": "application/json"}},
            400,
            {
                "message": "The request body is not valid JSON: unexpected end of data.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_json",
            },
        ),
        (
            f"/{rollout_path('r1')}/chat/completions",
            {"json": {"model": "fake", "messages": USER, "api_base": "http://169.254.169.254"}},
            400,
            {
                "message": "'api_base' cannot be set by clients of this gateway.",
                "type": "invalid_request_error",
                "param": "api_base",
                "code": "invalid_value",
            },
        ),
        (
            f"/{rollout_path('r1')}/chat/completions",
            {"json": {"model": "fake", "messages": "hi"}},
            400,
            {
                "message": "'messages' must be a non-empty array.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "invalid_value",
            },
        ),
        (
            f"/{rollout_path('r1')}/encoded_base_url/not-base64!!/chat/completions",
            {"json": BODY},
            400,
            {
                "message": "Invalid encoded_base_url: not URL-safe base64.",
                "type": "invalid_request_error",
                "param": "encoded_base_url",
                "code": "invalid_base_url",
            },
        ),
        (
            f"/{rollout_path('r1')}/encoded_base_url/{encode_url('http://169.254.169.254/latest')}/chat/completions",
            {"json": BODY},
            403,
            {
                "message": "encoded_base_url is not allowed: it does not match ALLOWED_BASE_URLS.",
                "type": "permission_error",
                "param": "encoded_base_url",
                "code": "base_url_not_allowed",
            },
        ),
        (
            f"/{rollout_path('r1')}/chat/completions",
            {"json": {"model": "nope", "messages": USER}},
            404,
            {
                "message": "The model 'nope' does not exist on this gateway.",
                "type": "invalid_request_error",
                "param": "model",
                "code": "model_not_found",
            },
        ),
        (
            f"/{rollout_path('r1')}/chat/completions",
            {"content": b"{}", "headers": {"content-type": "text/plain"}},
            400,
            {
                "message": "Unsupported content type 'text/plain'; send application/json.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_content_type",
            },
        ),
        (
            f"/{rollout_path('r1')}/chat/completions",
            {
                "content": gzip.compress(b"{}"),
                "headers": {"content-type": "application/json", "content-encoding": "gzip"},
            },
            415,
            {
                "message": "Unsupported content encoding 'gzip'; send the body uncompressed.",
                "type": "invalid_request_error",
                "param": None,
                "code": "unsupported_content_encoding",
            },
        ),
        (
            "/v1/images/generations",
            {"json": BODY},
            404,
            {
                "message": "Unknown route: POST /v1/images/generations",
                "type": "invalid_request_error",
                "param": None,
                "code": "unknown_route",
            },
        ),
    ],
)
async def test_client_errors_are_exact_and_side_effect_free(
    gateway_factory: GatewayFactory,
    upstream_state: UpstreamState,
    redis_client: redis.asyncio.Redis,
    key_prefix: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    error: dict[str, Any],
) -> None:
    gateway = gateway_factory(wildcard=False)
    response = await post(gateway, path, **kwargs)
    assert (response.status_code, response.json()) == (status, {"error": error})
    assert upstream_state.completion_requests == []
    assert await no_keys(redis_client, key_prefix)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/chat/completions"),
        ("OPTIONS", "/v1/chat/completions"),
        ("TRACE", f"/{rollout_path('r1')}/chat/completions"),
        ("POST", "/v1/traces"),
        ("OPTIONS", "/v1/traces"),
    ],
)
async def test_a_method_a_route_does_not_take_is_405_method_not_allowed(
    gateway: Gateway, method: str, path: str
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        response = await http.request(method, path)
    assert response.status_code == 405
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", None, "method_not_allowed")
    assert error["message"].startswith(f"{method} is not allowed here; use ")
    assert response.headers["allow"]


def _method_not_allowed(method: str, allowed: str) -> tuple[int, str | None, dict[str, Any]]:
    message = f"{method} is not allowed here; use {allowed}."
    return (
        405,
        allowed,
        {"message": message, "type": "invalid_request_error", "param": None, "code": "method_not_allowed"},
    )


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("OPTIONS", "/v1/chat/completions", _method_not_allowed("OPTIONS", "POST")),
        ("TRACE", f"/{rollout_path('r1')}/chat/completions", _method_not_allowed("TRACE", "POST")),
        ("OPTIONS", "/v1/traces", _method_not_allowed("OPTIONS", "GET")),
        ("POST", "/health", _method_not_allowed("POST", "GET, HEAD")),
        ("OPTIONS", "/v1/ready", _method_not_allowed("OPTIONS", "GET, HEAD")),
        ("DELETE", "/v1/models", _method_not_allowed("DELETE", "GET")),
        ("OPTIONS", "/v1/embeddings", _method_not_allowed("OPTIONS", "POST")),
        (
            "GET",
            f"/{rollout_path('r1')}/v1/messages",  # Anthropic's clients read Anthropic's error shape
            (
                405,
                "POST",
                {
                    "type": "error",
                    "error": {
                        "message": "GET is not allowed here; use POST.",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": "method_not_allowed",
                    },
                },
            ),
        ),
        (
            "OPTIONS",
            "/v1/images/generations",
            (
                404,
                None,
                {
                    "message": "Unknown route: OPTIONS /v1/images/generations",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "unknown_route",
                },
            ),
        ),
    ],
)
async def test_allow_names_only_the_methods_of_the_path(
    gateway: Gateway, method: str, path: str, expected: tuple[int, str | None, dict[str, Any]]
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        response = await http.request(method, path)
    status, allow, error = expected
    body = error if "error" in error else {"error": error}  # a whole body is given where its shape differs
    assert (response.status_code, response.headers.get("allow"), response.json()) == (status, allow, body)


async def test_oversized_body_is_413(gateway_factory: GatewayFactory, upstream_state: UpstreamState) -> None:
    gateway = gateway_factory(max_body_bytes=4096)
    big = {"model": "fake", "messages": [{"role": "user", "content": "x" * 10_000}]}
    response = await post(gateway, f"/{rollout_path('r1')}/chat/completions", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert upstream_state.completion_requests == []


PROVIDER_ERRORS = [
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (401, openai.AuthenticationError),
    (400, openai.BadRequestError),
]


@pytest.mark.parametrize(("status", "exc"), PROVIDER_ERRORS)
async def test_provider_errors_keep_their_status_and_record_nothing(
    gateway: Gateway, redis_client: redis.asyncio.Redis, key_prefix: str, status: int, exc: type[Exception]
) -> None:
    client = gateway.client(rollout_path("r-err"))
    directive = f"[[status={status}]] [[retry_after=7]]"
    with pytest.raises(exc) as info:
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": directive}])
    error = info.value
    assert isinstance(error, openai.APIStatusError)
    assert error.status_code == status
    assert error.body["code"] == f"upstream_{status}"  # type: ignore[index]
    if status == 429:
        assert error.response.headers["retry-after"] == "7"
    assert await no_keys(redis_client, key_prefix)


async def test_unreachable_provider_is_502(gateway_factory: GatewayFactory) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gateway = gateway_factory(allowed_base_urls=(f"http://127.0.0.1:{port}",))
    client = gateway.client(f"{rollout_path('r1')}/encoded_base_url/{encode_url(f'http://127.0.0.1:{port}/v1')}")
    with pytest.raises(openai.APIStatusError) as info:
        client.chat.completions.create(model="openai/x", messages=USER)
    assert info.value.status_code == 502
    assert info.value.body["code"] == "upstream_unreachable"  # type: ignore[index]


async def test_a_model_with_no_provider_is_404_model_not_found(
    gateway: Gateway, redis_client: redis.asyncio.Redis, key_prefix: str, upstream_state: UpstreamState
) -> None:
    # The catalogue's wildcard passes the name on; LiteLLM finds no provider in it and sends nothing.
    sent = len(upstream_state.completion_requests)
    response = await post(gateway, f"/{rollout_path('r1')}/chat/completions", json={**BODY, "model": "no-such-model"})
    assert response.status_code == 404, response.text
    assert response.json() == {
        "error": {
            "message": "The model 'no-such-model' names no provider: use '<provider>/<model>', "
            "for example 'openai/gpt-4o-mini'.",
            "type": "invalid_request_error",
            "param": "model",
            "code": "model_not_found",
        }
    }
    assert len(upstream_state.completion_requests) == sent
    assert await no_keys(redis_client, key_prefix)


def _recording_app(hits: list[str], *, status: int = 200, location: str | None = None) -> Any:
    """Counts every request it gets; answers ``status`` (with ``location``, a redirect)."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        hits.append(f"{scope['method']} {scope['path']}")
        while (await receive()).get("more_body"):
            pass
        headers = [(b"content-length", b"2"), (b"content-type", b"application/json")]
        if location is not None:
            headers.append((b"location", location.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


@pytest.mark.parametrize("model", ["openai/x", "fireworks_ai/accounts/fireworks/models/x"])
async def test_a_redirect_from_an_allowed_upstream_is_not_followed(gateway_factory: GatewayFactory, model: str) -> None:
    # The allowed origin sends the call on to one the allow-list does not name: the call must end
    # at the redirect, with nothing sent to the other origin.
    elsewhere: list[str] = []
    allowed: list[str] = []
    with ServerThread(_recording_app(elsewhere)) as target:
        redirect = _recording_app(allowed, status=302, location=f"{target.url}/v1/chat/completions")
        with ServerThread(redirect) as redirector:
            gateway = gateway_factory(allowed_base_urls=(f"{redirector.url}/v1",))
            path = f"/{rollout_path('r1')}/encoded_base_url/{encode_url(f'{redirector.url}/v1')}/chat/completions"
            response = await post(gateway, path, json={"model": model, "messages": USER})
    assert allowed == ["POST /v1/chat/completions"]
    assert elsewhere == []
    assert response.status_code == 502, response.text
    assert response.json()["error"] == {
        "message": "The provider answered with a redirect (HTTP 302), which is not followed.",
        "type": "upstream_error",
        "param": None,
        "code": "upstream_redirect",
    }


async def test_a_provider_whose_client_cannot_be_held_is_refused_for_a_chosen_upstream(
    gateway: Gateway, upstream_state: UpstreamState
) -> None:
    base = encode_url(gateway.settings.allowed_base_urls[0])
    path = f"/{rollout_path('r1')}/encoded_base_url/{base}/chat/completions"
    response = await post(gateway, path, json={"model": "anthropic/claude-x", "messages": USER})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == ("model", "base_url_provider_unsupported")
    assert error["message"].startswith("Models of provider 'anthropic' cannot be sent to an encoded_base_url")
    assert upstream_state.completion_requests == []


async def test_dead_store_answers_503_with_retry_after(
    gateway_factory: GatewayFactory, upstream_state: UpstreamState
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    gateway = gateway_factory(redis_url=dead)
    response = await post(gateway, f"/{rollout_path('r1')}/chat/completions", json=BODY)
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["error"]["code"] == "store_unavailable"
    untracked = await post(gateway, "/v1/chat/completions", json=BODY)
    assert untracked.status_code == 200  # untracked requests never touch the store
    for _ in range(5):
        await post(gateway, f"/{rollout_path('r1')}/chat/completions", json=BODY)
    sent = len(upstream_state.completion_requests)
    fast = await post(gateway, f"/{rollout_path('r1')}/chat/completions", json=BODY)
    assert fast.status_code == 503
    assert len(upstream_state.completion_requests) == sent  # breaker open: no provider spend


async def test_encoded_base_url_routes_and_never_gets_server_keys(
    gateway: Gateway, upstream_state: UpstreamState
) -> None:
    base = encode_url(f"{gateway.settings.allowed_base_urls[0]}").rstrip("=")
    path = f"/{rollout_path('r-b')}/encoded_base_url/{base}/chat/completions"
    for bearer, expected in (("Bearer sk-client", "Bearer sk-client"), (None, "Bearer no-key")):
        headers = {"authorization": bearer} if bearer else {"x-none": "1"}
        async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
            raw = await http.post(path, json={"model": "fake-keyed", "messages": USER}, headers=headers)
        assert raw.status_code == 200, raw.text
        sent = upstream_state.completion_requests[-1]
        assert sent.headers["authorization"] == expected
        assert SERVER_PROVIDER_KEY not in str(sent.headers)


async def test_missing_provider_key_is_401(gateway: Gateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        response = await http.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_provider_key"


async def test_server_key_is_used_for_its_own_deployment(gateway: Gateway, upstream_state: UpstreamState) -> None:
    gateway.client(api_key="sk-client").chat.completions.create(model="fake-keyed", messages=USER)
    assert upstream_state.completion_requests[-1].headers["authorization"] == f"Bearer {SERVER_PROVIDER_KEY}"


async def test_api_keys_bind_projects(gateway_factory: GatewayFactory, upstream_state: UpstreamState) -> None:
    key_a = "gw-key-for-project-a-" + uuid.uuid4().hex
    gateway = gateway_factory(api_keys=(ApiKey(key=key_a, projects=("proj-a",)),))  # type: ignore[arg-type]
    ok = gateway.client(f"project_id/proj-a/{rollout_path('r1')}", api_key=key_a)
    ok.chat.completions.create(model="fake-keyed", messages=USER)
    assert upstream_state.completion_requests[-1].headers["authorization"] == f"Bearer {SERVER_PROVIDER_KEY}"
    with pytest.raises(openai.PermissionDeniedError):
        gateway.client(f"project_id/proj-b/{rollout_path('r1')}", api_key=key_a).chat.completions.create(
            model="fake", messages=USER
        )
    with pytest.raises(openai.AuthenticationError):
        gateway.client(rollout_path("r1"), api_key="wrong-key-0000000000").chat.completions.create(
            model="fake", messages=USER
        )


async def test_client_leaving_mid_body_is_not_an_error(gateway: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    host, port = gateway.url.removeprefix("http://").split(":")
    _reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Content-Length: 1000\r\n\r\n{"model":'
    )
    await writer.drain()
    await asyncio.sleep(0.2)
    writer.close()
    await asyncio.sleep(0.3)
    assert "unhandled error" not in caplog.text
    assert (await post(gateway, "/v1/chat/completions", json=BODY)).status_code == 200
