"""The trace spool in process memory: the no-Redis default.

It keeps the Redis spool's semantics (per-project order, leases, a bound in bytes) so delivery
behaves alike, but it lives and dies with the process: spans still in it at shutdown are lost
(and counted as such by the delivery). With Redis configured, ``RedisSpanSpool`` is used.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass

from proxy_core.services.trace_ports import SpoolDepth, SpooledSpan


@dataclass(slots=True)
class _Entry:
    fragment: bytes
    available_at: float = 0.0  # a claimed span is leased until then


class _ProjectSpool:
    def __init__(self) -> None:
        self.entries: dict[str, _Entry] = {}  # a dict keeps insertion order, which is age order
        self.bytes = 0


class MemorySpanSpool:
    def __init__(self, *, max_bytes: int) -> None:
        self._max_bytes = max_bytes
        self._projects: dict[str, _ProjectSpool] = {}
        self._ids = itertools.count()

    @property
    def durable(self) -> bool:
        return False

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    def _spool(self, project_id: str) -> _ProjectSpool:
        spool = self._projects.get(project_id)
        if spool is None:
            spool = self._projects[project_id] = _ProjectSpool()
        return spool

    async def push(self, project_id: str, fragments: Sequence[bytes]) -> int:
        spool = self._spool(project_id)
        accepted = 0
        for fragment in fragments:
            if spool.bytes + len(fragment) > self._max_bytes:
                break
            spool.entries[str(next(self._ids))] = _Entry(fragment)
            spool.bytes += len(fragment)
            accepted += 1
        return accepted

    async def claim(self, project_id: str, *, max_bytes: int, max_count: int, lease_s: float) -> list[SpooledSpan]:
        spool = self._projects.get(project_id)
        if spool is None:
            return []
        now = time.monotonic()
        claimed: list[SpooledSpan] = []
        size = 0
        for span_id, entry in spool.entries.items():
            if entry.available_at > now:
                continue
            if claimed and (size + len(entry.fragment) > max_bytes or len(claimed) >= max_count):
                break
            entry.available_at = now + lease_s
            claimed.append(SpooledSpan(span_id, entry.fragment))
            size += len(entry.fragment)
        return claimed

    async def ack(self, project_id: str, ids: Sequence[str]) -> None:
        spool = self._spool(project_id)
        for span_id in ids:
            entry = spool.entries.pop(span_id, None)
            if entry is not None:
                spool.bytes -= len(entry.fragment)

    async def release(self, project_id: str, ids: Sequence[str]) -> None:
        spool = self._spool(project_id)
        for span_id in ids:
            entry = spool.entries.get(span_id)
            if entry is not None:
                entry.available_at = 0.0

    async def depth(self, project_id: str) -> SpoolDepth:
        spool = self._projects.get(project_id)
        return SpoolDepth(len(spool.entries), spool.bytes) if spool is not None else SpoolDepth(0, 0)
