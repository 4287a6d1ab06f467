"""A bound on the requests one process serves at once (``MAX_CONCURRENT_REQUESTS``).

Without it every request that arrives is taken: under a burst larger than the providers can
absorb, each waiting request holds its body, its parsed messages and its provider call, and
memory grows until the process is killed, failing every request it held. Past the limit a
request is answered at once with a 503 ``server_overloaded`` in the OpenAI shape and
``Retry-After: 1``, which the OpenAI and Anthropic SDKs retry by themselves, on this instance
or, behind a load balancer, another.

A request counts from the moment the application receives its head until its answer is sent,
the last chunk of a stream included. Liveness, readiness and the metrics scrape are never
refused: they cost microseconds, and an orchestrator that cannot reach them would restart or
unlist an instance that is only busy, moving its load onto the others.

uvicorn's own ``limit_concurrency`` is not used: it counts open connections as well as requests,
so a client's idle keep-alive pool would use up the limit, and it answers in plain text.
"""

from __future__ import annotations

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from proxy_core.errors import ServerOverloadedError

# Probes and the scrape: always answered (module docstring).
UNLIMITED_PATHS = frozenset({"/health", "/v1/health", "/ready", "/v1/ready", "/metrics"})


class ConcurrencyLimit:
    """ASGI middleware: at most ``limit`` requests in flight (outside ``UNLIMITED_PATHS``)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        if limit < 1:
            raise ValueError("the concurrency limit must be at least 1")
        self._app = app
        self._limit = limit
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNLIMITED_PATHS:
            await self._app(scope, receive, send)
            return
        if self.in_flight >= self._limit:
            await self._refuse(send)
            return
        self.in_flight += 1
        try:
            await self._app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _refuse(self, send: Send) -> None:
        error = ServerOverloadedError(
            f"The gateway is serving its limit of {self._limit} concurrent requests; retry shortly."
        )
        body = orjson.dumps(error.to_body())
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode("ascii"))]
        headers += [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in error.headers.items()]
        await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body})
