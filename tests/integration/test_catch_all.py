"""The catch-all: with LITELLM_PROXY_URL, paths the gateway does not serve reach the proxy as they came."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from proxy_core.config_files import ApiKey
from tests.fakes.litellm_proxy import CONTENT_TYPE, FakeLiteLLMProxy
from tests.fakes.server import ServerThread
from tests.integration.conftest import GatewayFactory


@pytest.fixture
def proxy() -> Iterator[tuple[ServerThread, FakeLiteLLMProxy]]:
    app = FakeLiteLLMProxy()
    with ServerThread(app) as server:
        yield server, app


def test_forwards_method_path_query_and_body_unchanged(
    gateway_factory: GatewayFactory, proxy: tuple[ServerThread, FakeLiteLLMProxy]
) -> None:
    server, app = proxy
    gateway = gateway_factory(litellm_proxy_url=f"{server.url}/base/")
    body = b'{"prompt": "a cat",  "n": 1}'  # two spaces: sent byte for byte, not re-encoded
    response = httpx.put(
        f"{gateway.url}/v1/images/generations%2Fx?b=2&a=%2F&a=1",
        content=body,
        headers={"authorization": "Bearer sk-client", "content-type": "application/json", "x-fake-status": "202"},
    )
    assert response.status_code == 202
    assert response.headers["content-type"] == CONTENT_TYPE.decode()
    assert response.content == b"proxied PUT /base/v1/images/generations%2Fx"
    assert response.headers.get_list("set-cookie") == ["a=1", "b=2"]
    (sent,) = app.requests
    assert (sent.method, sent.raw_path, sent.query, sent.body) == (
        "PUT",
        b"/base/v1/images/generations%2Fx",
        b"b=2&a=%2F&a=1",
        body,
    )
    assert sent.header("authorization") == ["Bearer sk-client"]  # the client's own key, as on tracked routes


def test_forwards_multipart_byte_for_byte(
    gateway_factory: GatewayFactory, proxy: tuple[ServerThread, FakeLiteLLMProxy]
) -> None:
    server, app = proxy
    gateway = gateway_factory(litellm_proxy_url=server.url)
    audio = bytes(range(256)) * 64
    response = httpx.post(
        f"{gateway.url}/v1/audio/transcriptions",
        data={"model": "whisper-1"},
        files={"file": ("a.wav", audio, "audio/wav")},
    )
    assert response.status_code == 200
    (sent,) = app.requests
    assert sent.header("content-type")[0].startswith("multipart/form-data; boundary=")
    assert audio in sent.body
    assert int(sent.header("content-length")[0]) == len(sent.body)
    boundary = sent.header("content-type")[0].split("boundary=")[1]
    assert sent.body.startswith(b"--" + boundary.encode())


def test_streams_pass_through_as_they_come(
    gateway_factory: GatewayFactory, proxy: tuple[ServerThread, FakeLiteLLMProxy]
) -> None:
    server, app = proxy
    gateway = gateway_factory(litellm_proxy_url=server.url)
    with httpx.stream("GET", f"{gateway.url}/v1/batches/stream", timeout=30) as response:
        assert response.headers["content-type"] == "text/event-stream"
        chunks = response.iter_raw()
        assert next(chunks) == b"data: first\n\n"  # arrived while the proxy still holds the rest
        app.release()
        assert b"".join(chunks) == b"data: second\n\n"


def test_gateway_keys_guard_forwarding(
    gateway_factory: GatewayFactory, proxy: tuple[ServerThread, FakeLiteLLMProxy]
) -> None:
    server, app = proxy
    key = "gw-key-" + uuid.uuid4().hex
    gateway = gateway_factory(
        litellm_proxy_url=server.url,
        litellm_proxy_api_key="sk-litellm-master",
        api_keys=(ApiKey(key=key, projects=("*",)),),  # type: ignore[arg-type]
    )
    refused = httpx.post(f"{gateway.url}/v1/files", content=b"x", headers={"authorization": "Bearer wrong"})
    assert refused.status_code == 401
    assert refused.json() == {
        "error": {
            "message": "Invalid API key.",
            "type": "authentication_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert app.requests == []
    accepted = httpx.post(f"{gateway.url}/v1/files", content=b"x", headers={"authorization": f"Bearer {key}"})
    assert accepted.status_code == 200
    (sent,) = app.requests
    assert sent.header("authorization") == ["Bearer sk-litellm-master"]
    assert key not in str(sent.headers)


def test_gateway_routes_are_never_forwarded(
    gateway_factory: GatewayFactory, proxy: tuple[ServerThread, FakeLiteLLMProxy]
) -> None:
    server, app = proxy
    gateway = gateway_factory(litellm_proxy_url=server.url)
    models = httpx.get(f"{gateway.url}/v1/models").json()
    assert "fake" in [model["id"] for model in models["data"]]
    assert httpx.get(f"{gateway.url}/health").json()["status"] == "healthy"
    assert httpx.get(f"{gateway.url}/v1/chat/completions").status_code == 405
    assert app.requests == []


def test_without_a_proxy_unknown_paths_are_404(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory()
    response = httpx.post(f"{gateway.url}/v1/files", content=b"x")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_route"
