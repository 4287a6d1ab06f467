"""Provider clients for client-chosen upstreams (``encoded_base_url``) that never follow a redirect.

LiteLLM's own provider clients follow redirects: the OpenAI SDK's is built with
``follow_redirects=True``, and so is LiteLLM's ``AsyncHTTPHandler``. For an upstream the server
configured that is a matter of trust. For one a client chose, a redirect would carry the call past
the ``ALLOWED_BASE_URLS`` check to any address, and the answer from there back to the client. So
a call to a client-chosen upstream gets a client of the gateway's own, passed as LiteLLM's
``client`` argument. Its connections also resolve through ``AddressCheckingResolver``, so an
address the ``encoded_base_url`` policy refuses is refused again when the connection is opened: a
DNS answer that changed after the policy's check (rebinding) is never used.

Which type that client must be depends on the LiteLLM handler that serves the provider: the
OpenAI-SDK handler uses an ``AsyncOpenAI`` as given, the shared HTTP handler an
``AsyncHTTPHandler`` (and silently makes its own for anything else). A provider in neither list
below is refused for client-chosen upstreams rather than sent with a client that would follow.
"""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable, Sequence

import litellm
from aiohttp import ClientSession, DummyCookieJar, TCPConnector, ThreadedResolver
from aiohttp.abc import AbstractResolver, ResolveResult
from litellm.constants import (
    AIOHTTP_CONNECTOR_LIMIT,
    AIOHTTP_CONNECTOR_LIMIT_PER_HOST,
    AIOHTTP_KEEPALIVE_TIMEOUT,
    AIOHTTP_TTL_DNS_CACHE,
)
from litellm.llms.custom_httpx.aiohttp_transport import LiteLLMAiohttpTransport
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler, build_aiohttp_keepalive_socket_factory

from proxy_core.adapters.openai_direct import DirectClients, DirectOpenAI, forget_cookies
from proxy_core.errors import InvalidRequestError, NotFoundError

AddressCheck = Callable[[str, Sequence[str]], bool]  # (host, its addresses) -> True: refused

# LiteLLM 1.106.2's dispatch: these providers reach ``openai_chat_completions`` with the client as
# an ``AsyncOpenAI``; the ones below reach ``base_llm_http_handler`` with it as an ``AsyncHTTPHandler``.
OPENAI_SDK_PROVIDERS = frozenset({"openai", "custom_openai"})
HTTP_HANDLER_PROVIDERS = frozenset({"fireworks_ai", "together_ai", "groq", "xai", "deepseek", "hosted_vllm"})
SUPPORTED_PROVIDERS = OPENAI_SDK_PROVIDERS | HTTP_HANDLER_PROVIDERS
MAX_CACHED_SDK_CLIENTS = 256
_AIOHTTP_DEFAULT_LIMIT = 100  # what aiohttp (and so LiteLLM) uses when no limit is configured


@functools.lru_cache(maxsize=1024)  # LiteLLM's lookup of a bare model name scans its model lists
def provider_of(model: str, api_base: str | None) -> str:
    """The LiteLLM provider that will serve ``model`` at ``api_base``; raises as LiteLLM does."""
    return str(litellm.get_llm_provider(model=model, api_base=api_base)[1])


def provider_of_model(model: str, api_base: str | None) -> str:
    """The provider of a model string passed through the wildcard; 404 (as a call would answer)
    when LiteLLM cannot tell one from it."""
    try:
        return provider_of(model, api_base)
    except (litellm.BadRequestError, ValueError):
        raise NotFoundError(
            f"The model {model!r} names no provider: use '<provider>/<model>', for example 'openai/gpt-4o-mini'.",
            param="model",
            code="model_not_found",
        ) from None


