"""A stand-in for a LiteLLM proxy server: records every request exactly as it arrived.

The gateway's catch-all forwards what it does not serve to such a server; this one keeps the
method, the raw path and query, the headers and the body bytes of each request, and answers
with whatever the request asks for through headers: ``x-fake-status`` (the status), and on
``…/stream`` paths two server-sent events, the second sent only once the test has called
``release()``, so a test can see the first arrive before the stream is over.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

Message = MutableMapping[str, Any]
CONTENT_TYPE = b"application/x-fake-proxy; charset=utf-8"


@dataclass(frozen=True)
class ProxiedRequest:
    method: str
    raw_path: bytes
    query: bytes
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


@dataclass
class FakeLiteLLMProxy:
    """The ASGI app; ``requests`` is what it received, in order."""

    requests: list[ProxiedRequest] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        request = ProxiedRequest(scope["method"], scope["raw_path"], scope["query_string"], headers, b"".join(chunks))
        self.requests.append(request)
        status = int(dict(headers).get("x-fake-status", "200"))
        if scope["path"].endswith("/stream"):
            await self._stream(send, status)
            return
        body = b"proxied " + scope["method"].encode() + b" " + scope["raw_path"]
        response_headers = [(b"content-type", CONTENT_TYPE), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
        await send({"type": "http.response.start", "status": status, "headers": response_headers})
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, send: Callable[[Message], Awaitable[None]], status: int) -> None:
        await send(
            {"type": "http.response.start", "status": status, "headers": [(b"content-type", b"text/event-stream")]}
        )
        await send({"type": "http.response.body", "body": b"data: first\n\n", "more_body": True})
        await asyncio.to_thread(self.released.wait, 30)
        await send({"type": "http.response.body", "body": b"data: second\n\n"})
