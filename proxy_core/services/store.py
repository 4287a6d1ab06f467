"""The rollout store: which insertion ids a rollout has produced.

``/traces`` compares this set with what Langfuse holds, so an id must be recorded before the
client is told its completion succeeded. The store is a protocol with two adapters (Redis for
real deployments, an in-process dict for single-process use); ``GuardedStore`` adds the policy
every caller wants: a circuit breaker so a dead or frozen store fails requests fast with 503
instead of letting each one wait for its own timeout.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from proxy_core.errors import StoreUnavailableError

T = TypeVar("T")


def key_part(value: str) -> str:
    """A client-chosen id as one segment of a key: ``%`` and ``:`` escaped, nothing else.

    Ids may contain ``:``; unescaped, rollout ``r:usage`` would own the usage hash of rollout
    ``r`` (a write of the wrong type, failing that rollout and tripping the store's breaker for
    everyone), and ids could reach across the ``project:kind:id`` layout. Escaping the separator
    (and the escape character) makes every key name map back to one (project, kind, id), while
    ids without either character — UUIDs, the usual case — keep their plain key names.
    """
    if "%" not in value and ":" not in value:
        return value
    return value.replace("%", "%25").replace(":", "%3A")


def rollout_key(prefix: str, project_id: str, rollout_id: str) -> str:
    """The Redis key of a rollout's insertion-id set, namespaced by prefix and project."""
    return f"{prefix}:{key_part(project_id)}:rollout:{key_part(rollout_id)}"


def usage_key(prefix: str, project_id: str, rollout_id: str) -> str:
    """The Redis hash of a rollout's token and cost totals (same lifetime as its id set)."""
    return f"{rollout_key(prefix, project_id, rollout_id)}:usage"


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost of one completion (cost None when the provider's price is unknown)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


@dataclass(frozen=True, slots=True)
class RolloutStatus:
    """What the store knows of a rollout without asking Langfuse."""

    count: int
    first_insertion_id: str | None
    last_insertion_id: str | None
    ttl_s: int | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


class RolloutStore(Protocol):
    """Records insertion ids per (project, rollout); raises ``StoreUnavailableError`` on failure."""

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None: ...

    async def insertion_ids(self, project_id: str, rollout_id: str) -> set[str]: ...

    async def status(self, project_id: str, rollout_id: str) -> RolloutStatus: ...

    async def ping(self) -> bool: ...

    async def aclose(self) -> None: ...

    async def cached_response(self, project_id: str, key: str) -> bytes | None:
        """A cached response body, or None (also when the store fails: a cache is optional)."""
        ...

    async def cache_response(self, project_id: str, key: str, body: bytes, ttl_s: int) -> None:
        """Keep ``body`` for ``ttl_s``; failures are swallowed (a cache is optional)."""
        ...


def cache_key(prefix: str, project_id: str, digest: str) -> str:
    """Response-cache entries are per project: one project never sees another's answers."""
    return f"{prefix}:{key_part(project_id)}:cache:{digest}"


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures and stays open for ``cooldown_s``."""

    def __init__(self, threshold: int = 5, cooldown_s: float = 5.0) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._failures = 0
        self._open_until = 0.0

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self._open_until

    def retry_after_s(self) -> int:
        return max(1, int(self._open_until - time.monotonic() + 0.999))

    def succeeded(self) -> None:
        self._failures = 0

    def failed(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._open_until = time.monotonic() + self._cooldown_s
            self._failures = 0


class GuardedStore:
    """A ``RolloutStore`` wrapper that fails fast while its breaker is open."""

    def __init__(self, inner: RolloutStore, breaker: CircuitBreaker | None = None) -> None:
        self._inner = inner
        self._breaker = breaker or CircuitBreaker()

    def ensure_available(self, consequence: str = "the completion was not sent") -> None:
        """Raise 503 before any upstream spend when the store is known to be down.

        ``consequence`` tells the client what did not happen (no provider spend for a completion,
        nothing read for ``/traces``), so it knows a retry is safe.
        """
        if self._breaker.is_open:
            raise StoreUnavailableError(
                f"The rollout store is unavailable; {consequence}.",
                retry_after_s=self._breaker.retry_after_s(),
            )

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        self.ensure_available("the insertion id was not recorded")
        try:
            await self._inner.record(project_id, rollout_id, insertion_id, usage)
        except StoreUnavailableError:
            self._breaker.failed()
            raise
        self._breaker.succeeded()

    async def insertion_ids(self, project_id: str, rollout_id: str) -> set[str]:
        self.ensure_available("the rollout could not be read")
        return await self._guard_read(self._inner.insertion_ids(project_id, rollout_id))

    async def status(self, project_id: str, rollout_id: str) -> RolloutStatus:
        self.ensure_available("the rollout could not be read")
        return await self._guard_read(self._inner.status(project_id, rollout_id))

    async def _guard_read(self, pending: Awaitable[T]) -> T:
        try:
            result = await pending
        except StoreUnavailableError:
            self._breaker.failed()
            raise
        self._breaker.succeeded()
        return result

    async def ping(self) -> bool:
        return await self._inner.ping()

    async def cached_response(self, project_id: str, key: str) -> bytes | None:
        return None if self._breaker.is_open else await self._inner.cached_response(project_id, key)

    async def cache_response(self, project_id: str, key: str, body: bytes, ttl_s: int) -> None:
        if not self._breaker.is_open:
            await self._inner.cache_response(project_id, key, body, ttl_s)

    async def aclose(self) -> None:
        await self._inner.aclose()
