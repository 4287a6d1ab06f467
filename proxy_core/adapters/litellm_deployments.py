"""SDK clients of the gateway's own for the catalogue's OpenAI-SDK deployments.

LiteLLM serves ``openai/…`` and ``custom_openai/…`` models through the OpenAI SDK, with an
``AsyncOpenAI`` it builds and caches itself, whose ``chat.completions.create`` spends about 0.4 ms
of CPU per call transforming parameters that are already plain JSON. Given a client as its
``client`` argument, LiteLLM uses that one instead; the gateway passes a ``DirectOpenAI``
(``openai_direct``), built as LiteLLM builds its own: the deployment's base URL and key, the call's
retries, and LiteLLM's own HTTP client (its transport, TLS and proxy settings, redirects followed).

Only a deployment that names nothing else a client is built from gets one: LiteLLM resolves a
missing base URL or key from its globals and the environment, and options such as an
organisation shape the client, so any such deployment keeps LiteLLM's own client.

Responses and Anthropic messages to such a deployment go out through LiteLLM's HTTP handler. Left
to itself, LiteLLM takes that handler from its module-wide client cache, keyed without the event
loop (the handler is chosen on an executor thread, where none runs), and closes it only when the
cache evicts it: connections outlive the server that opened them. The gateway passes one handler
of its own instead, made in the running loop and closed at shutdown.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from litellm.llms.custom_httpx.http_handler import AsyncHTTPHandler
from litellm.llms.openai.openai import OpenAIChatCompletion

from proxy_core.adapters.litellm_origin import OPENAI_SDK_PROVIDERS, provider_of
from proxy_core.adapters.openai_direct import DirectClients, forget_cookies

# Deployment parameters that leave the SDK client as base URL, key and retries make it.
PLAIN_DEPLOYMENT_KEYS = frozenset(
    {"model", "api_base", "api_key", "timeout", "stream_timeout", "max_retries", "rpm", "tpm", "drop_params"}
)
MAX_CACHED_CLIENTS = 256


class DeploymentClients:
    """A ``DirectOpenAI`` per (base URL, key, retries), at most ``MAX_CACHED_CLIENTS``, over one
    HTTP client made on first use and closed at shutdown."""

    def __init__(self) -> None:
        self._http: httpx.AsyncClient | None = None
        self._handler: AsyncHTTPHandler | None = None
        self._clients = DirectClients(MAX_CACHED_CLIENTS)

    def for_call(self, deployment: Mapping[str, Any], model: str, api_key: object, max_retries: int) -> object | None:
        """The ``client`` argument for a call of ``model`` to ``deployment``, or None for LiteLLM's own.

        ``api_key`` is the key the call carries (the deployment's, or the client's own).
        """
        api_base = deployment.get("api_base")
        if not isinstance(api_base, str) or not api_base or not isinstance(api_key, str) or not api_key:
            return None
        if not PLAIN_DEPLOYMENT_KEYS.issuperset(deployment) or provider_of(model, api_base) not in OPENAI_SDK_PROVIDERS:
            return None
        return self._clients.get(api_base, api_key, max_retries, self._http_client)

    def http_handler_for(self, deployment: Mapping[str, Any], model: str) -> AsyncHTTPHandler | None:
        """The ``client`` argument of a Responses or messages call to ``deployment``, or None for
        LiteLLM's own (a deployment that sets anything the handler is built from, such as
        ``ssl_verify``, or a provider LiteLLM does not serve through the handler)."""
        api_base = deployment.get("api_base")
        if not isinstance(api_base, str) or not api_base or not PLAIN_DEPLOYMENT_KEYS.issuperset(deployment):
            return None
        if provider_of(model, api_base) not in OPENAI_SDK_PROVIDERS:
            return None
        if self._handler is None:
            self._handler = AsyncHTTPHandler()
            forget_cookies(self._handler.client)
        return self._handler

    def _http_client(self) -> httpx.AsyncClient | None:
        """LiteLLM's own HTTP client for its OpenAI SDK clients, made once (None: the SDK makes one),
        keeping no provider cookie (``forget_cookies``)."""
        if self._http is None:
            made = OpenAIChatCompletion._get_async_http_client()
            self._http = forget_cookies(made) if made is not None else None
        return self._http

    async def aclose(self) -> None:
        self._clients.clear()
        if self._handler is not None:
            await self._handler.close()
            self._handler = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None