class AddressCheckingResolver(AbstractResolver):
    """Resolves as aiohttp does, then refuses a host whose addresses ``refuses`` says no to.

    aiohttp asks it only for names (an address literal was checked as written), and caches what
    it returns, which has passed the check.
    """

    def __init__(self, refuses: AddressCheck, inner: AbstractResolver | None = None) -> None:
        self._refuses = refuses
        self._inner = inner

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if self._inner is None:  # made here: it binds the running event loop
            self._inner = ThreadedResolver()
        results = await self._inner.resolve(host, port, family)
        if self._refuses(host, [result["host"] for result in results]):
            raise OSError(f"{host} resolves to an address the gateway does not connect to")
        return results

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()


class OriginClients:
    """One non-following HTTP client for every client-chosen upstream, and SDK clients over it.

    An ``AsyncOpenAI`` carries its base URL and key, so one is kept per (base URL, key, retries),
    at most ``MAX_CACHED_SDK_CLIENTS``; they share the one HTTP connection pool and own nothing
    that needs closing. Everything is made on first use, inside the running event loop.
    ``refuses`` is the address rule of the ``encoded_base_url`` policy (None: no address refused);
    ``resolver`` replaces the system's name lookup under it (tests).
    """

    def __init__(self, refuses: AddressCheck | None = None, resolver: AbstractResolver | None = None) -> None:
        self._refuses = refuses or (lambda _host, _addresses: False)
        self._resolver = resolver
        self._handler: AsyncHTTPHandler | None = None
        self._sdk_clients = DirectClients(MAX_CACHED_SDK_CLIENTS)

    def _session(self) -> ClientSession:
        """LiteLLM's own connection settings (pool limits, keep-alive, DNS cache, TCP keep-alive
        probes), with the checking resolver: a chosen upstream is served like any other."""
        connector = TCPConnector(
            resolver=AddressCheckingResolver(self._refuses, self._resolver),
            keepalive_timeout=AIOHTTP_KEEPALIVE_TIMEOUT,
            ttl_dns_cache=AIOHTTP_TTL_DNS_CACHE,
            limit=AIOHTTP_CONNECTOR_LIMIT if AIOHTTP_CONNECTOR_LIMIT > 0 else _AIOHTTP_DEFAULT_LIMIT,
            limit_per_host=max(AIOHTTP_CONNECTOR_LIMIT_PER_HOST, 0),
            socket_factory=build_aiohttp_keepalive_socket_factory(),
        )
        return ClientSession(connector=connector, cookie_jar=DummyCookieJar())

    def http_handler(self) -> AsyncHTTPHandler:
        """The non-following HTTP handler itself (LiteLLM's Responses and messages handlers take it)."""
        return self._http()

    def _http(self) -> AsyncHTTPHandler:
        if self._handler is None:
            transport = LiteLLMAiohttpTransport(client=self._session)
            self._handler = AsyncHTTPHandler(follow_redirects=False, transport=transport)
            forget_cookies(self._handler.client)  # LiteLLM's jar stores none either, but parses every answer
        return self._handler

    def for_call(self, model: str, api_base: str, api_key: str, *, max_retries: int) -> object:
        """The ``client`` argument for a call of ``model`` to the client-chosen ``api_base``."""
        provider = provider_of(model, api_base)
        if provider in HTTP_HANDLER_PROVIDERS:
            return self._http()
        if provider in OPENAI_SDK_PROVIDERS:
            return self._sdk_client(api_base, api_key, max_retries)
        supported = ", ".join(sorted(SUPPORTED_PROVIDERS))
        raise InvalidRequestError(
            f"Models of provider {provider!r} cannot be sent to an encoded_base_url; use one of: {supported}.",
            param="model",
            code="base_url_provider_unsupported",
        )

    def _sdk_client(self, api_base: str, api_key: str, max_retries: int) -> DirectOpenAI:
        # chat parameters sent without the SDK's transform (``openai_direct``), over the one pool
        return self._sdk_clients.get(api_base, api_key, max_retries, lambda: self._http().client)

    async def aclose(self) -> None:
        self._sdk_clients.clear()
        if self._handler is not None:
            await self._handler.close()
            self._handler = None
