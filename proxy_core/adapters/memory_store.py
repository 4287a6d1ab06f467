"""An in-process rollout store for single-process use (the no-configuration default and unit tests).

It keeps the Redis store's semantics (sets per project and rollout, a TTL refreshed on every
write, voided ids kept for the TTL too) but lives in one process: a second worker or replica
would not see it. Redis expires keys by itself; here ``sweep_expired`` does, called in the
background (``ExpirySweeper``), so rollouts nobody reads again do not stay in memory. Every
table is kept in expiry order (an ordered dict moved to the end on each write, as the TTL is the
same for all; a heap for cached responses, whose TTLs differ), so a sweep costs only what it drops.
"""

from __future__ import annotations

import heapq
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TypeVar

from proxy_core.adapters.memory_tables import Shrinking
from proxy_core.services.store import RolloutStatus, Usage

MAX_CACHED_RESPONSES = 10_000

Key = tuple[str, str]


@dataclass(slots=True)
class _Rollout:
    expires_at: float
    members: set[str] = field(default_factory=set)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True)
class _Voided:
    expires_at: float
    ids: set[str] = field(default_factory=set)


Entry = TypeVar("Entry", _Rollout, _Voided)


def _pop_expired(table: OrderedDict[Key, Entry], now: float, limit: int) -> int:
    """Drop up to ``limit`` expired entries from the front of a table kept in expiry order."""
    dropped = 0
    while table and dropped < limit:
        key, entry = next(iter(table.items()))
        if entry.expires_at > now:
            break
        del table[key]
        dropped += 1
    return dropped


class MemoryRolloutStore:
    def __init__(self, *, ttl_s: int) -> None:
        self._ttl_s = ttl_s
        self._rollouts: OrderedDict[Key, _Rollout] = OrderedDict()  # least recently written first
        self._voided: OrderedDict[Key, _Voided] = OrderedDict()
        self._rollouts_peak = Shrinking()
        self._voided_peak = Shrinking()
        self._cache: dict[Key, tuple[bytes, float]] = {}
        self._cache_expiry: list[tuple[float, Key]] = []  # a heap; entries of overwritten keys are skipped

    def held(self) -> dict[str, int]:
        """How many entries each table holds (what expiry is measured by)."""
        return {"rollouts": len(self._rollouts), "voided": len(self._voided), "cached": len(self._cache)}

    @staticmethod
    def _live(table: OrderedDict[Key, Entry], key: Key) -> bool:
        entry = table.get(key)
        if entry is not None and entry.expires_at <= time.monotonic():
            del table[key]
            return False
        return entry is not None

    def _rollout(self, project_id: str, rollout_id: str) -> _Rollout | None:
        key = (project_id, rollout_id)
        return self._rollouts[key] if self._live(self._rollouts, key) else None

    def _is_voided(self, project_id: str, rollout_id: str, insertion_id: str) -> bool:
        key = (project_id, rollout_id)
        return self._live(self._voided, key) and insertion_id in self._voided[key].ids

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        if self._is_voided(project_id, rollout_id, insertion_id):
            return
        key = (project_id, rollout_id)
        rollout = self._rollout(*key) or _Rollout(0.0)
        rollout.expires_at = time.monotonic() + self._ttl_s
        self._rollouts[key] = rollout
        self._rollouts.move_to_end(key)
        self._rollouts_peak.grew(len(self._rollouts))
        rollout.members.add(insertion_id)
        if usage is not None:
            rollout.prompt_tokens += usage.prompt_tokens
            rollout.completion_tokens += usage.completion_tokens
            rollout.cost_usd += usage.cost_usd or 0.0

    async def void(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        """A write in process memory never has an unknown outcome; kept for the port's contract
        (and, like the Redis script, the id's usage leaves the totals with it)."""
        key = (project_id, rollout_id)
        voided = self._voided[key] if self._live(self._voided, key) else _Voided(0.0)
        voided.expires_at = time.monotonic() + self._ttl_s
        voided.ids.add(insertion_id)
        self._voided[key] = voided
        self._voided.move_to_end(key)
        self._voided_peak.grew(len(self._voided))
        rollout = self._rollout(*key)
        if rollout is not None and insertion_id in rollout.members:
            rollout.members.discard(insertion_id)
            if usage is not None:
                rollout.prompt_tokens -= usage.prompt_tokens
                rollout.completion_tokens -= usage.completion_tokens
                rollout.cost_usd -= usage.cost_usd or 0.0

    async def insertion_ids(self, project_id: str, rollout_id: str) -> set[str]:
        rollout = self._rollout(project_id, rollout_id)
        return set(rollout.members) if rollout else set()

    async def status(self, project_id: str, rollout_id: str) -> RolloutStatus:
        rollout = self._rollout(project_id, rollout_id)
        if rollout is None or not rollout.members:
            return RolloutStatus(0, None, None, None)
        ordered = sorted(rollout.members)
        return RolloutStatus(
            len(ordered),
            ordered[0],
            ordered[-1],
            int(rollout.expires_at - time.monotonic()),
            rollout.prompt_tokens,
            rollout.completion_tokens,
            rollout.cost_usd,
        )

    async def cached_response(self, project_id: str, key: str) -> bytes | None:
        entry = self._cache.get((project_id, key))
        if entry is None or entry[1] <= time.monotonic():
            self._cache.pop((project_id, key), None)
            return None
        return entry[0]

    async def cache_response(self, project_id: str, key: str, body: bytes, ttl_s: int) -> None:
        now = time.monotonic()
        if len(self._cache) >= MAX_CACHED_RESPONSES:
            self._expire_cache(now, MAX_CACHED_RESPONSES)
            if len(self._cache) >= MAX_CACHED_RESPONSES:
                return
        expires_at = now + ttl_s
        self._cache[(project_id, key)] = (body, expires_at)
        heapq.heappush(self._cache_expiry, (expires_at, (project_id, key)))

    def _expire_cache(self, now: float, limit: int) -> int:
        dropped = 0
        while self._cache_expiry and self._cache_expiry[0][0] <= now and dropped < limit:
            expires_at, key = heapq.heappop(self._cache_expiry)
            entry = self._cache.get(key)
            if entry is not None and entry[1] == expires_at:  # not rewritten since
                del self._cache[key]
            dropped += 1
        return dropped

    def sweep_expired(self, limit: int) -> int:
        """Drop up to ``limit`` expired rollouts, voided-id sets and cached responses (``Expiring``)."""
        now = time.monotonic()
        dropped = _pop_expired(self._rollouts, now, limit)
        dropped += _pop_expired(self._voided, now, limit - dropped)
        dropped += self._expire_cache(now, limit - dropped)
        self._rollouts = self._rollouts_peak.shrunk(self._rollouts, limit)
        self._voided = self._voided_peak.shrunk(self._voided, limit)
        return dropped

    async def ping(self) -> bool:
        return True

    async def probe_write(self) -> None:
        return None

    async def aclose(self) -> None:
        self._rollouts.clear()
        self._voided.clear()
        self._cache.clear()
        self._cache_expiry.clear()
