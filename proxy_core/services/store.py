"""The rollout store: which insertion ids a rollout has produced.

``/traces`` compares this set with what Langfuse holds, so an id must be recorded before the
client is told its completion succeeded. The store is a protocol with two adapters (Redis for
real deployments, an in-process dict for single-process use); ``GuardedStore`` adds the policy
every caller wants: circuit breakers and a write probe, so a dead, frozen or write-refusing store
fails requests fast with 503, before any provider spend, instead of letting each one wait for
its own timeout.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from proxy_core.errors import StoreUnavailableError
from proxy_core.retry import RetryableError, retrying
from proxy_core.services.background import cancel_and_wait
from proxy_core.services.breaker import BreakerState, CircuitBreaker
from proxy_core.services.metrics import GatewayMetrics, NoMetrics

logger = logging.getLogger("proxy_core.store")

T = TypeVar("T")
# The breakers' names in ``gateway_breaker_state``.
WRITES_BREAKER = "rollout_store_writes"
READS_BREAKER = "rollout_store_reads"


_ESCAPES = {"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"}


def key_part(value: str) -> str:
    """A client-chosen id as one segment of a key: ``%``, ``:``, ``{`` and ``}`` escaped, nothing else.

    Ids may contain ``:``; unescaped, rollout ``r:usage`` would own the usage hash of rollout
    ``r`` (a write of the wrong type, failing that rollout and tripping the store's breaker for
    everyone), and ids could reach across the ``project:kind:id`` layout. Braces are Redis
    Cluster's hash-tag delimiters: unescaped, an id could choose another key's slot, or split a
    rollout's keys over two. Escaping them (and the escape character) makes every key name map
    back to one (project, kind, id), while ids without any of them — UUIDs, the usual case —
    keep their plain key names.
    """
    if not any(character in value for character in _ESCAPES):
        return value
    return "".join(_ESCAPES.get(character, character) for character in value)


def rollout_key(prefix: str, project_id: str, rollout_id: str) -> str:
    """The Redis key of a rollout's insertion-id set, namespaced by prefix and project.

    The rollout id is the key's hash tag (``{…}``): every key derived from this one by a suffix
    (``:usage``, …) hashes to the same Redis Cluster slot, so one script may touch all of a
    rollout's keys, and different rollouts spread over the cluster's masters.
    """
    return f"{prefix}:{key_part(project_id)}:rollout:{{{key_part(rollout_id)}}}"


def usage_key(prefix: str, project_id: str, rollout_id: str) -> str:
    """The Redis hash of a rollout's token and cost totals (same lifetime and slot as its id set)."""
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

    async def void(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        """Make sure ``insertion_id`` is not (and never becomes) recorded, with its usage.

        For a record whose outcome is unknown (it timed out; a frozen store may still run it when
        it wakes) and whose client was therefore told it failed.
        """
        ...

    async def insertion_ids(self, project_id: str, rollout_id: str) -> set[str]: ...

    async def status(self, project_id: str, rollout_id: str) -> RolloutStatus: ...

    async def ping(self) -> bool: ...

    async def probe_write(self) -> None:
        """A real write that proves the store accepts writes now; ``StoreUnavailableError`` if not.

        A PING answers while a Redis refuses writes (out of memory with ``noeviction``, ``READONLY``
        after a failover, ``min-replicas-to-write`` unmet), so readiness and the check before a
        provider call must write.
        """
        ...

    async def aclose(self) -> None: ...

    async def cached_response(self, project_id: str, key: str) -> bytes | None:
        """A cached response body, or None (also when the store fails: a cache is optional)."""
        ...

    async def cache_response(self, project_id: str, key: str, body: bytes, ttl_s: int) -> None:
        """Keep ``body`` for ``ttl_s``; failures are swallowed (a cache is optional)."""
        ...


def void_key(prefix: str, project_id: str, rollout_id: str) -> str:
    """Insertion ids whose clients were told their record failed; never counted as recorded."""
    return f"{rollout_key(prefix, project_id, rollout_id)}:void"


def probe_key(prefix: str) -> str:
    """The key write probes set (short-lived; it holds no data)."""
    return f"{prefix}:probe"


def cache_key(prefix: str, project_id: str, digest: str) -> str:
    """Response-cache entries are per project: one project never sees another's answers.

    The request digest is the hash tag, so a busy project's entries spread over a cluster's masters.
    """
    return f"{prefix}:{key_part(project_id)}:cache:{{{key_part(digest)}}}"


# A write that succeeded this recently vouches for the store; older than that, a tracked call
# first proves the store writable (one probe shared by every caller waiting on it). At 20 calls a
# second, a store that stops taking writes costs at most about five provider calls this way.
FRESH_WRITE_S = 0.25
# How long a timed-out record's id is voided in the background before the gateway gives up.
VOID_WITHIN_S = 600.0
VOID_ATTEMPTS = 10_000
VOID_AT_SHUTDOWN_S = 1.0


@dataclass(frozen=True, slots=True)
class StoreHealth:
    """What readiness reports of the store: writable now, the breakers, the last failure."""

    writable: bool
    writes: BreakerState
    reads: BreakerState
    last_error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": "up" if self.writable else "down",
            "writes": self.writes.value,
            "reads": self.reads.value,
            "last_error": self.last_error,
        }


