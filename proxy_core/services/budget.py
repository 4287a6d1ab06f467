"""A per-key token bucket: how fast the gateway may read one Langfuse project.

Langfuse rate-limits its public API per organisation (tens of requests a minute on small
plans), so concurrent ``/traces`` calls for one project must share one read budget instead of
each multiplying the request rate.
"""

from __future__ import annotations

import asyncio
import time

from proxy_core.retry import RetryableError


class TokenBucket:
    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._rate = rate_per_s
        self._burst = float(burst)
        self._tokens = float(burst)
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def acquire(self, deadline: float) -> None:
        """Take one token, waiting for it; ``RetryableError`` if it cannot come before ``deadline``."""
        async with self._lock:
            self._refill()
            if self._tokens < 1:
                wait = (1 - self._tokens) / self._rate
                if time.monotonic() + wait > deadline:
                    raise RetryableError("the project's Langfuse read budget is exhausted", retry_after_s=wait)
                await asyncio.sleep(wait)
                self._refill()
            self._tokens -= 1


class ReadBudgets:
    """One bucket per key (a Langfuse host and public key), created on first use."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._buckets: dict[str, TokenBucket] = {}

    @classmethod
    def shared_by(cls, processes: int, rate_per_s: float, burst: int) -> ReadBudgets:
        """One process's share of a budget meant for the whole gateway.

        Each worker process keeps its own buckets; with the whole budget in each, ``WORKERS=4``
        would read Langfuse four times as fast as configured and run into its rate limit.
        """
        return cls(rate_per_s / processes, max(1, burst // processes))

    def for_key(self, key: str) -> TokenBucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self._rate, self._burst)
        return bucket
