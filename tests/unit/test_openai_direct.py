"""Chat completions sent without the SDK's transform put the same request on the wire as the SDK."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pydantic
import pytest
from openai import AsyncOpenAI, AsyncStream
from openai.types.chat import ChatCompletion

from proxy_core.adapters import litellm_deployments
from proxy_core.adapters.litellm_client import _kwargs
from proxy_core.adapters.litellm_deployments import DeploymentClients
from proxy_core.adapters.litellm_origin import OriginClients
from proxy_core.adapters.openai_direct import DirectCompletions, DirectOpenAI, forget_cookies
from proxy_core.services.llm import LlmCall

BASE = "http://upstream.test/v1"
FIREWORKS = "fireworks_ai/accounts/fireworks/models/m"
_ANSWER = {
    "id": "c-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
}
_STREAM = (
    b'data: {"id":"c-1","object":"chat.completion.chunk","created":1,"model":"m",'
    b'"choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}\n\ndata: [DONE]\n\n'
)


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if json.loads(request.content).get("stream"):
            return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=_STREAM)
        return httpx.Response(200, json=_ANSWER)


async def _send(client_type: type[AsyncOpenAI], **params: Any) -> tuple[httpx.Request, Any]:
    recorder = _Recorder()
    http = httpx.AsyncClient(transport=httpx.MockTransport(recorder))
    client = client_type(api_key="sk-a", base_url=BASE, http_client=http, max_retries=0)
    raw = await client.chat.completions.with_raw_response.create(**params)  # as LiteLLM calls it
    parsed = raw.parse()
    if isinstance(parsed, AsyncStream):
        parsed = [chunk.choices[0].delta.content async for chunk in parsed]
    await http.aclose()
    return recorder.requests[0], parsed


class _Format(pydantic.BaseModel):
    type: str = "json_object"


PARAMS: list[dict[str, Any]] = [
    {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hello", "name": None}],
        "temperature": 0.2,
        "max_tokens": 5,
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"},
        "user": "u-1",
        "extra_body": {"top_k": 3},
        "extra_headers": {"X-Extra": "1"},
        "timeout": 5.0,
    },
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": None},
    {"model": "m", "messages": [{"role": "user", "content": "hi"}], "response_format": _Format()},
]


@pytest.mark.parametrize("params", PARAMS, ids=["plain", "stream", "pydantic-value"])
async def test_the_request_and_the_answer_are_the_sdks(params: dict[str, Any]) -> None:
    expected, expected_answer = await _send(AsyncOpenAI, **params)
    sent, answer = await _send(DirectOpenAI, **params)
    assert (sent.method, sent.url) == (expected.method, expected.url)
    assert json.loads(sent.content) == json.loads(expected.content)
    ignored = {"content-length", "x-stainless-retry-count"}  # length follows key order; the count is per client
    assert {k: v for k, v in sent.headers.items() if k not in ignored} == {
        k: v for k, v in expected.headers.items() if k not in ignored
    }
    if isinstance(answer, list):
        assert answer == expected_answer == ["hi"]
    else:
        assert isinstance(expected_answer, ChatCompletion)
        assert list(answer.model_dump().items()) == list(expected_answer.model_dump().items())  # all LiteLLM reads


async def test_a_body_that_is_not_plain_json_takes_the_sdks_transform(monkeypatch: pytest.MonkeyPatch) -> None:
    taken: list[str] = []

    async def sdk_create(self: DirectCompletions, **params: Any) -> Any:
        taken.append("sdk")
        return await original(self, **params)

    original = DirectCompletions.__mro__[1].create  # type: ignore[attr-defined]
    monkeypatch.setattr(DirectCompletions.__mro__[1], "create", sdk_create)
    await _send(DirectOpenAI, **PARAMS[0])
    assert taken == []
    await _send(DirectOpenAI, **PARAMS[2])
    assert taken == ["sdk"]


def _call(**overrides: Any) -> LlmCall:
    fields: dict[str, Any] = {
        "model": "openai/gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        "params": {},
        "metadata": {},
        "deployment_params": {"model": "openai/gpt-4o-mini", "api_base": BASE, "api_key": "sk-d"},
    }
    fields.update(overrides)
    return LlmCall(**fields)


async def test_a_plain_catalogue_deployment_is_sent_with_a_direct_client() -> None:
    deployments = DeploymentClients()
    kwargs = _kwargs(_call(), stream=False, origins=OriginClients(), deployments=deployments)
    client = kwargs["client"]
    assert isinstance(client, DirectOpenAI)
    assert (str(client.base_url).rstrip("/"), client.api_key) == (BASE, "sk-d")
    assert client.user_agent.startswith("AsyncOpenAI/Python ")  # providers see the SDK's own name
    again = _kwargs(_call(), stream=True, origins=OriginClients(), deployments=deployments)
    assert again["client"] is client
    keyed = _kwargs(_call(api_key="sk-client"), stream=False, origins=OriginClients(), deployments=deployments)
    assert keyed["client"] is not client
    assert keyed["client"].api_key == "sk-client"
    await deployments.aclose()


@pytest.mark.parametrize(
    "overrides",
    [
        {"deployment_params": {"model": "openai/gpt-4o-mini", "api_key": "sk-d"}},  # base URL from env/globals
        {"deployment_params": {"model": "openai/gpt-4o-mini", "api_base": BASE}},  # key from env/globals
        {"deployment_params": {"model": "openai/m", "api_base": BASE, "api_key": "k", "organization": "org-1"}},
        {
            "model": FIREWORKS,
            "deployment_params": {"model": FIREWORKS, "api_base": BASE, "api_key": "k"},
        },
        {"routed": True},
        {"replay": _ANSWER},
    ],
    ids=["no-base", "no-key", "organization", "other-provider", "routed", "replay"],
)
async def test_anything_else_keeps_litellms_own_client(overrides: dict[str, Any]) -> None:
    deployments = DeploymentClients()
    kwargs = _kwargs(_call(**overrides), stream=False, origins=OriginClients(), deployments=deployments)
    assert "client" not in kwargs
    await deployments.aclose()


async def test_deployment_clients_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm_deployments, "MAX_CACHED_CLIENTS", 2)
    deployments = DeploymentClients()
    plain = {"model": "openai/m", "api_base": BASE}
    first = deployments.for_call(plain, "openai/m", "sk-a", 0)
    deployments.for_call(plain, "openai/m", "sk-b", 0)
    deployments.for_call(plain, "openai/m", "sk-c", 0)
    assert deployments.for_call(plain, "openai/m", "sk-a", 0) is not first  # evicted, made anew
    await deployments.aclose()


class _CookieSetter:
    """Answers every call setting a cookie, and records the Cookie header each call carried."""

    def __init__(self) -> None:
        self.cookies: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.cookies.append(request.headers.get("cookie"))
        return httpx.Response(200, json=_ANSWER, headers={"set-cookie": "affinity=project-a; Path=/"})


async def _two_calls(http: httpx.AsyncClient) -> None:
    client = DirectOpenAI(api_key="sk-a", base_url=BASE, http_client=http, max_retries=0)
    for _ in range(2):
        await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])


async def test_a_cookie_one_answer_sets_is_not_sent_with_the_next_call() -> None:
    kept = _CookieSetter()
    async with httpx.AsyncClient(transport=httpx.MockTransport(kept)) as http:
        await _two_calls(http)
    assert kept.cookies == [None, "affinity=project-a"]  # what an SDK client does on its own
    forgotten = _CookieSetter()
    async with forget_cookies(httpx.AsyncClient(transport=httpx.MockTransport(forgotten))) as http:
        await _two_calls(http)
    assert forgotten.cookies == [None, None]


async def test_the_gateways_provider_clients_keep_no_cookie() -> None:
    deployments, origins = DeploymentClients(), OriginClients()
    plain = {"model": "openai/m", "api_base": BASE}
    deployment_client = deployments.for_call(plain, "openai/m", "sk-a", 0)
    origin_client = origins.for_call("openai/m", BASE, "sk-a", max_retries=0)
    request = httpx.Request("POST", f"{BASE}/chat/completions")
    answer = httpx.Response(200, headers={"set-cookie": "affinity=project-a; Path=/"}, request=request)
    for client in (deployment_client, origin_client):
        assert isinstance(client, DirectOpenAI)
        client._client.cookies.extract_cookies(answer)
        assert not client._client.cookies
    await deployments.aclose()
    await origins.aclose()


async def test_the_request_url_follows_the_base_url() -> None:
    recorder = _Recorder()
    async with httpx.AsyncClient(transport=httpx.MockTransport(recorder)) as http:
        client = DirectOpenAI(api_key="sk-a", base_url=BASE, http_client=http, max_retries=0)
        messages = [{"role": "user", "content": "hi"}]
        await client.chat.completions.create(model="m", messages=messages)
        await client.chat.completions.create(model="m", messages=messages)
        client.base_url = "http://other.test/api/v2"
        await client.chat.completions.create(model="m", messages=messages)
    assert [str(r.url) for r in recorder.requests] == [
        f"{BASE}/chat/completions",
        f"{BASE}/chat/completions",
        "http://other.test/api/v2/chat/completions",
    ]
