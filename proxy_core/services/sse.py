"""Server-sent-event framing of streams, as each endpoint's official client parses them.

A failure after the first byte cannot change the HTTP status any more, so it is sent in-band and
the stream still ends the way its protocol ends:

* chat and text completions: ``data: {…}`` frames; an error is ``data: {"error": {...}}`` (the
  ``openai`` SDK raises ``APIError`` on it) and the stream ends with ``data: [DONE]``;
* Responses: ``event: <type>`` frames; an error is the API's ``error`` event, which also carries
  the ``error`` object so that the ``openai`` SDK raises ``APIError`` on it;
* Anthropic messages: ``event: <type>`` frames; an error is Anthropic's ``error`` event
  (``{"type": "error", "error": {"type", "message"}}``), which the ``anthropic`` SDK raises.

``terminal`` names the events after which a client takes the call as done (``response.completed``,
``message_stop``): the insertion id is recorded before one is sent, as before ``[DONE]``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from proxy_core.errors import GatewayError

DONE = b"data: [DONE]\n\n"
MEDIA_TYPE = "text/event-stream"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

# Anthropic's error types by status (its API's documented set); other statuses are
# ``invalid_request_error`` below 500 and ``api_error`` from 500.
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def data_frame(payload: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


def error_frame(error: GatewayError, _sent: int = 0) -> bytes:
    body = error.to_body()
    body["error"]["status_code"] = error.status_code
    return data_frame(body)


def event_frame(payload: dict[str, Any]) -> bytes:
    """A typed event: ``event: <type>`` then its data (Responses, Anthropic messages)."""
    return b"event: " + str(payload.get("type", "message")).encode() + b"\n" + data_frame(payload)


def responses_error_frame(error: GatewayError, sent: int) -> bytes:
    body = error.to_body()["error"]
    body["status_code"] = error.status_code
    event = {
        "type": "error",
        "sequence_number": sent,
        "code": error.code,
        "message": error.message,
        "param": error.param,
        "error": body,
    }
    return event_frame(event)


def anthropic_error_body(error: GatewayError) -> dict[str, Any]:
    """The Anthropic error shape, keeping the gateway's ``code`` and ``param`` beside its fields."""
    inner = error.to_body()["error"]
    fallback = "invalid_request_error" if error.status_code < 500 else "api_error"
    inner["type"] = ANTHROPIC_ERROR_TYPES.get(error.status_code, fallback)
    return {"type": "error", "error": inner}


def anthropic_error_frame(error: GatewayError, _sent: int = 0) -> bytes:
    return event_frame(anthropic_error_body(error))


@dataclass(frozen=True, slots=True)
class StreamFraming:
    """How one endpoint's stream is written: its frames, its in-band error, its end."""

    frame: Callable[[dict[str, Any]], bytes]
    # (error, the next frame's number: frames sent, or one past the last ``sequence_number``)
    error: Callable[[GatewayError, int], bytes]
    done: bytes = b""
    terminal: frozenset[str] = frozenset()


CHAT_FRAMING = StreamFraming(data_frame, error_frame, DONE)
RESPONSES_FRAMING = StreamFraming(
    event_frame, responses_error_frame, terminal=frozenset({"response.completed", "response.incomplete"})
)
MESSAGES_FRAMING = StreamFraming(event_frame, anthropic_error_frame, terminal=frozenset({"message_stop"}))
