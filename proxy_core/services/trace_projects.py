"""One project's trace delivery state, and the values the delivery passes around.

Touched only on the event loop, by ``trace_delivery.TraceDelivery``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from proxy_core.retry import backoff_s
from proxy_core.services.trace_ports import IntakeUnavailableError, SpoolDepth

logger = logging.getLogger("proxy_core.tracing")

COUNTS = ("queued", "exported", "spooled", "replayed", "dropped", "rejected", "truncated")
# The spool counts as full from this share of its bound, and as no longer full below the second
# (hysteresis, so tracked calls are not refused and admitted in turn on every span).
FULL_AT, NOT_FULL_BELOW = 0.9, 0.75


@dataclass(frozen=True, slots=True)
class DeliveryTuning:
    max_batch_bytes: int = 3 * 1024 * 1024
    max_batch_spans: int = 1000
    # A live post that takes longer is given up and its batch spooled: with the batch delay
    # before it, an acknowledged completion's span is delivered or spooled within seconds.
    live_timeout_s: float = 2.0
    replay_timeout_s: float = 30.0
    lease_s: float = 60.0
    # Spans waiting in memory for a live post beyond this go to the spool instead.
    max_pending_bytes: int = 64 * 1024 * 1024
    tick_s: float = 1.0
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 10.0


@dataclass(slots=True)
class DeliveryItem:
    fragment: bytes
    id: str | None = None  # a spooled span's id


@dataclass(slots=True)
class PostOutcome:
    delivered: list[DeliveryItem] = field(default_factory=list)
    rejected: list[DeliveryItem] = field(default_factory=list)
    unavailable: list[DeliveryItem] = field(default_factory=list)


class ProjectDelivery:
    """One project's delivery state; touched only on the event loop."""

    def __init__(self, project_id: str) -> None:
        self.id = project_id
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.inflight: list[bytes] = []
        self.sender: asyncio.Task[None] | None = None
        self.down = False
        self.failures = 0
        self.retry_at = 0.0
        self.last_error: str | None = None
        self.counts = dict.fromkeys(COUNTS, 0)
        self.depth = SpoolDepth(0, 0)
        self.full = False

    def unavailable(self, error: IntakeUnavailableError, tuning: DeliveryTuning) -> None:
        if not self.down:
            logger.warning("Langfuse of project %r is unavailable (%s); its spans are spooled", self.id, error)
        self.down = True
        self.failures += 1
        self.last_error = str(error)
        pause = backoff_s(
            self.failures, base_s=tuning.backoff_base_s, cap_s=tuning.backoff_cap_s, retry_after_s=error.retry_after_s
        )
        self.retry_at = time.monotonic() + pause

    def available(self) -> None:
        if self.down:
            logger.info("Langfuse of project %r answers again", self.id)
        self.down = False
        self.failures = 0
        self.retry_at = 0.0

    def take(self, max_bytes: int, max_count: int | None = None) -> list[bytes]:
        """The oldest pending fragments: at least one, then up to ``max_bytes`` and ``max_count``."""
        taken: list[bytes] = []
        size = 0
        while self.pending and (not taken or size + len(self.pending[0]) <= max_bytes):
            if max_count is not None and len(taken) >= max_count:
                break
            fragment = self.pending.popleft()
            self.pending_bytes -= len(fragment)
            size += len(fragment)
            taken.append(fragment)
        return taken

    def update_full(self, max_bytes: int) -> None:
        used = self.depth.bytes / max(1, max_bytes)
        if used >= FULL_AT:
            self.full = True
        elif used < NOT_FULL_BELOW:
            self.full = False

    def report(self) -> dict[str, Any]:
        return {
            "langfuse": "down" if self.down else "up",
            "last_error": self.last_error if self.down else None,
            "spool": {"spans": self.depth.spans, "bytes": self.depth.bytes, "full": self.full},
            "spans": dict(self.counts),
        }
