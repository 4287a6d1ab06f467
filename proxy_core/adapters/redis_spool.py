"""The trace spool in Redis: shared by every replica, kept across restarts.

Each project has a sorted set of span ids scored by when they may next be claimed (oldest first:
a new span's score is its arrival time, in milliseconds), a hash of the spans' bytes, and a byte
counter that bounds the spool. Every operation is one Lua script: atomic, one round trip, every
key refreshed to the spool's TTL. A project's keys share one hash tag, so the scripts also run on
Redis Cluster. Span ids start with their arrival time, so a released span gets its place back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from proxy_core.errors import StoreUnavailableError
from proxy_core.services.store import key_part
from proxy_core.services.trace_ports import SpoolDepth, SpooledSpan

# KEYS: queue, data, bytes, seq. ARGV: max bytes, now (ms), ttl (s), fragment…
PUSH = """
local used = tonumber(redis.call('GET', KEYS[3]) or '0')
local limit = tonumber(ARGV[1])
local accepted = 0
local first = redis.call('INCRBY', KEYS[4], #ARGV - 3) - (#ARGV - 3)
for i = 4, #ARGV do
  local size = string.len(ARGV[i])
  if used + size > limit then break end
  local id = ARGV[2] .. '-' .. (first + i - 3)
  redis.call('HSET', KEYS[2], id, ARGV[i])
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  used = used + size
  accepted = accepted + 1
end
redis.call('SET', KEYS[3], used)
for k = 1, 4 do redis.call('EXPIRE', KEYS[k], ARGV[3]) end
return accepted
"""
# KEYS: queue, data. ARGV: now (ms), lease (ms), max bytes, max count. Returns id, fragment, …
CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
local size = 0
for _, id in ipairs(ids) do
  local fragment = redis.call('HGET', KEYS[2], id)
  if not fragment then
    redis.call('ZREM', KEYS[1], id)
  else
    if #out > 0 and size + string.len(fragment) > tonumber(ARGV[3]) then break end
    redis.call('ZADD', KEYS[1], tonumber(ARGV[1]) + tonumber(ARGV[2]), id)
    out[#out + 1] = id
    out[#out + 1] = fragment
    size = size + string.len(fragment)
  end
end
return out
"""
# KEYS: queue, data, bytes. ARGV: id…
ACK = """
local freed = 0
for i = 1, #ARGV do
  freed = freed + redis.call('HSTRLEN', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('ZREM', KEYS[1], ARGV[i])
end
if freed > 0 then redis.call('DECRBY', KEYS[3], freed) end
return freed
"""
# KEYS: queue. ARGV: id… (each gets its arrival time back as its score)
RELEASE = """
for i = 1, #ARGV do
  local arrived = string.match(ARGV[i], '^(%d+)-')
  if arrived and redis.call('ZSCORE', KEYS[1], ARGV[i]) then redis.call('ZADD', KEYS[1], arrived, ARGV[i]) end
end
return 1
"""


def spool_keys(prefix: str, project_id: str) -> list[str]:
    """The project's queue, data, byte counter and id sequence, under one hash tag."""
    base = f"{prefix}:spool:{{{key_part(project_id)}}}"  # key_part escapes braces: one tag per project
    return [f"{base}:queue", f"{base}:data", f"{base}:bytes", f"{base}:seq"]


class RedisSpanSpool:
    def __init__(self, client: Redis, *, prefix: str, max_bytes: int, ttl_s: int, timeout_s: float) -> None:
        """``client`` is shared (the rollout store's); it is not closed here."""
        self._client = client
        self._prefix = prefix
        self._max_bytes = max_bytes
        self._ttl_s = ttl_s
        self._timeout_s = timeout_s
        self._push = client.register_script(PUSH)
        self._claim = client.register_script(CLAIM)
        self._ack = client.register_script(ACK)
        self._release = client.register_script(RELEASE)

    @property
    def durable(self) -> bool:
        return True

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    async def _run(self, what: str, operation: Any) -> Any:
        try:
            async with asyncio.timeout(self._timeout_s):
                return await operation
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not {what} the trace spool ({type(exc).__name__}).") from exc

    async def push(self, project_id: str, fragments: Sequence[bytes]) -> int:
        if not fragments:
            return 0
        keys = spool_keys(self._prefix, project_id)
        args: list[bytes | int] = [self._max_bytes, int(time.time() * 1000), self._ttl_s, *fragments]
        return int(await self._run("write", self._push(keys=keys, args=args)))

    async def claim(self, project_id: str, *, max_bytes: int, max_count: int, lease_s: float) -> list[SpooledSpan]:
        keys = spool_keys(self._prefix, project_id)[:2]
        args = [int(time.time() * 1000), int(lease_s * 1000), max_bytes, max_count]
        flat = await self._run("read", self._claim(keys=keys, args=args))
        return [SpooledSpan(_text(flat[i]), _bytes(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def ack(self, project_id: str, ids: Sequence[str]) -> None:
        if ids:
            await self._run("write", self._ack(keys=spool_keys(self._prefix, project_id)[:3], args=list(ids)))

    async def release(self, project_id: str, ids: Sequence[str]) -> None:
        if ids:
            await self._run("write", self._release(keys=spool_keys(self._prefix, project_id)[:1], args=list(ids)))

    async def depth(self, project_id: str) -> SpoolDepth:
        queue, _, size, _ = spool_keys(self._prefix, project_id)
        pipeline = self._client.pipeline(transaction=False)
        pipeline.zcard(queue)
        pipeline.get(size)
        spans, used = await self._run("read", pipeline.execute())
        return SpoolDepth(int(spans), int(used or 0))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _bytes(value: Any) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)
