"""An ``AsyncOpenAI`` whose chat completions skip the SDK's parameter transform.

``AsyncCompletions.create`` walks every parameter against its ``TypedDict`` annotations before
sending it (``async_maybe_transform``): about 0.4 ms of CPU for a two-message chat, on every call
LiteLLM makes through the OpenAI SDK. For chat parameters the walk changes nothing that reaches
the wire when they are plain JSON values (they have no aliased or formatted fields); it exists for
pydantic models and other Python objects, which it dumps. So a body that is plain JSON (orjson can
encode it) is posted as it is, through the same ``_post`` with the same options as the SDK's own
``create``; anything else goes through the SDK's ``create`` unchanged.

LiteLLM accepts such a client as its ``client`` argument (it checks ``isinstance(…, AsyncOpenAI)``)
and calls ``chat.completions.with_raw_response.create``, which wraps the method defined here; of the
parsed answer it only calls ``model_dump()``, which ``ChatCompletionAnswer`` serves without building
the SDK's model when it can (``openai_answer``).

Two more per-call costs of the SDK go with it: the request URL is parsed and joined to the base URL
on every call (kept here per path, as ``httpx.URL`` is immutable), and the HTTP client's cookie jar
parses every answer for ``Set-Cookie`` and would send what it stored with later calls. A gateway's
provider clients are shared by every project and user, so what one call's answer set must never
ride along with another's: ``forget_cookies`` makes a client's jar keep nothing.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from functools import cached_property
from typing import Any

import httpx
import orjson
from openai import AsyncOpenAI, AsyncStream
from openai._base_client import make_request_options
from openai._types import NOT_GIVEN, NotGiven, Omit
from openai.resources.chat import AsyncChat
from openai.resources.chat.completions import AsyncCompletions
from openai.types.chat import ChatCompletionChunk

from proxy_core.adapters.openai_answer import ChatCompletionAnswer

# Paths a client keeps prepared URLs for: the few endpoints LiteLLM calls, with room to spare.
MAX_PREPARED_URLS = 32


def _is_plain_json(body: dict[str, Any]) -> bool:
    try:
        orjson.dumps(body)
    except TypeError:
        return False
    return True


class DirectCompletions(AsyncCompletions):
    """``create`` posts a plain-JSON body as given; anything else takes the SDK's own path."""

    async def create(  # type: ignore[override]
        self,
        *,
        extra_headers: dict[str, str] | None = None,
        extra_query: dict[str, object] | None = None,
        extra_body: object | None = None,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,  # noqa: ASYNC109 - the SDK's signature
        **params: Any,
    ) -> Any:  # a stream, or an answer whose model_dump() is the SDK ChatCompletion's
        body = {key: value for key, value in params.items() if not isinstance(value, NotGiven | Omit)}
        if not _is_plain_json(body):
            return await super().create(
                extra_headers=extra_headers, extra_query=extra_query, extra_body=extra_body, timeout=timeout, **params
            )
        stream = bool(body.get("stream"))
        return await self._post(
            "/chat/completions",
            body=body,
            options=make_request_options(
                extra_headers=extra_headers,
                extra_query=extra_query,
                extra_body=extra_body,
                timeout=timeout,
                security={"bearer_auth": True},
            ),
            cast_to=ChatCompletionAnswer,
            stream=stream,
            stream_cls=AsyncStream[ChatCompletionChunk],
        )


class _DirectChat(AsyncChat):
    @cached_property
    def completions(self) -> AsyncCompletions:
        return DirectCompletions(self._client)


class _NoCookies(httpx.Cookies):
    """A jar that stores nothing from an answer, so an HTTP client sends no cookie it was given."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


def forget_cookies(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """Make ``client`` keep no cookie from its answers (its ``cookies`` setter would copy the jar
    into a plain one, so the jar is replaced where the client keeps it)."""
    client._cookies = _NoCookies()
    return client


class DirectOpenAI(AsyncOpenAI):
    """``AsyncOpenAI`` with ``chat.completions`` served by ``DirectCompletions``."""

    @cached_property
    def chat(self) -> AsyncChat:
        return _DirectChat(self)

    @cached_property
    def _prepared_urls(self) -> dict[str, tuple[httpx.URL, httpx.URL]]:
        return {}

    def _prepare_url(self, url: str) -> httpx.URL:
        """The SDK's own join of ``url`` to the base URL, kept per path while the base URL stays."""
        prepared = self._prepared_urls.get(url)
        if prepared is not None and prepared[0] is self._base_url:
            return prepared[1]
        result = super()._prepare_url(url)
        if len(self._prepared_urls) < MAX_PREPARED_URLS:
            self._prepared_urls[url] = (self._base_url, result)
        return result

    @property
    def user_agent(self) -> str:
        """The SDK's own (it names the class): providers see the same client as before."""
        return f"AsyncOpenAI/Python {self._version}"


class DirectClients:
    """``DirectOpenAI`` clients kept per (base URL, key, retries), the least recently used dropped
    past ``limit``. They share the HTTP client they are made with and own nothing to close."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._clients: OrderedDict[tuple[str, str, int], DirectOpenAI] = OrderedDict()

    def get(
        self, api_base: str, api_key: str, max_retries: int, http_client: Callable[[], httpx.AsyncClient | None]
    ) -> DirectOpenAI:
        """The client for these settings; a new one over ``http_client()`` when none is kept."""
        key = (api_base, api_key, max_retries)
        client = self._clients.get(key)
        if client is None:
            http = http_client()
            client = DirectOpenAI(api_key=api_key, base_url=api_base, max_retries=max_retries, http_client=http)
            self._clients[key] = client
            if len(self._clients) > self._limit:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(key)
        return client

    def clear(self) -> None:
        self._clients.clear()
