"""Concurrent callers asking for the same key share one in-flight read.

Forty harness workers polling one rollout's traces cost one Langfuse read per poll, not forty.
The read runs as a task of its own rather than in the first caller's request, because the
callers come and go independently: one whose client disconnected, or whose own deadline passed,
stops waiting without cancelling the read the others still wait for, and without waiting past
its deadline for a read that another, more patient, caller started. When the last caller has
gone, the read is cancelled: nobody will use its answer, so it must not keep polling Langfuse.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from proxy_core.retry import RetryableError


@dataclass(slots=True)
class _Flight:
    task: asyncio.Future[Any]
    waiters: int = 0


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a read's failure seen: when every caller left before it ended, nobody else will."""
    if not task.cancelled():
        task.exception()


class SingleFlight:
    def __init__(self) -> None:
        self._inflight: dict[Any, _Flight] = {}

    def inflight(self) -> int:
        """How many reads are running (a caller-less read is cancelled, so none lingers)."""
        return len(self._inflight)

    async def run(self, key: Any, read: Callable[[], Awaitable[Any]], *, deadline: float) -> Any:
        """``read()``'s result, shared with concurrent callers of ``key``; ``RetryableError`` when a
        read another caller started does not end before ``deadline`` (a ``time.monotonic()``
        instant). ``read`` must itself end by ``deadline``: it runs when no read is in flight."""
        flight = self._inflight.get(key)
        joined = flight is not None
        if flight is None:
            flight = self._start(key, read)
        flight.waiters += 1
        try:
            # A read started here is bounded by ``read`` itself (its reads take the same deadline);
            # one joined may have been started with a later deadline than this caller's.
            async with asyncio.timeout(max(0.0, deadline - time.monotonic()) if joined else None) as within:
                return await asyncio.shield(flight.task)
        except TimeoutError:
            if not within.expired():
                raise  # the read's own failure, not this caller's deadline
            raise RetryableError("a trace read shared with another request did not finish in time") from None
        finally:
            flight.waiters -= 1
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()
                self._forget(key, flight)

    def _start(self, key: Any, read: Callable[[], Awaitable[Any]]) -> _Flight:
        flight = _Flight(asyncio.ensure_future(read()))  # the starter's context (its read budget flow) goes along
        self._inflight[key] = flight
        flight.task.add_done_callback(_retrieve)
        flight.task.add_done_callback(lambda _: self._forget(key, flight))
        return flight

    def _forget(self, key: Any, flight: _Flight) -> None:
        if self._inflight.get(key) is flight:
            del self._inflight[key]
