"""The catch-all route: a path the gateway does not serve, forwarded to the LiteLLM proxy as it came."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import Request
from starlette.requests import ClientDisconnect
from starlette.responses import Response, StreamingResponse

from proxy_core.api.disconnect import ClientDisconnectedError
from proxy_core.services.forwarding import ForwardingService


async def _request_body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for chunk in request.stream():
            if chunk:
                yield chunk
    except ClientDisconnect:
        raise ClientDisconnectedError("The client went away before sending its whole request.") from None


async def handle_forward(request: Request, forwarding: ForwardingService) -> Response:
    """Method, raw path and raw query as received; the proxy's status, headers and body streamed back."""
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    path_and_query = raw_path.decode("latin-1") + ("?" + query.decode("latin-1") if query else "")
    raw_headers = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers.raw]
    forwarded = await forwarding.forward(
        request.method, path_and_query, request.headers, raw_headers, _request_body(request)
    )
    response = StreamingResponse(forwarded.body, status_code=forwarded.status)
    response.raw_headers = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in forwarded.headers]
    return response
