"""The ports trace delivery needs: an intake that takes span batches, a spool that keeps them.

Spans travel as *fragments*: each one span, encoded and redacted once by the tracing adapter, in
a form a ``SpanCodec`` can join into one request body and shrink when an intake refuses it as too
large. The services never look inside a fragment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from proxy_core.services.llm import LangfuseTarget


class IntakeUnavailableError(Exception):
    """The intake could not take the batch now (5xx, 429, 408, refused, timed out): try again later."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class IntakeTooLargeError(Exception):
    """The intake refused the batch for its size (413): smaller batches may pass."""


class IntakeRejectedError(Exception):
    """The intake refused the batch for good (401, 403, 400 …): resending it changes nothing."""


class TraceIntake(Protocol):
    """Where a project's spans are delivered (Langfuse's OTLP intake, or the embedded store)."""

    async def post(self, target: LangfuseTarget, body: bytes, *, timeout_s: float) -> None:
        """Deliver one batch; raises the three errors above."""
        ...

    async def aclose(self) -> None: ...


class SpanCodec(Protocol):
    """What the delivery needs to know of the fragments' encoding."""

    def body(self, fragments: Sequence[bytes]) -> bytes:
        """One request body holding ``fragments``."""
        ...

    def shrink(self, fragment: bytes) -> bytes | None:
        """The fragment with its longest values cut (marked as cut), or None when nothing is left to cut."""
        ...


@dataclass(frozen=True, slots=True)
class SpooledSpan:
    id: str
    fragment: bytes


@dataclass(frozen=True, slots=True)
class SpoolDepth:
    spans: int
    bytes: int


class SpanSpool(Protocol):
    """Spans that could not be delivered, per project, kept until they are (oldest first).

    Claimed spans are leased: hidden from every other claimer until ``ack`` removes them or
    ``release`` (or the lease running out, when their claimer died) returns them.
    """

    @property
    def durable(self) -> bool:
        """Whether what is spooled survives a restart and is seen by every replica (Redis)."""
        ...

    @property
    def max_bytes(self) -> int: ...

    async def push(self, project_id: str, fragments: Sequence[bytes]) -> int:
        """Spool ``fragments`` in order; how many fit under the bound (the rest are not kept).

        Raises ``StoreUnavailableError`` when the spool cannot be written at all.
        """
        ...

    async def claim(self, project_id: str, *, max_bytes: int, max_count: int, lease_s: float) -> list[SpooledSpan]:
        """The oldest available spans, at least one if any, at most ``max_bytes`` beyond the first."""
        ...

    async def ack(self, project_id: str, ids: Sequence[str]) -> None: ...

    async def release(self, project_id: str, ids: Sequence[str]) -> None: ...

    async def depth(self, project_id: str) -> SpoolDepth: ...
