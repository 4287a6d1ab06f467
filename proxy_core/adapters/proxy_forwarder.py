"""The catch-all's transport: one pooled ``httpx`` client to the LiteLLM proxy server.

Requests and responses are streamed both ways (a multipart upload is not held in memory; a
streamed completion reaches the client as the proxy writes it), and the body goes back raw:
as the proxy encoded it, with its own ``Content-Encoding``. Redirects are answered as they are
(the client decides whether to follow them), never followed here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from proxy_core.errors import UpstreamError, UpstreamTimeoutError
from proxy_core.services.forwarding import ForwardedResponse, Headers, response_headers


class HttpxProxyTransport:
    def __init__(self, base_url: str, timeout_s: float) -> None:
        self._base_url = base_url
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            follow_redirects=False,
        )

    async def send(
        self, method: str, path_and_query: str, headers: Headers, body: AsyncIterator[bytes]
    ) -> ForwardedResponse:
        request = self._client.build_request(
            method, self._base_url + path_and_query, headers=list(headers), content=body
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeoutError("The LiteLLM proxy did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(
                f"The LiteLLM proxy could not be reached ({type(exc).__name__}).", code="upstream_unreachable"
            ) from exc
        return ForwardedResponse(
            response.status_code, response_headers(response.headers.multi_items()), _body(response)
        )

    async def aclose(self) -> None:
        await self._client.aclose()


async def _body(response: httpx.Response) -> AsyncIterator[bytes]:
    try:
        async for chunk in response.aiter_raw():
            yield chunk
    except httpx.HTTPError:
        return  # the proxy broke off: the client sees the body end early, as the proxy sent it
    finally:
        await response.aclose()
