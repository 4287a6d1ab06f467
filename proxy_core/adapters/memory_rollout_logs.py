"""Remote rollouts' log entries and latest status in process (the no-Redis default, one process).

The same rules as on Redis (entries newest first and at most ``max_entries`` per rollout, the
rollout TTL refreshed on every write), and one more a process needs: everything it holds is at
most ``max_bytes``; past that the rollouts written longest ago are dropped whole. Expired rollouts
are dropped in the background too (``sweep_expired``), not only when written or read again.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from proxy_core.adapters.memory_tables import Shrinking
from proxy_core.services.rollout_logs import StoredRecord

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(slots=True)
class _RolloutLog:
    expires_at: float
    entries: deque[bytes] = field(default_factory=deque)
    status: bytes | None = None
    size: int = 0


class MemoryRolloutLogs:
    def __init__(self, *, ttl_s: int, max_entries: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._logs: OrderedDict[tuple[str, str], _RolloutLog] = OrderedDict()  # least recently written first
        self._size = 0
        self._peak = Shrinking()

    @property
    def size_bytes(self) -> int:
        """What the entries and statuses held take, in bytes of JSON."""
        return self._size

    def _live(self, project_id: str, rollout_id: str) -> _RolloutLog | None:
        log = self._logs.get((project_id, rollout_id))
        if log is not None and log.expires_at <= time.monotonic():
            self._drop((project_id, rollout_id))
            return None
        return log

    def _drop(self, key: tuple[str, str]) -> None:
        self._size -= self._logs.pop(key).size

    async def append(self, project_id: str, record: StoredRecord) -> str | None:
        """All or none, like the Redis script (nothing here awaits, so nothing interleaves)."""
        if record.status is None:
            for rollout_id in record.rollout_ids:
                log = self._live(project_id, rollout_id)
                if log is not None and len(log.entries) >= self._max_entries:
                    return rollout_id
        for rollout_id in record.rollout_ids:
            self._append_one((project_id, rollout_id), record.entry, record.status)
        self._evict()
        return None

    def _append_one(self, key: tuple[str, str], entry: bytes, status: bytes | None) -> None:
        log = self._live(*key) or _RolloutLog(expires_at=0.0)
        self._logs[key] = log
        self._logs.move_to_end(key)
        self._peak.grew(len(self._logs))
        log.expires_at = time.monotonic() + self._ttl_s
        log.entries.appendleft(entry)
        grown = len(entry)
        while len(log.entries) > self._max_entries:
            grown -= len(log.entries.pop())
        if status is not None:
            grown += len(status) - len(log.status or b"")
            log.status = status
        log.size += grown
        self._size += grown

    def _evict(self) -> None:
        """Drop expired rollouts, then the least recently written ones while over ``max_bytes``."""
        now = time.monotonic()
        while self._logs:
            key, oldest = next(iter(self._logs.items()))
            if oldest.expires_at > now and self._size <= self._max_bytes:
                return
            self._drop(key)

    def sweep_expired(self, limit: int) -> int:
        """Drop up to ``limit`` expired rollouts (``Expiring``): the least recently written come
        first, and as every write renews the same TTL, they are also the first to expire."""
        now = time.monotonic()
        dropped = 0
        while self._logs and dropped < limit:
            key, oldest = next(iter(self._logs.items()))
            if oldest.expires_at > now:
                break
            self._drop(key)
            dropped += 1
        self._logs = self._peak.shrunk(self._logs, limit)
        return dropped

    def held(self) -> int:
        """How many rollouts' logs are held."""
        return len(self._logs)

    async def entries(self, project_id: str, rollout_id: str) -> list[bytes]:
        log = self._live(project_id, rollout_id)
        return list(log.entries) if log is not None else []

    async def latest_status(self, project_id: str, rollout_id: str) -> bytes | None:
        log = self._live(project_id, rollout_id)
        return log.status if log is not None else None
