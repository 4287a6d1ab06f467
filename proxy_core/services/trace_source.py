"""The port through which ``/traces`` reads Langfuse, and the trace shape it returns.

``TraceRecord`` is already the response shape the original gateway's clients parse (the
eval-protocol ``FireworksTracingAdapter`` reads ``id``, ``tags``, ``input``, ``output`` and
``observations``), so the services layer only filters and orders records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from proxy_core.errors import GatewayError
from proxy_core.services.llm import LangfuseTarget
from proxy_core.services.prompts import PromptSource

INSERTION_TAG = "insertion_id:"


@dataclass(slots=True)
class TraceRecord:
    id: str
    name: str | None
    user_id: str | None
    session_id: str | None
    tags: list[str]
    timestamp: str
    input: Any = None
    output: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    environment: str | None = None
    version: str | None = None
    release: str | None = None
    observations: list[dict[str, Any]] = field(default_factory=list)

    def insertion_ids(self) -> set[str]:
        return {tag.removeprefix(INSERTION_TAG) for tag in self.tags if tag.startswith(INSERTION_TAG)}

    def to_response(self, fields: frozenset[str]) -> dict[str, Any]:
        """The original gateway's ``TraceResponse`` shape, trimmed to the requested field groups."""
        body: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "tags": self.tags,
            "timestamp": self.timestamp,
            "input": None,
            "output": None,
            "metadata": None,
            "observations": [],
        }
        if "io" in fields:
            body.update(input=self.input, output=self.output, metadata=self.metadata)
        if "observations" in fields:
            body["observations"] = self.observations
        return body


class TracingBackendError(GatewayError):
    """Langfuse refused the read for a reason retrying will not fix (credentials, bad request)."""

    status_code = 502
    error_type = "upstream_error"
    default_code = "langfuse_error"


class TraceSource(PromptSource, Protocol):
    async def rollout_traces(
        self, target: LangfuseTarget, tags: tuple[str, ...], *, deadline: float
    ) -> list[TraceRecord]:
        """Every trace carrying all ``tags``, across all pages.

        Raises ``RetryableError`` (rate limits, 5xx, network) or ``TracingBackendError``.
        """
        ...

    async def trace_exists(self, target: LangfuseTarget, trace_id: str, *, deadline: float) -> bool: ...

    async def create_score(self, target: LangfuseTarget, score: dict[str, Any], *, deadline: float) -> str | None:
        """Send one score; its id when Langfuse returns one."""
        ...

    async def aclose(self) -> None: ...
