"""Client-chosen upstreams get the gateway's own non-following client, of the type LiteLLM uses."""

from __future__ import annotations

import base64
import socket
from typing import Any

import openai
import pytest
from aiohttp.abc import AbstractResolver
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler

from proxy_core.adapters import litellm_origin
from proxy_core.adapters.litellm_origin import AddressCheckingResolver, OriginClients
from proxy_core.errors import InvalidRequestError
from proxy_core.services.addresses import AddressRule
from proxy_core.services.base_url import BaseUrlPolicy
from tests.fakes.server import ServerThread

BASE = "http://127.0.0.1:9/v1"


async def test_each_provider_family_gets_its_client_type_and_none_follows() -> None:
    origins = OriginClients()
    sdk = origins.for_call("openai/m", BASE, "sk-a", max_retries=0)
    handler = origins.for_call("fireworks_ai/accounts/fireworks/models/m", BASE, "sk-a", max_retries=0)
    assert isinstance(sdk, openai.AsyncOpenAI)
    assert isinstance(handler, AsyncHTTPHandler)
    assert str(sdk.base_url).rstrip("/") == BASE
    assert sdk.api_key == "sk-a"
    assert handler.client.follow_redirects is False
    assert sdk._client is handler.client  # one connection pool for every chosen upstream
    await origins.aclose()


async def test_sdk_clients_are_kept_per_origin_and_key_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(litellm_origin, "MAX_CACHED_SDK_CLIENTS", 2)
    origins = OriginClients()
    first = origins.for_call("openai/m", BASE, "sk-a", max_retries=0)
    assert origins.for_call("openai/m", BASE, "sk-a", max_retries=0) is first
    assert origins.for_call("openai/m", BASE, "sk-b", max_retries=0) is not first
    origins.for_call("openai/m", f"{BASE}/x", "sk-a", max_retries=0)
    origins.for_call("openai/m", BASE, "sk-c", max_retries=0)
    assert origins.for_call("openai/m", BASE, "sk-a", max_retries=0) is not first  # evicted, made anew
    await origins.aclose()


def test_another_provider_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as info:
        OriginClients().for_call("anthropic/claude-x", BASE, "sk-a", max_retries=0)
    assert (info.value.param, info.value.code) == ("model", "base_url_provider_unsupported")


class _FixedResolver(AbstractResolver):
    """Answers from a table, as a DNS server that can be told anything would."""

    def __init__(self, table: dict[str, str]) -> None:
        self.table = table

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[Any]:
        address = self.table[host]
        return [{"hostname": host, "host": address, "port": port, "family": family, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        return None


async def test_the_resolver_refuses_a_name_with_any_refused_address() -> None:
    rule = AddressRule(["ok.localhost"])
    resolver = AddressCheckingResolver(rule, _FixedResolver({"ok.localhost": "127.0.0.1"}))
    assert [r["host"] for r in await resolver.resolve("ok.localhost", 80)] == ["127.0.0.1"]
    for address in ("169.254.169.254", "fd00:ec2::254", "0.0.0.0", "127.0.0.1", "10.0.0.5", "::ffff:10.0.0.5"):
        resolver = AddressCheckingResolver(rule, _FixedResolver({"x.test": address}))
        with pytest.raises(OSError, match="does not connect to"):
            await resolver.resolve("x.test", 80)


def _refused_by_the_check(exc: BaseException) -> bool:
    """The connection error was the resolver's refusal (aiohttp keeps it as ``os_error``)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = getattr(current, "os_error", None) or current.__cause__ or current.__context__
    return any("does not connect to" in str(error) for error in seen)


def _counting_app(hits: list[str]) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        hits.append(scope["path"])
        headers = [(b"content-type", b"application/json")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"{}"})

    return app


async def test_a_name_rebound_after_the_policy_check_is_not_connected_to() -> None:
    hits: list[str] = []
    # Both names lead to the same listener's port; the second is "rebound" to a metadata address.
    table = {"ok.localhost": "127.0.0.1", "rebound.test": "169.254.169.254"}
    origins = OriginClients(AddressRule(["ok.localhost"]), _FixedResolver(table))
    with ServerThread(_counting_app(hits)) as server:
        ok, rebound = (f"http://{name}:{server.port}/v1" for name in ("ok.localhost", "rebound.test"))
        try:
            handler = origins.for_call("fireworks_ai/accounts/fireworks/models/m", ok, "sk-a", max_retries=0)
            assert isinstance(handler, AsyncHTTPHandler)
            assert (await handler.post(f"{ok}/chat/completions", json={})).status_code == 200
            with pytest.raises(Exception, match=r"Cannot connect to host rebound\.test") as refused:
                await handler.post(f"{rebound}/chat/completions", json={})
            assert _refused_by_the_check(refused.value)
            sdk = origins.for_call("openai/m", rebound, "sk-a", max_retries=0)
            assert isinstance(sdk, openai.AsyncOpenAI)
            with pytest.raises(openai.APIConnectionError) as refused_sdk:
                await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert _refused_by_the_check(refused_sdk.value)
        finally:
            await origins.aclose()
    assert hits == ["/v1/chat/completions"]


class _ChangingDns:
    """A DNS server under an attacker's control: one answer for the check, another for the connection."""

    def __init__(self, first: str, then: str) -> None:
        self.answers = [first, then]

    async def for_the_check(self, host: str, port: int) -> list[str]:
        return [self.answers[0]]

    def for_the_connection(self) -> _FixedResolver:
        return _FixedResolver({"models.example.com": self.answers[1]})


@pytest.mark.parametrize("private", ["127.0.0.1", "::ffff:127.0.0.1"])
async def test_an_answer_changed_to_a_private_address_after_the_check_is_refused_at_connect_time(
    private: str,
) -> None:
    """The policy passes a public answer; the connection's own lookup gets a private one (where a
    server really listens) and is refused by the same rule: the listener sees no request."""
    hits: list[str] = []
    dns = _ChangingDns("203.0.113.10", private)
    with ServerThread(_counting_app(hits)) as server:
        base = f"http://models.example.com:{server.port}/v1"
        policy = BaseUrlPolicy((base,), resolver=dns.for_the_check)
        checked = await policy.check(base64.urlsafe_b64encode(base.encode()).decode())
        assert checked == base
        origins = OriginClients(policy.address_rule, dns.for_the_connection())
        try:
            handler = origins.for_call("hosted_vllm/m", checked, "sk-a", max_retries=0)
            assert isinstance(handler, AsyncHTTPHandler)
            with pytest.raises(Exception, match=r"Cannot connect to host models\.example\.com") as refused:
                await handler.post(f"{checked}/chat/completions", json={})
            assert _refused_by_the_check(refused.value)
            sdk = origins.for_call("openai/m", checked, "sk-a", max_retries=0)
            assert isinstance(sdk, openai.AsyncOpenAI)
            with pytest.raises(openai.APIConnectionError) as refused_sdk:
                await sdk.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert _refused_by_the_check(refused_sdk.value)
        finally:
            await origins.aclose()
    assert hits == []
