"""An in-process rollout store for single-process use (the no-configuration default and unit tests).

It keeps the Redis store's semantics (sets per project and rollout, a TTL refreshed on every
write) but lives in one process: a second worker or replica would not see it.
"""

from __future__ import annotations

import time

from proxy_core.services.store import RolloutStatus, Usage

MAX_CACHED_RESPONSES = 10_000


class MemoryRolloutStore:
    def __init__(self, *, ttl_s: int) -> None:
        self._ttl_s = ttl_s
        self._sets: dict[tuple[str, str], tuple[set[str], float]] = {}
        self._usage: dict[tuple[str, str], Usage] = {}
        self._voided: set[tuple[str, str, str]] = set()
        self._cache: dict[tuple[str, str], tuple[bytes, float]] = {}

    def _live(self, project_id: str, rollout_id: str) -> tuple[set[str], float] | None:
        entry = self._sets.get((project_id, rollout_id))
        if entry is not None and entry[1] <= time.monotonic():
            del self._sets[(project_id, rollout_id)]
            self._usage.pop((project_id, rollout_id), None)
            return None
        return entry

    async def record(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        if (project_id, rollout_id, insertion_id) in self._voided:
            return
        entry = self._live(project_id, rollout_id)
        members = entry[0] if entry else set()
        members.add(insertion_id)
        self._sets[(project_id, rollout_id)] = (members, time.monotonic() + self._ttl_s)
        if usage is not None:
            total = self._usage.get((project_id, rollout_id), Usage(cost_usd=0.0))
            self._usage[(project_id, rollout_id)] = Usage(
                total.prompt_tokens + usage.prompt_tokens,
                total.completion_tokens + usage.completion_tokens,
                (total.cost_usd or 0.0) + (usage.cost_usd or 0.0),
            )

    async def void(self, project_id: str, rollout_id: str, insertion_id: str, usage: Usage | None = None) -> None:
        """A write in process memory never has an unknown outcome; kept for the port's contract."""
        self._voided.add((project_id, rollout_id, insertion_id))
        entry = self._live(project_id, rollout_id)
        if entry is not None:
            entry[0].discard(insertion_id)

    async def insertion_ids(self, project_id: str, rollout_id: str) -> set[str]:
        entry = self._live(project_id, rollout_id)
        return set(entry[0]) if entry else set()

    async def status(self, project_id: str, rollout_id: str) -> RolloutStatus:
        entry = self._live(project_id, rollout_id)
        if entry is None:
            return RolloutStatus(0, None, None, None)
        ordered = sorted(entry[0])
        total = self._usage.get((project_id, rollout_id), Usage(cost_usd=0.0))
        return RolloutStatus(
            len(ordered),
            ordered[0],
            ordered[-1],
            int(entry[1] - time.monotonic()),
            total.prompt_tokens,
            total.completion_tokens,
            total.cost_usd or 0.0,
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
            self._cache = {k: v for k, v in self._cache.items() if v[1] > now}
            if len(self._cache) >= MAX_CACHED_RESPONSES:
                return
        self._cache[(project_id, key)] = (body, now + ttl_s)

    async def ping(self) -> bool:
        return True

    async def probe_write(self) -> None:
        return None

    async def aclose(self) -> None:
        self._sets.clear()
        self._usage.clear()
