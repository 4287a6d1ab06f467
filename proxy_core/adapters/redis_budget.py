"""The Langfuse read budget's token buckets in Redis, shared by every worker and replica.

One hash per bucket (tokens left, when last refilled), updated by one Lua script that reads the
clock with Redis's own ``TIME``: the gateway processes' clocks never enter into it, so replicas
on different hosts share one rate. A bucket left alone expires once it would be full again.
"""

from __future__ import annotations

import asyncio
import hashlib

from redis.exceptions import RedisError

from proxy_core.adapters.redis_connection import RedisConnection
from proxy_core.errors import StoreUnavailableError

# Refill, then take the next token: now, or reserved ahead (the count goes below zero) when it is
# at most ARGV[3] seconds away. Returns {1 or 0 (taken or not), seconds until that token}.
TAKE_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = math.max(0, (1 - tokens) / rate)
local taken = 0
if wait <= max_wait then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'at', string.format('%.6f', now))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) / rate * 1000) + 1000)
return {taken, string.format('%.6f', wait)}
"""


def budget_key(prefix: str, key: str) -> str:
    """``{prefix}:langfuse:{digest}:read-budget``: the digest of the host and public key, so the
    key name is short and says nothing about either."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return f"{prefix}:langfuse:{digest}:read-budget"


class RedisTokenBuckets:
    """Implements ``TokenSource`` on the application's Redis connection (any topology)."""

    def __init__(self, connection: RedisConnection, *, prefix: str) -> None:
        self._prefix = prefix
        self._deadline_s = connection.deadline_s
        self._take = connection.client.register_script(TAKE_SCRIPT)

    async def take(self, key: str, rate_per_s: float, burst: int, max_wait_s: float) -> tuple[bool, float]:
        try:
            async with asyncio.timeout(self._deadline_s):
                taken, wait = await self._take(
                    keys=[budget_key(self._prefix, key)], args=[rate_per_s, burst, max(0.0, max_wait_s)]
                )
        except (RedisError, OSError, TimeoutError) as exc:
            raise StoreUnavailableError(f"Could not take a read token ({type(exc).__name__}).") from exc
        return bool(int(taken)), float(wait)
