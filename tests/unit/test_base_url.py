"""The encoded_base_url allow-list: what may become a request's api_base, and what never may."""

from __future__ import annotations

import base64

import pytest

from proxy_core.errors import InvalidRequestError, PermissionDeniedError
from proxy_core.services.base_url import BaseUrlPolicy, decode_base_url


def enc(url: str, *, pad: bool = True) -> str:
    text = base64.urlsafe_b64encode(url.encode()).decode()
    return text if pad else text.rstrip("=")


def resolver(mapping: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    calls: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        calls.append(host)
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    resolve.calls = calls  # type: ignore[attr-defined]
    return resolve


ALLOWED = (
    "http://127.0.0.1:9000/v1",
    "https://models.example.com",
    "http://rebind.example.com/",
    "http://private.example.com/",
    "http://localhost:8000",
)
HOSTS = {
    "127.0.0.1": ["127.0.0.1"],
    "localhost": ["127.0.0.1", "::1"],
    "models.example.com": ["203.0.113.10"],
    "rebind.example.com": ["169.254.169.254"],
    "private.example.com": ["203.0.113.10", "10.0.0.5"],
}


@pytest.mark.parametrize("pad", [True, False])
async def test_allowed_url_is_returned(pad: bool) -> None:
    policy = BaseUrlPolicy(ALLOWED, resolver=resolver(HOSTS))
    assert await policy.check(enc("http://127.0.0.1:9000/v1", pad=pad)) == "http://127.0.0.1:9000/v1"
    assert await policy.check(enc("https://models.example.com/openai/v1")) == "https://models.example.com/openai/v1"
    assert await policy.check(enc("http://localhost:8000/v1")) == "http://localhost:8000/v1"  # named: loopback ok


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9001/v1",  # other port
        "http://127.0.0.1:9000/v10",  # prefix is not a path-segment prefix
        "http://127.0.0.1:9000/",  # above the allowed path
        "https://127.0.0.1:9000/v1",  # other scheme
        "http://evil@127.0.0.1:9000/v1",  # user-info
        "http://127.0.0.1:9000@evil.example/v1",
        "http://127.0.0.1:9000/v1#frag",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "http://169.254.169.254/latest/meta-data/",
        "http://models.example.com.evil.example/",
        "http://rebind.example.com/v1",  # allowed prefix, but resolves to the metadata address
        "http://localhost:9000/v1",  # not literally on the list
        "http://private.example.com/v1",  # a named DNS name may not resolve to a private address
        "http://127.0.0.1:9000/v1/../internal",  # climbs out of the allowed path once normalised
        "http://127.0.0.1:9000/v1/%2e%2e/internal",
        "http://127.0.0.1:9000/v1/%2E%2E",
        "http://127.0.0.1:9000/v1%2f..%2finternal",
        "http://127.0.0.1:9000/v1/..\\internal",
        "http://127.0.0.1:9000/v1/./chat",
    ],
)
async def test_disallowed_urls_are_403(url: str) -> None:
    policy = BaseUrlPolicy(ALLOWED, resolver=resolver(HOSTS))
    with pytest.raises(PermissionDeniedError) as info:
        await policy.check(enc(url))
    assert info.value.param == "encoded_base_url"
    assert info.value.code == "base_url_not_allowed"


async def test_empty_allow_list_refuses_everything() -> None:
    policy = BaseUrlPolicy((), resolver=resolver(HOSTS))
    assert not policy.enabled
    with pytest.raises(PermissionDeniedError):
        await policy.check(enc("http://127.0.0.1:9000/v1"))


@pytest.mark.parametrize("encoded", ["not base64!!", "aHR0cDovL3g/", "aHR0c+Dov", "====", "a", "_-_-_"])
def test_bad_base64_is_400(encoded: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        decode_base_url(encoded)
    assert info.value.code == "invalid_base_url"


def test_non_utf8_is_400() -> None:
    with pytest.raises(InvalidRequestError):
        decode_base_url(base64.urlsafe_b64encode(b"\xff\xfe").decode())


async def test_mapped_and_link_local_addresses_are_refused() -> None:
    hosts = {"v6.example.com": ["::ffff:169.254.169.254"], "ll.example.com": ["fe80::1"]}
    policy = BaseUrlPolicy(("http://v6.example.com", "http://ll.example.com"), resolver=resolver(hosts))
    for url in ("http://v6.example.com/v1", "http://ll.example.com/v1"):
        with pytest.raises(PermissionDeniedError):
            await policy.check(enc(url))


@pytest.mark.parametrize(
    ("address", "kind"),
    [("10.0.0.5", "private"), ("127.0.0.1", "loopback"), ("100.64.0.1", "shared (CGNAT)"), ("fd00::1", "private")],
)
async def test_a_prefix_naming_a_dns_name_does_not_allow_internal_addresses(address: str, kind: str) -> None:
    policy = BaseUrlPolicy(("https://models.example.com",), resolver=resolver({"models.example.com": [address]}))
    with pytest.raises(PermissionDeniedError) as info:
        await policy.check(enc("https://models.example.com/v1"))
    assert info.value.message == f"encoded_base_url is not allowed: its host resolves to a {kind} address."


async def test_the_policy_hands_its_rule_to_the_connect_time_check() -> None:
    policy = BaseUrlPolicy(ALLOWED, resolver=resolver(HOSTS))
    assert not policy.address_rule("127.0.0.1", ["127.0.0.1"])
    assert not policy.address_rule("localhost", ["::1"])
    assert policy.address_rule("models.example.com", ["10.0.0.5"])


def test_invalid_allow_list_entry_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="http"):
        BaseUrlPolicy(("ftp://x",))
