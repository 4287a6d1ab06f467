"""How fast the gateway may read one Langfuse project, and who reads first when it may not read at once.

Langfuse rate-limits its public API per organisation (tens of requests a minute on small
plans), so every ``/traces`` poll, prompt fetch and score of one project draws on one token
bucket: ``LANGFUSE_READ_RPS`` tokens a second, at most ``LANGFUSE_READ_BURST`` saved up. With
Redis the bucket lives there (``TokenSource`` port, a Redis adapter), so the configured rate is
the whole deployment's however many workers and replicas share it; without Redis there is one
process and the bucket is in it (``LocalTokenBuckets``).

When reads must wait, they are served by *least recent service* between rollouts, not in
arrival order: each rollout (the "flow" a read is made for, ``reading_for``) has a count of
reads granted to it that decays with ``ATTAINED_DECAY_S``, and the waiting read whose flow has
the lowest count goes next. Forty rollouts polling for traces Langfuse has not ingested yet
share the budget equally, and a rollout whose traces are all there gets its one read ahead of
them instead of queueing behind all of their polls. The ordering is per process; between
processes, a read that must wait reserves the bucket's next token, so each process's waiting read
(one per process and project at a time) is served in turn rather than racing the others.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

from proxy_core.retry import RetryableError
from proxy_core.services.shared_state import SharedOrLocal

# A flow's count of granted reads falls to 1/e in 30 s: long enough to tell a rollout that has
# been polling from one that just arrived, short enough to forget old polling.
ATTAINED_DECAY_S = 30.0
# Flows whose decayed count fell below this are forgotten (they sort as new anyway).
FORGET_BELOW = 0.01

_FLOW: contextvars.ContextVar[str] = contextvars.ContextVar("langfuse_read_flow", default="")


@contextmanager
def reading_for(flow: str) -> Iterator[None]:
    """Reads made inside this block are made for ``flow`` (a rollout) when the budget orders them."""
    token = _FLOW.set(flow)
    try:
        yield
    finally:
        _FLOW.reset(token)


class TokenSource(Protocol):
    """Token buckets by key (the port a shared store implements)."""

    async def take(self, key: str, rate_per_s: float, burst: int, max_wait_s: float) -> tuple[bool, float]:
        """Take ``key``'s next token: ``(True, wait)`` when it is this caller's ``wait`` seconds from
        now (0: at once), reserved so no other caller races for it; ``(False, wait)`` when that
        would be more than ``max_wait_s`` away (nothing taken). Raises ``StoreUnavailableError``
        when the store fails."""
        ...


class LocalTokenBuckets:
    """``TokenSource`` in process memory: the no-Redis default (one process)."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}

    async def take(self, key: str, rate_per_s: float, burst: int, max_wait_s: float) -> tuple[bool, float]:
        now = time.monotonic()
        tokens, updated = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - updated) * rate_per_s)
        wait = max(0.0, (1 - tokens) / rate_per_s)
        granted = wait <= max_wait_s
        self._buckets[key] = (tokens - 1 if granted else tokens, now)  # below zero: reserved ahead
        return granted, wait


@dataclass(slots=True)
class _Waiter:
    order: tuple[float, int]
    turn: asyncio.Future[None]


@dataclass(slots=True)
class _Attained:
    count: float
    at: float

    def now(self, now: float) -> float:
        return self.count * math.exp(-(now - self.at) / ATTAINED_DECAY_S)


@dataclass
class FairBudget:
    """One bucket's waiting reads, served least-recently-served flow first (module docstring)."""

    key: str
    buckets: SharedOrLocal[TokenSource]
    rate_per_s: float
    burst: int
    _waiting: list[_Waiter] = field(default_factory=list)
    _busy: bool = False
    _attained: dict[str, _Attained] = field(default_factory=dict)
    _prune_at: int = 64
    _arrivals: Iterator[int] = field(default_factory=itertools.count)

    async def acquire(self, deadline: float) -> None:
        """Take one token for the current flow, waiting for it; ``RetryableError`` if it cannot
        come before ``deadline`` (a ``time.monotonic()`` instant)."""
        flow = _FLOW.get()
        if self._busy or self._waiting:
            await self._wait_turn(flow, deadline)
        else:
            self._busy = True
        try:
            await self._take(deadline)
            self._served(flow)
        finally:
            self._busy = False
            self._pass_turn()

    async def _take(self, deadline: float) -> None:
        max_wait_s = deadline - time.monotonic()
        granted, wait = await self.buckets.run(
            lambda buckets: buckets.take(self.key, self.rate_per_s, self.burst, max_wait_s)
        )
        if not granted:
            raise RetryableError("the project's Langfuse read budget is exhausted", retry_after_s=wait)
        if wait > 0:
            await asyncio.sleep(wait)  # the token is reserved: nobody else takes it meanwhile

    async def _wait_turn(self, flow: str, deadline: float) -> None:
        now = time.monotonic()
        attained = self._attained.get(flow)
        order = (attained.now(now) if attained is not None else 0.0, next(self._arrivals))
        waiter = _Waiter(order, asyncio.get_running_loop().create_future())
        self._waiting.append(waiter)
        try:
            async with asyncio.timeout(max(0.0, deadline - now)):
                await waiter.turn
        except BaseException as exc:
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            elif waiter.turn.done() and not waiter.turn.cancelled():
                self._busy = False  # the turn came just as this waiter gave up: pass it on
                self._pass_turn()
            if isinstance(exc, TimeoutError):
                queued = len(self._waiting) + 1
                raise RetryableError(
                    "the project's Langfuse read budget is exhausted", retry_after_s=queued / self.rate_per_s
                ) from None
            raise

    def _pass_turn(self) -> None:
        """Hand the turn to the waiting read of the least-served flow. A waiter whose deadline has
        just cancelled its turn, before it could leave the queue itself, is passed over."""
        while not self._busy and self._waiting:
            head = min(self._waiting, key=lambda waiter: waiter.order)
            self._waiting.remove(head)
            if not head.turn.done():
                self._busy = True
                head.turn.set_result(None)

    def _served(self, flow: str) -> None:
        now = time.monotonic()
        attained = self._attained.get(flow)
        self._attained[flow] = _Attained((attained.now(now) if attained is not None else 0.0) + 1.0, now)
        if len(self._attained) >= self._prune_at:  # amortised: the table stays a few times the live flows
            self._attained = {name: a for name, a in self._attained.items() if a.now(now) >= FORGET_BELOW}
            self._prune_at = max(64, 2 * len(self._attained))


class ReadBudgets:
    """One ``FairBudget`` per key (a Langfuse host and public key), created on first use.

    ``shared``: the store that keeps the buckets for every process (Redis); None keeps them in
    this process, which is then the only one (``WORKERS`` > 1 requires Redis).
    """

    def __init__(self, rate_per_s: float, burst: int, shared: TokenSource | None = None) -> None:
        self._rate = rate_per_s
        self._burst = burst
        self._buckets = SharedOrLocal[TokenSource](shared, LocalTokenBuckets(), "Langfuse read budget")
        self._budgets: dict[str, FairBudget] = {}

    def for_key(self, key: str) -> FairBudget:
        budget = self._budgets.get(key)
        if budget is None:
            budget = self._budgets[key] = FairBudget(key, self._buckets, self._rate, self._burst)
        return budget