class GuardedStore:
    """A ``RolloutStore`` wrapper: write and read circuit breakers and a write probe.

    Writes and reads have breakers of their own: a store that refuses writes but answers reads
    (``READONLY``, out of memory) must keep refusing tracked completions however many ``/traces``
    reads succeed in between. Before a tracked call reaches the provider, ``ensure_writable``
    proves the store takes writes (a recent successful write, or a probe), so a dead, frozen or
    write-refusing store costs a handful of provider calls, not one per request until a timeout.
    """

    def __init__(
        self,
        inner: RolloutStore,
        writes: CircuitBreaker | None = None,
        reads: CircuitBreaker | None = None,
        *,
        fresh_write_s: float = FRESH_WRITE_S,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._inner = inner
        self._writes = writes or CircuitBreaker()
        self._reads = reads or CircuitBreaker()
        self._fresh_write_s = fresh_write_s
        self._last_write_ok = -math.inf
        self._last_write_failed = False
        self._last_error: str | None = None
        self._probe: asyncio.Task[bool] | None = None
        self._voids: set[asyncio.Task[None]] = set()
        self._metrics = metrics or NoMetrics()
        self._reported: dict[str, BreakerState] = {}
        self._report_breakers()

    def _report_breakers(self) -> None:
        """Tell the metrics port of a breaker that changed state (an open one turns half-open with
        time alone: that shows at the next operation, the trial)."""
        for name, breaker in ((WRITES_BREAKER, self._writes), (READS_BREAKER, self._reads)):
            state = breaker.state
            if self._reported.get(name) is not state:
                self._reported[name] = state
                self._metrics.breaker_state(name, state.value)

    def _refused(self, consequence: str, breaker: CircuitBreaker) -> StoreUnavailableError:
        """503 naming what did not happen (no provider spend, nothing read), so a retry is safe."""
        return StoreUnavailableError(
            f"The rollout store is unavailable; {consequence}.", retry_after_s=breaker.retry_after_s()
        )

    def _write_succeeded(self) -> None:
        self._writes.succeeded()
        self._last_write_ok = time.monotonic()
        self._last_write_failed = False
        self._report_breakers()

    def _write_failed(self, reason: str, operation: str) -> None:
        self._writes.failed()
        self._last_write_failed = True
        self._last_error = reason
        self._metrics.store_error(operation)
        self._report_breakers()

    async def ensure_writable(self, consequence: str = "the completion was not sent") -> None:
        """Raise 503 before any provider spend unless the store is known to take writes now."""
        if self._writes.admits and time.monotonic() - self._last_write_ok < self._fresh_write_s:
            return
        probe = self._probe
        if probe is None:
            if not self._writes.admits and not self._writes.try_acquire_trial():
                raise self._refused(consequence, self._writes)  # open, or another caller holds the trial
            probe = self._probe = asyncio.ensure_future(self._run_probe())
        if not await asyncio.shield(probe):
            raise self._refused(consequence, self._writes)

    async def _run_probe(self) -> bool:
        """One write probe; its own task, so a caller that goes away does not cancel it for the rest."""
        try:
            await self._inner.probe_write()
        except Exception as error:  # whatever it was, the breaker's trial must end
            reason = error.message if isinstance(error, StoreUnavailableError) else type(error).__name__
            self._write_failed(reason, "probe")
            return False
        finally:
            self._probe = None
        self._write_succeeded()
        return True

    async def watch(self, interval_s: float) -> None:
        """Probe the store every ``interval_s`` that saw no successful write, until cancelled.

        Readiness then follows the store by itself, with no completion traffic; in the half-open
        state this probe is the trial that closes the breaker again.
        """
        while True:
            await asyncio.sleep(interval_s)
            if time.monotonic() - self._last_write_ok < interval_s or self._probe is not None:
                continue
            if self._writes.admits or self._writes.try_acquire_trial():
                self._probe = asyncio.ensure_future(self._run_probe())
                await asyncio.shield(self._probe)

    def health(self) -> StoreHealth:
        writable = self._writes.admits and not self._last_write_failed
        return StoreHealth(writable, self._writes.state, self._reads.state, self._last_error)

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        """Record even while the breaker is open: the provider has been paid by now, and a write
        that succeeds still saves the answer; a failure is a 503 and counts against the store.

        A record that timed out may still happen (a frozen Redis runs it when it wakes) while its
        client is told it failed: the id is voided in the background until the store takes it,
        so it can never count as a step of the rollout.
        """
        try:
            await self._inner.record(project_id, rollout_id, insertion_id, usage)
        except StoreUnavailableError as error:
            self._write_failed(error.message, "record")
            if error.outcome_unknown:
                task = asyncio.ensure_future(self._void(project_id, rollout_id, insertion_id, usage))
                self._voids.add(task)
                task.add_done_callback(self._voids.discard)
            raise
        self._write_succeeded()

    async def _void(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None) -> None:
        try:
            async for attempt in retrying(attempts=VOID_ATTEMPTS, deadline=time.monotonic() + VOID_WITHIN_S, cap_s=5.0):
                with attempt:
                    try:
                        await self._inner.void(project_id, rollout_id, insertion_id, usage)
                    except StoreUnavailableError as error:
                        raise RetryableError(error.message) from error
        except RetryableError as error:
            logger.error(
                "insertion id %s of rollout %r could not be voided (%s): if its record reached the store, "
                "the rollout counts a call whose client was told it failed",
                insertion_id,
                rollout_id,
                error,
            )

    async def insertion_ids(self, project_id: str, rollout_id: str) -> set[str]:
        return await self._guard_read(lambda: self._inner.insertion_ids(project_id, rollout_id))

    async def status(self, project_id: str, rollout_id: str) -> RolloutStatus:
        return await self._guard_read(lambda: self._inner.status(project_id, rollout_id))

    async def _guard_read(self, read: Callable[[], Awaitable[T]]) -> T:
        if self._reads.state is BreakerState.OPEN:
            raise self._refused("the rollout could not be read", self._reads)
        try:
            result = await read()
        except StoreUnavailableError:
            self._reads.failed()
            self._metrics.store_error("read")
            self._report_breakers()
            raise
        self._reads.succeeded()
        self._report_breakers()
        return result

    async def cached_response(self, project_id: str, key: str) -> bytes | None:
        if self._reads.state is BreakerState.OPEN:
            return None
        return await self._inner.cached_response(project_id, key)

    async def cache_response(self, project_id: str, key: str, body: bytes, ttl_s: int) -> None:
        if self._writes.admits:
            await self._inner.cache_response(project_id, key, body, ttl_s)

    async def aclose(self) -> None:
        await cancel_and_wait(self._probe)  # unwound before the connection it uses is closed
        if self._voids:
            _, pending = await asyncio.wait(self._voids, timeout=VOID_AT_SHUTDOWN_S)
            for task in pending:
                task.cancel()
            if pending:
                logger.error("%d insertion ids whose record timed out were left unvoided at shutdown", len(pending))
        await self._inner.aclose()
