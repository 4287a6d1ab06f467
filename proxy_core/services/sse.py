"""Server-sent-event framing of chat-completion streams, as OpenAI clients parse them.

A failure after the first byte cannot change the HTTP status any more, so it is sent in-band as
``data: {"error": {...}}`` — the ``openai`` SDK raises ``APIError`` on such an event — and the
stream still ends with ``data: [DONE]``.
"""

from __future__ import annotations

from typing import Any

import orjson

from proxy_core.errors import GatewayError

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def data_frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_frame(error: GatewayError) -> bytes:
    body = error.to_body()
    body["error"]["status_code"] = error.status_code
    return data_frame(body)
