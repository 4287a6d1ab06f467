"""What differs between the endpoints the pipeline serves: everything else is shared.

Every endpoint goes through the same ``CompletionService`` pipeline (authorise, parse, sanitize,
govern, insertion id, tags, store check, call, record, respond or stream). An ``EndpointSpec``
names only its differences: how its body is checked and split, how its text is redacted, how its
stream is framed, and which of chat's extras apply to it (managed prompts, which prepend chat
messages; the response cache; the hidden usage chunk of a stream).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from proxy_core.services import sse
from proxy_core.services.chat_request import ChatRequest, parse_chat_request
from proxy_core.services.endpoint_requests import (
    parse_embeddings_request,
    parse_messages_request,
    parse_responses_request,
    parse_text_completion_request,
)
from proxy_core.services.llm import Operation
from proxy_core.services.pii import redact_chat_body
from proxy_core.services.pii.endpoints import redact_messages_body, redact_responses_body
from proxy_core.services.sanitizer import BodyWalk


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    operation: Operation
    parse: Callable[[dict[str, Any]], ChatRequest]
    redaction: BodyWalk
    framing: sse.StreamFraming
    managed_prompts: bool = False
    cached: bool = False
    # The stream's usage comes in a final chunk only when asked for (chat, text completions).
    asks_stream_usage: bool = False

    def trace_user(self, request: ChatRequest) -> str | None:
        """The body's user for the trace: ``user``, or Anthropic's ``metadata.user_id``."""
        user = request.params.get("user")
        if user is None and self.operation is Operation.MESSAGES:
            user = (request.params.get("metadata") or {}).get("user_id")
        return user if isinstance(user, str) else None


CHAT = EndpointSpec(
    Operation.CHAT,
    parse_chat_request,
    redact_chat_body,
    sse.CHAT_FRAMING,
    managed_prompts=True,
    cached=True,
    asks_stream_usage=True,
)
RESPONSES = EndpointSpec(Operation.RESPONSES, parse_responses_request, redact_responses_body, sse.RESPONSES_FRAMING)
EMBEDDINGS = EndpointSpec(Operation.EMBEDDINGS, parse_embeddings_request, redact_chat_body, sse.CHAT_FRAMING)
TEXT_COMPLETION = EndpointSpec(
    Operation.TEXT_COMPLETION,
    parse_text_completion_request,
    redact_chat_body,
    sse.CHAT_FRAMING,
    asks_stream_usage=True,
)
MESSAGES = EndpointSpec(Operation.MESSAGES, parse_messages_request, redact_messages_body, sse.MESSAGES_FRAMING)
