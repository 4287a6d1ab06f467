"""The catch-all: any path the gateway does not serve is forwarded to a LiteLLM proxy server.

The original gateway forwarded every unknown path to LiteLLM's server; with ``LITELLM_PROXY_URL``
set, this one does too: the method, path and query as received, the body byte for byte
(multipart included), and the proxy's status, ``Content-Type`` and body back unchanged, streamed
as they come. Forwarded calls are not rollout-tracked and not traced by the gateway.

Keys: without gateway authentication the client's own bearer goes to the proxy as it is (as a
provider key does on the tracked routes). With it, the caller must present a valid gateway key
(401 otherwise, nothing forwarded), and the proxy receives ``LITELLM_PROXY_API_KEY`` instead: a
gateway key never leaves the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from proxy_core.services.auth import AuthProvider

# Hop-by-hop headers (RFC 9110 §7.6.1) and those the connection to the proxy sets for itself.
HOP_BY_HOP = frozenset(
    {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
        "host", "proxy-authorization", "proxy-authenticate",
    }
)  # fmt: skip
CREDENTIAL_HEADERS = frozenset({"authorization", "x-api-key"})

Headers = Sequence[tuple[str, str]]


@dataclass(slots=True)
class ForwardedResponse:
    """The proxy's answer: status and headers now, the body as it arrives (``aclose`` when done)."""

    status: int
    headers: list[tuple[str, str]]
    body: AsyncIterator[bytes]


class ProxyTransport(Protocol):
    """Sends one request to the proxy; connection failures are ``UpstreamError``s."""

    async def send(
        self, method: str, path_and_query: str, headers: Headers, body: AsyncIterator[bytes]
    ) -> ForwardedResponse: ...


class ForwardingService:
    def __init__(self, transport: ProxyTransport, auth: AuthProvider, proxy_api_key: str | None) -> None:
        self._transport = transport
        self._auth = auth
        self._proxy_api_key = proxy_api_key

    async def forward(
        self,
        method: str,
        path_and_query: str,
        headers: Mapping[str, str],
        raw_headers: Headers,
        body: AsyncIterator[bytes],
    ) -> ForwardedResponse:
        """Forward one request; ``raw_headers`` as received (repeated names kept), ``headers`` to read them."""
        sent = [(name, value) for name, value in raw_headers if name.lower() not in HOP_BY_HOP]
        if not self._auth.forwards_client_key:
            await self._auth.authenticate(headers)  # 401 before anything is sent
            sent = [(name, value) for name, value in sent if name.lower() not in CREDENTIAL_HEADERS]
            if self._proxy_api_key is not None:
                sent.append(("authorization", f"Bearer {self._proxy_api_key}"))
        return await self._transport.send(method, path_and_query, sent, body)


def response_headers(headers: Headers) -> list[tuple[str, str]]:
    """The proxy's headers a client may receive (the connection's own are the gateway's)."""
    return [(name, value) for name, value in headers if name.lower() not in HOP_BY_HOP | {"content-length"}]
