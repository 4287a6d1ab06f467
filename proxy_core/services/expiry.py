"""Expiring what the in-process stores hold, in the background and a little at a time.

Without Redis, rollouts, their log records, voided ids, cached responses and embedded traces
live in process memory with a TTL. Expiring them only when they are next read leaves every
rollout nobody reads again in memory for good: 100,010 finished rollouts were measured still
held, ~740 B each, long after their TTL. ``ExpirySweeper`` asks each structure every few seconds
to drop what has expired, at most ``batch`` entries per call and yielding to the event loop
between calls, so a sweep of a hundred thousand keys never holds the loop for more than a
batch's worth of work (each structure keeps its keys in expiry order, so a batch costs what it
drops and nothing more).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from proxy_core.services.background import cancel_and_wait

logger = logging.getLogger(__name__)

# Entries one structure drops per call before the sweeper yields: ~1-2 ms of work.
SWEEP_BATCH = 1_000


@runtime_checkable
class Expiring(Protocol):
    """An in-process structure with a TTL (the port the memory adapters implement)."""

    def sweep_expired(self, limit: int) -> int:
        """Drop at most ``limit`` expired entries, oldest first; return how many were dropped."""
        ...


class ExpirySweeper:
    """Runs ``sweep_expired`` on every structure every ``interval_s`` until closed."""

    def __init__(self, structures: Sequence[Expiring], *, interval_s: float, batch: int = SWEEP_BATCH) -> None:
        self._structures = tuple(structures)
        self._interval_s = interval_s
        self._batch = batch
        self._task: asyncio.Task[None] | None = None
        self.max_tick_s = 0.0  # the longest the loop was held by one call (measured, reported)
        self.dropped = 0

    @property
    def structures(self) -> tuple[Expiring, ...]:
        return self._structures

    def start(self) -> None:
        if self._structures and self._task is None:
            self._task = asyncio.create_task(self._run(), name="memory-expiry")

    async def aclose(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                await self.sweep()
            except Exception:  # a bug in one sweep must not end expiry for good
                logger.exception("expiring in-process entries failed; trying again in %.0f s", self._interval_s)

    async def sweep(self) -> int:
        """One pass over every structure: batches until each has nothing expired left."""
        dropped = 0
        for structure in self._structures:
            while True:
                started = time.perf_counter()
                count = structure.sweep_expired(self._batch)
                self.max_tick_s = max(self.max_tick_s, time.perf_counter() - started)
                dropped += count
                if count < self._batch:
                    break
                await asyncio.sleep(0)  # let requests run between batches
        self.dropped += dropped
        return dropped
