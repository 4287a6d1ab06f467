"""The embedded trace store's spans in Redis, shared by every worker and replica.

Per project, two kinds of keys under the gateway's prefix (ids escaped by ``key_part``):

* ``{prefix}:{<project>}:trace:{trace_id}``, a HASH: one field per span (``span:{id}``, its entry)
  and per score (``score:{id}``);
* ``{prefix}:{<project>}:trace-tag:{tag}``, a SET of the trace ids carrying that tag (the rollout's
  ``rollout_id:…`` and each ``insertion_id:…`` tag are how traces are found).

The project in braces is the keys' Redis Cluster hash tag: a write spans several traces and tags,
and a MULTI/EXEC on a cluster must stay in one slot.

Every key carries the rollout TTL, renewed on every write, and each write is one MULTI/EXEC: a
key never exists without its TTL. A read takes one tag's set and the matching hashes in one
pipeline; no command spans two keys. The client is the rollout store's (one pool for everything
the gateway keeps in Redis), closed by that store.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy_core.adapters.embedded_traces import SpanWrite
from proxy_core.retry import RetryableError
from proxy_core.services.store import key_part

SPAN_FIELD = "span:"
SCORE_FIELD = "score:"


class RedisTraceBackend:
    def __init__(self, client: Redis, *, prefix: str, ttl_s: int, timeout_s: float) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s

    def trace_key(self, project_id: str, trace_id: str) -> str:
        return f"{self._prefix}:{{{key_part(project_id)}}}:trace:{key_part(trace_id)}"

    def tag_key(self, project_id: str, tag: str) -> str:
        return f"{self._prefix}:{{{key_part(project_id)}}}:trace-tag:{key_part(tag)}"

    async def write(self, project_id: str, spans: list[SpanWrite]) -> None:
        async with self._pipeline(transaction=True) as pipe:
            for span in spans:
                trace_key = self.trace_key(project_id, span.trace_id)
                pipe.hset(trace_key, SPAN_FIELD + span.span_id, span.entry)
                pipe.expire(trace_key, self._ttl_s)
                for tag in span.tags:
                    tag_key = self.tag_key(project_id, tag)
                    pipe.sadd(tag_key, span.trace_id)
                    pipe.expire(tag_key, self._ttl_s)
            await self._run(pipe)

    async def traces_tagged(self, project_id: str, tag: str) -> dict[str, list[bytes]]:
        members = await self._call(self._client.smembers(self.tag_key(project_id, tag)))
        trace_ids = sorted(_text(member) for member in members)
        if not trace_ids:
            return {}
        async with self._pipeline(transaction=False) as pipe:
            for trace_id in trace_ids:
                pipe.hgetall(self.trace_key(project_id, trace_id))
            hashes = await self._run(pipe)
        found: dict[str, list[bytes]] = {}
        for trace_id, fields in zip(trace_ids, hashes, strict=True):
            spans = [_bytes(value) for name, value in fields.items() if _text(name).startswith(SPAN_FIELD)]
            if spans:  # the hash expired, or holds only scores: no trace
                found[trace_id] = spans
        return found

    async def has_trace(self, project_id: str, trace_id: str) -> bool:
        return bool(await self._call(self._client.exists(self.trace_key(project_id, trace_id))))

    async def add_score(self, project_id: str, trace_id: str, score_id: str, score: bytes) -> None:
        trace_key = self.trace_key(project_id, trace_id)
        async with self._pipeline(transaction=True) as pipe:
            pipe.hset(trace_key, SCORE_FIELD + score_id, score)
            pipe.expire(trace_key, self._ttl_s)
            await self._run(pipe)

    async def aclose(self) -> None:
        return None  # the client is the rollout store's, closed by it

    def _pipeline(self, *, transaction: bool) -> Any:
        return self._client.pipeline(transaction=transaction)

    async def _run(self, pipe: Any) -> list[Any]:
        return list(await self._call(pipe.execute()))

    async def _call(self, call: Any) -> Any:
        """One round trip within the store's timeout; a failure is retryable (Redis may return)."""
        try:
            async with asyncio.timeout(self._timeout_s * 2):
                return await call
        except (RedisError, OSError, TimeoutError) as exc:
            raise RetryableError(f"the embedded trace store could not be reached ({type(exc).__name__})") from exc


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else value
